"""A catalog row names code by `"module:attribute"`, so that the catalog imports no torch;
`resolve` imports it when it is first needed."""

from __future__ import annotations

import importlib
from typing import Any


def resolve(target: str) -> Any:
    """The attribute `target` (`"module:attribute"`) names, its module imported."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)
