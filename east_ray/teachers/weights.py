"""The pretrained teachers' weights: downloaded once into torch's hub cache and verified on
every load, or read from a local file, never running code from it.

`pretrained=True` fetches the file the teacher's package itself would fetch (the catalog
row's `weights_url`, same file name) into `$TORCH_HOME/hub/checkpoints/`, where
torchvggish, torchopenl3 and hear21passt cache it too, so a file they already downloaded is
reused. Downloads go through `east_ray.data.fetch`: a timeout per request, retries, resume
of `<file>.part`, the length checked against the server's, and the final name only once
the file verifies. How a file is verified:

- published checksums (`PINNED`, by file name): VGGish's two files carry the first 8 hex
  digits of their sha256 in their names (torch.hub's `name-<sha256>.ext` convention;
  torchvggish itself never checks them); PANNs' `Cnn14_mAP=0.431.pth` has the md5 and size
  Zenodo lists for record 3987831;
- trust on first use (OpenL3, PaSST: no checksum is published): the sha256 of the first
  copy is written beside it as `<file>.sha256` (`sha256sum` format) and every later load,
  and every later download of it, must match it. A cached file that was already there
  (downloaded by the teacher's package) is trusted on its first use here.

A cached file that does not verify (an interrupted copy, a changed file) is deleted and
downloaded again. When that fails (offline, host gone) `WeightsUnavailableError` names the
file, the URL and the fix: `checkpoint=`, a local copy of that same file:

- vggish: `vggish-10086976.pth`; the PCA file `vggish_pca_params-970ea276.pth` must sit
  beside it (or pass the folder holding both);
- openl3: `torchopenl3_mel128_music_512.pth.tar`;
- passt: `passt-s-f128-p16-s10-ap.476-swa.pt`;
- panns: `Cnn14_mAP=0.431.pth` (a dict with the state under `"model"`; a bare state dict
  works too).

A `checkpoint=` file is the user's: it is read as it is, never verified against a checksum,
never deleted. Files are read with `torch.load(weights_only=True)` (tensors, numpy arrays
and scalars only). A missing file raises `FileNotFoundError` and a file that is not that
teacher's checkpoint `BadValueError`, both naming the path (and, for a cached download, the
files to delete). `pretrained=False` means random weights. Processes that load one teacher
at once (Ray actors on a node) take turns on the cache through a lock file `<file>.lock`.
"""

from __future__ import annotations

import errno
import fcntl
import importlib
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import torch
from torch import Tensor, nn

from east_ray.catalog.teachers import get_teacher
from east_ray.data.checksums import mismatch, sha256sum
from east_ray.data.fetch import ChecksumError, DownloadError, download_file
from east_ray.errors import BadValueError, UserError

logger = logging.getLogger(__name__)


class WeightsUnavailableError(UserError):
    """A teacher's weights could not be obtained; the message says where to put a copy."""


class MissingPackageError(UserError, ImportError):
    """An optional package a teacher needs is not installed."""


@dataclass(frozen=True)
class Pin:
    """What is published about one weights file: its md5, its sha256 (whole, or its first hex
    digits), its size in bytes (None: not published), and where that was found."""

    source: str
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None


PINNED: dict[str, Pin] = {
    # torchvggish's v0.1 release names its files `name-<first 8 hex digits of the sha256>.pth`,
    # torch.hub's convention (torch/hub.py: HASH_REGEX, load_state_dict_from_url(check_hash)).
    "vggish-10086976.pth": Pin("torchvggish release file name", sha256="10086976"),
    "vggish_pca_params-970ea276.pth": Pin("torchvggish release file name", sha256="970ea276"),
    # Zenodo record 3987831 (the PANNs authors' upload); md5 and size as listed by loaders
    # that download it and check them: Labbeti/dcase2021task6 aac/models/pann/urls.py,
    # Labbeti/dcase2022task6a dcase2022task6a/nn/urls.py ("Hash type: md5"), among others.
    "Cnn14_mAP=0.431.pth": Pin(
        "Zenodo record 3987831", md5="541141fa2ee191a88f24a3219fff024e", size=327_428_481
    ),
}
"""Published checksums of the release files, by the name they are cached under."""


def import_package(
    teacher: str, module: str, package: str, *, extra: str = "teachers"
) -> ModuleType:
    """`module` of the optional `package` that `teacher` needs (east_ray's `extra`); its
    absence says how to fix it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        raise MissingPackageError(
            f"the {teacher} teacher needs the `{package}` package (the `{extra}` extra of "
            f"east_ray): pip install 'east_ray[{extra}]' ({error})"
        ) from error


def file_name(url: str) -> str:
    """The name a download of `url` is stored under."""
    return unquote(Path(urlparse(url).path).name)


def cache_dir() -> Path:
    """Where downloaded weights are kept: torch's hub cache (`$TORCH_HOME/hub/checkpoints`)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def sidecar(path: Path) -> Path:
    """The file that records the sha256 of an unpinned download (trust on first use)."""
    return path.with_name(path.name + ".sha256")


def _recorded(path: Path) -> str | None:
    """The sha256 recorded beside `path`, or None when none is."""
    record = sidecar(path)
    if not record.is_file():
        return None
    text = record.read_text()
    digest, _, name = text.removesuffix("\n").partition("  ")
    if not re.fullmatch(r"[0-9a-f]{64}", digest) or name != path.name:
        raise BadValueError(
            f"{record}: expected '<sha256>  {path.name}' (64 hex digits, written when the file "
            f"was first downloaded), got {text[:120]!r}; delete {record} and {path} to "
            "download the file again"
        )
    return digest


def _record(path: Path) -> None:
    """Write the sha256 of `path` beside it (via a temporary file, renamed when complete)."""
    record = sidecar(path)
    digest = sha256sum(path)
    tmp = record.with_name(record.name + ".tmp")
    tmp.write_text(f"{digest}  {path.name}\n")
    os.replace(tmp, record)
    logger.info("recorded the sha256 of %s in %s (trust on first use)", path, record)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `<path>.lock` (processes fetching one file take turns)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(path.name + ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def fetch(teacher: str, url: str) -> Path:
    """The verified download of `url` in torch's hub cache, downloading it if absent or if
    the cached copy does not verify (module docstring)."""
    target = cache_dir() / file_name(url)
    with _locked(target):
        return _fetch_locked(teacher, url, target)


def _fetch_locked(teacher: str, url: str, target: Path) -> Path:
    """`fetch`, once this process holds the lock of `target`."""
    pin = PINNED.get(target.name)
    recorded = None if pin is not None else _recorded(target)
    md5, size = (pin.md5, pin.size) if pin is not None else (None, None)
    sha256 = pin.sha256 if pin is not None else recorded
    damaged = None
    if target.is_file():
        damaged = mismatch(target, md5, size, sha256)
        if damaged is None:
            if pin is None and recorded is None:
                _record(target)  # there before (the teacher's package fetched it): first use
            return target
        logger.warning(
            "the cached %s weights %s do not verify (%s); deleting them and downloading %s again",
            teacher,
            target,
            damaged,
            url,
        )
        target.unlink()
    logger.info("downloading the %s weights %s to %s", teacher, url, target)
    try:
        download_file(url, target, md5, size=size, sha256=sha256)
    except ChecksumError as error:
        raise WeightsUnavailableError(_refused(teacher, url, target, pin, error)) from error
    except DownloadError as error:
        was = (
            ""
            if damaged is None
            else f"; the cached copy there did not verify ({damaged}) and was deleted"
        )
        raise WeightsUnavailableError(
            f"could not fetch the pretrained {teacher} weights {target.name} from {url} "
            f"({error}){was}. Download that file elsewhere and pass its path as "
            f"checkpoint=Path(...) (--checkpoint), or put it at {target}"
        ) from error
    if pin is None and recorded is None:
        _record(target)
    return target


def _refused(teacher: str, url: str, target: Path, pin: Pin | None, error: ChecksumError) -> str:
    """Why a complete download of `teacher`'s weights was refused, and what to do."""
    got = f"{error.algorithm} {error.actual}, expected {error.expected}"
    fix = "pass a copy you trust as checkpoint=Path(...) (--checkpoint)"
    if pin is not None:
        return (
            f"the {teacher} weights {target.name} downloaded from {url} do not match the "
            f"published checksum ({pin.source}): {got}. The download was deleted; retry "
            f"later, or {fix}"
        )
    return (
        f"the {teacher} weights {target.name} downloaded from {url} differ from the copy "
        f"first downloaded here, whose sha256 {sidecar(target)} records: {got}. The "
        f"download was deleted. If the file changed upstream and you trust the new one, "
        f"delete {sidecar(target)}; else {fix}"
    )


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
            f"{teacher} {what} {path} could not be read: {error}; {_fix_for(path)}"
        ) from error


def _fix_for(path: Path) -> str:
    """How to replace a weights file that cannot be used: a download or the user's file."""
    if path.parent.resolve() != cache_dir().resolve():
        return "pass the release's file"
    record = sidecar(path)
    files = f"{path} and {record}" if record.is_file() else str(path)
    return (
        f"it is a download in torch's hub cache: delete {files} so that the next run "
        "downloads it again, or pass the release's file as checkpoint=Path(...)"
    )


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
                f"{self.path} does not hold {self.teacher} weights: {message}; "
                f"{_fix_for(self.path)}"
            ) from error


def weights_file(teacher: str, checkpoint: Path | None, pretrained: bool) -> Path | None:
    """The weights file to load: `checkpoint` as it is, else the verified download (`fetch`);
    None for random weights."""
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
        raise ValueError(f"the catalog row of {teacher} has no weights_url")
    return fetch(teacher, url)


def read_weights(teacher: str, checkpoint: Path | None, pretrained: bool) -> Weights | None:
    """`teacher`'s weights as `weights_file` chooses them, read; None for random weights."""
    path = weights_file(teacher, checkpoint, pretrained)
    if path is None:
        return None
    return Weights(teacher, path, state_dict_of(teacher, read_file(teacher, path), path))
