"""The pretrained teachers' weights: downloaded once into torch's hub cache, or read from a
local file, never running code from it.

`pretrained=True` fetches the file the teacher's package itself would fetch (the registry
row's `weights_url`, same file name) into `$TORCH_HOME/hub/checkpoints/`, where
torchvggish, torchopenl3 and hear21passt cache it too, so a file they already downloaded is
reused. When that fails (offline, host gone) `WeightsUnavailableError` says so and points
at `checkpoint=`, a local copy of that same file:

- vggish: `vggish-10086976.pth`; the PCA file `vggish_pca_params-970ea276.pth` must sit
  beside it (or pass the folder holding both);
- openl3: `torchopenl3_mel128_music_512.pth.tar`;
- passt: `passt-s-f128-p16-s10-ap.476-swa.pt`;
- panns: `Cnn14_mAP=0.431.pth` (a dict with the state under `"model"`; a bare state dict
  works too).

Files are read with `torch.load(weights_only=True)` (tensors, numpy arrays and scalars
only). A missing file raises `FileNotFoundError` and a file that is not that teacher's
checkpoint `BadValueError`, both naming the path. `pretrained=False` means random weights.
"""

from __future__ import annotations

import errno
import http.client
import importlib
import logging
import sys
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import torch
from torch import Tensor, nn

from east_ray.errors import BadValueError, UserError
from east_ray.teachers.registry import get_teacher

logger = logging.getLogger(__name__)


class WeightsUnavailableError(UserError):
    """A teacher's weights could not be obtained; the message says where to put a copy."""


class MissingPackageError(UserError, ImportError):
    """An optional package a teacher needs is not installed."""


def import_package(teacher: str, module: str, package: str) -> ModuleType:
    """`module` of the optional `package` that `teacher` needs; its absence says how to fix it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        raise MissingPackageError(
            f"the {teacher} teacher needs the `{package}` package (the `teachers` extra of "
            f"east_ray): pip install 'east_ray[teachers]' ({error})"
        ) from error


def file_name(url: str) -> str:
    """The name a download of `url` is stored under."""
    return unquote(Path(urlparse(url).path).name)


def fetch(teacher: str, url: str) -> Path:
    """The cached download of `url` in torch's hub cache, downloading it if absent."""
    target = Path(torch.hub.get_dir()) / "checkpoints" / file_name(url)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("downloading the %s weights %s to %s", teacher, url, target)
    try:
        # Writes a temporary file beside `target` and renames it only when complete.
        torch.hub.download_url_to_file(url, str(target), progress=sys.stderr.isatty())
    except (OSError, http.client.HTTPException) as error:
        if isinstance(error, urllib.error.HTTPError):
            error.close()  # it holds the response's socket open
        raise WeightsUnavailableError(
            f"could not fetch the pretrained {teacher} weights from {url} "
            f"({type(error).__name__}: {error}). Download that file elsewhere and pass its "
            f"path as checkpoint=Path(...) (--checkpoint), or put it at {target}"
        ) from error
    return target


def _numpy_safe_globals() -> list[Any]:
    """numpy types a checkpoint may hold, allowed in `weights_only` loading (data, not code).

    Files pickled under numpy 1 name `numpy.core.multiarray`, under numpy 2 `numpy._core`.
    """
    try:
        multiarray = importlib.import_module("numpy._core.multiarray")
    except ModuleNotFoundError:  # numpy 1.x
        multiarray = importlib.import_module("numpy.core.multiarray")
    allowed: list[Any] = [np.ndarray, np.dtype]
    for name in ("_reconstruct", "scalar"):
        function = getattr(multiarray, name)
        allowed += [(function, f"numpy.core.multiarray.{name}")]
        allowed += [(function, f"numpy._core.multiarray.{name}")]
    allowed += [type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDU"]
    return allowed


def read_file(teacher: str, path: Path, what: str = "checkpoint") -> Any:
    """The object stored in a checkpoint file, read without running code from it."""
    if not path.is_file():
        raise FileNotFoundError(
            errno.ENOENT, f"{teacher} {what} does not exist or is not a file", str(path)
        )
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types; all mean "not a checkpoint"
        raise BadValueError(
            f"{teacher} {what} {path} could not be read: {error}; pass the release's file"
        ) from error


def state_dict_of(teacher: str, stored: Any, path: Path) -> dict[str, Tensor]:
    """The tensors of a state dict, unwrapping `{"model": ...}` (PANNs' file layout)."""
    if isinstance(stored, dict) and isinstance(stored.get("model"), dict):
        stored = stored["model"]
    if not isinstance(stored, dict) or not stored:
        raise BadValueError(f"{path} does not hold {teacher} weights (no state dict in it)")
    state: dict[str, Tensor] = {}
    for key, stored_value in stored.items():
        value = (
            torch.from_numpy(stored_value) if isinstance(stored_value, np.ndarray) else stored_value
        )
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise BadValueError(f"{path} does not hold {teacher} weights (entry {key!r})")
        state[key] = value
    return state


@dataclass(frozen=True, eq=False)
class Weights:
    """A teacher's weights file and the state dict read from it."""

    teacher: str
    path: Path
    state: dict[str, Tensor]

    def load_into(self, model: nn.Module, state: dict[str, Tensor] | None = None) -> None:
        """Load `state` (default: the file's) into `model`; a mismatch names the file."""
        try:
            model.load_state_dict(self.state if state is None else state, strict=True)
        except RuntimeError as error:
            message = str(error)
            if len(message) > 600:
                message = message[:600] + " ..."
            raise BadValueError(
                f"{self.path} does not hold {self.teacher} weights: {message}"
            ) from error


def weights_file(teacher: str, checkpoint: Path | None, pretrained: bool) -> Path | None:
    """The weights file to load (`checkpoint`, else the download), or None for random weights."""
    if checkpoint is not None:
        if not pretrained:
            raise BadValueError(
                f"{teacher}: checkpoint={checkpoint} contradicts pretrained=False; drop one"
            )
        return Path(checkpoint)
    if not pretrained:
        return None
    url = get_teacher(teacher).weights_url
    if url is None:
        raise ValueError(f"the registry row of {teacher} has no weights_url")
    return fetch(teacher, url)


def read_weights(teacher: str, checkpoint: Path | None, pretrained: bool) -> Weights | None:
    """`teacher`'s weights as `weights_file` chooses them, read; None for random weights."""
    path = weights_file(teacher, checkpoint, pretrained)
    if path is None:
        return None
    return Weights(teacher, path, state_dict_of(teacher, read_file(teacher, path), path))
