"""Teachers by name: `load_extractor` builds a catalog row's extractor
(`east_ray.catalog.teachers`: everything known about a teacher without loading it)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

from east_ray.catalog.resolve import resolve
from east_ray.catalog.teachers import get_teacher

if TYPE_CHECKING:
    import torch

    from east_ray.teachers.extractor import Extractor

    class Builder(Protocol):
        """The signature every row's `builder` has."""

        def __call__(
            self, device: torch.device | str, checkpoint: Path | None, pretrained: bool
        ) -> Extractor: ...


def load_extractor(
    name: str,
    device: torch.device | str = "cpu",
    checkpoint: Path | None = None,
    pretrained: bool = True,
) -> Extractor:
    """Build teacher `name`'s extractor on `device` (weights from `checkpoint` if given)."""
    build = cast("Builder", resolve(get_teacher(name).builder))
    return build(device, checkpoint, pretrained)
