"""The four pretrained teachers (VGGish, OpenL3, PaSST, PANNs) as frame-level embedding extractors.

One job: turn mono audio at a teacher's sample rate into that teacher's embedding sequence,
normalised as the EAsT authors did, behind one interface for all four.

Interface
---------
`load_vggish`, `load_openl3`, `load_passt` and `load_panns` (also `LOADERS[name]`) share one
signature, `(device, checkpoint=None, pretrained=True, *, max_batch=16)`, and return an
`Extractor`: call it on a float tensor `(B, N)` of mono audio at `extractor.sample_rate`, on
any device, and get `(B, T, D)` float32 embeddings on the CPU. `T` depends on `N` only
(`frames_for_samples(name, N)`, or `FRAME_COUNT[name](seconds)` with `N = round(seconds · sr)`),
so every clip of one length gets the same number of frames:

| teacher | D | sr | frame t covers (s) | T(N) | 10 s | 29.1 s | normalised |
|---|---|---|---|---|---|---|---|
| vggish | 128 | 16 kHz | [0.96 t, 0.96 t + 0.975) | 1 + (M − 96) // 96 | 10 | 30 | (q − 128)/256 |
| openl3 | 512 | 48 kHz | [0.96 t, 0.96 t + 1) | 1 + (N − 48000) // 46080 | 10 | 30 | x − 2.24 |
| passt | 768 | 32 kHz | [0.96 t, 0.96 (t + 1)) | N // 30720 | 10 | 30 | none |
| panns | 2048 | 32 kHz | the whole clip | 1 | 1 | 1 | none |

For VGGish, M = 1 + (N − 400) // 160 is the number of 25 ms / 10 ms log-mel frames and q the
8-bit PCA output (whole numbers 0..255), so its values lie in [−0.5, 0.5).

A clip shorter than one window is zero-padded to one window (T = 1); a trailing part shorter
than a window is dropped, as VGGish does. PANNs clips shorter than 1 s are zero-padded to
1 s, as `panns-hear` does.

Frames start at 0, not centred. OpenL3's and hear21passt's own timestamp functions centre
the first window on t = 0 (padding half a window in front) and pad the tail, which with a
0.96 s hop gives 11 frames for a 10 s clip; we frame all three sequence teachers alike
instead, so frame t of every teacher starts at t · 0.96 s and a 10 s clip has 10 frames for
each (as the VGGish frames shipped with OpenMIC do). That is the grid that
`east_ray.teachers.registry` describes (`hop_seconds` 0.96) and the losses align to.

Networks and their settings
---------------------------
- VGGish: `torchvggish`'s network (its numpy front end `waveform_to_examples`: 25 ms / 10 ms
  STFT, 64 mel bands 125–7500 Hz, log(x + 0.01), 96-frame examples), then the AudioSet PCA
  and 8-bit quantisation (`clip(PCA(x − mean), ±2)` mapped to 0..255 and rounded), done
  here because torchvggish's own post-processor downloads its parameters on construction
  and squeezes a batch of one away.
- OpenL3: `torchopenl3.models.PytorchOpenl3`, input_repr mel128, content_type music,
  embedding 512, on 1 s windows of 48 kHz audio.
- PaSST: hear21passt's `passt_s_swa_p16_128_ap476` (the AudioSet model of
  `hear21passt.base`) behind its `AugmentMelSTFT` front end and `PasstBasicWrapper` in
  `embed_only` mode (the mean of the class and distillation tokens, 768) on 0.96 s windows.
- PANNs: CNN14 (32 kHz, 64 mels 50–14000 Hz), the 2048-d `embedding` output, from
  `panns-hear` rather than `panns-inference`: both ship the same network, but importing
  `panns_inference` runs `wget` for an AudioSet label CSV and, offline, leaves an empty
  `~/panns_data/class_labels_indices.csv` behind that later makes its `AudioTagging` build
  a 0-class model; `panns_hear` imports without side effects.

Weights
-------
`pretrained=True` fetches the file the package itself would fetch (same URL, same file
name) into torch's hub cache, `$TORCH_HOME/hub/checkpoints/` (where torchvggish,
torchopenl3 and hear21passt cache it too, so a file they already downloaded is reused);
CNN14 comes from Zenodo record 3987831 (`Cnn14_mAP=0.431.pth`, the file `panns-inference`
downloads). When that fails (offline, host gone) `WeightsUnavailableError` says so and
points at `checkpoint=`. `checkpoint=` reads a local copy of that same file instead:

- vggish: `vggish-10086976.pth`; the PCA file `vggish_pca_params-970ea276.pth` must sit
  beside it (or pass the folder holding both);
- openl3: `torchopenl3_mel128_music_512.pth.tar`;
- passt: `passt-s-f128-p16-s10-ap.476-swa.pt`;
- panns: `Cnn14_mAP=0.431.pth` (a dict with the state under `"model"`; a bare state dict
  works too).

Checkpoints are read with `torch.load(weights_only=True)` (tensors, numpy arrays and
scalars only: loading never runs code from the file). A missing file raises
`FileNotFoundError` and a file that is not that teacher's checkpoint raises `ValueError`,
both naming the path. `pretrained=False` builds the network with random weights (for tests
and offline runs): the package's own initialisation, except VGGish, which gets He-normal
weights and a random orthogonal PCA with zero mean so that its 8-bit output still varies.
Models are in eval mode and run under `torch.inference_mode()`.

Packages (the `[teachers]` extra; installed beside torch 2.11.0 / torchaudio 2.11.0 with
`pip install torchvggish==0.2 torchopenl3==1.0.1 hear21passt==0.0.26 panns-hear==0.2.1
'torchvision==0.26.*'`, no `--no-deps` needed; the torchvision pin keeps timm, which
hear21passt pulls, from swapping torch):

| package | version used | brings |
|---|---|---|
| torchvggish | 0.2 | resampy 0.2.2 |
| torchopenl3 | 1.0.1 | librosa 0.11.0, nnAudio 0.3.4, julius 0.2.8, resampy |
| hear21passt | 0.0.26 | timm 1.0.31, torchvision 0.26.0 |
| panns-hear | 0.2.1 | torchlibrosa 0.1.0 |

Some package internals are used and therefore pinned: hear21passt's `get_model`,
`checkpoint_filter_fn`, `default_cfgs` and its module flag `first_RUN` (set to False so the
first forward pass does not print tensor shapes), torchvggish's `VGG`/`make_layers` and
URL constants, torchopenl3's `get_model_path`.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import importlib
import io
import urllib.error
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from east_ray.teachers.registry import get_teacher

__all__ = [
    "FRAME_COUNT",
    "LOADERS",
    "MAX_BATCH",
    "Extractor",
    "Loader",
    "WeightsUnavailableError",
    "frames_for_samples",
    "load_openl3",
    "load_panns",
    "load_passt",
    "load_vggish",
    "n_frames",
]

MAX_BATCH = 16
"""Default number of network inputs (windows; clips for PANNs) per forward pass. On two CPU
cores 16 was fastest for OpenL3 and PaSST (60 windows at once took 3-4x longer)."""

# VGGish front end (torchvggish.vggish_params): 25 ms window, 10 ms hop at 16 kHz; examples
# of 96 log-mel frames (0.96 s), hop 96 frames.
_VGGISH_STFT_WINDOW = 400
_VGGISH_STFT_HOP = 160
_VGGISH_EXAMPLE = 96
_VGGISH_MIN_SAMPLES = _VGGISH_STFT_WINDOW + (_VGGISH_EXAMPLE - 1) * _VGGISH_STFT_HOP  # 15600
_VGGISH_PCA_RANGE = 2.0  # the PCA output is clipped to ±2 before 8-bit quantisation
# OpenL3: 1 s windows at 48 kHz, hop 0.96 s.
_OPENL3_WINDOW = 48_000
_OPENL3_HOP = 46_080
_OPENL3_OFFSET = 2.24
# PaSST: 0.96 s windows at 32 kHz, hop = window.
_PASST_WINDOW = 30_720
_PASST_ARCH = "passt_s_swa_p16_128_ap476"
# PANNs: clips shorter than 1 s are padded to 1 s (as panns-hear does).
_PANNS_MIN_SAMPLES = 32_000
_PANNS_URL = "https://zenodo.org/record/3987831/files/Cnn14_mAP%3D0.431.pth?download=1"


class WeightsUnavailableError(RuntimeError):
    """The pretrained weights could not be downloaded; pass `checkpoint=` a local copy."""


# ---------------------------------------------------------------------------------------------
# Frame counts


def _vggish_frames(n_samples: int) -> int:
    n = max(n_samples, _VGGISH_MIN_SAMPLES)
    mel_frames = 1 + (n - _VGGISH_STFT_WINDOW) // _VGGISH_STFT_HOP
    return 1 + (mel_frames - _VGGISH_EXAMPLE) // _VGGISH_EXAMPLE


def _openl3_frames(n_samples: int) -> int:
    return 1 + (max(n_samples, _OPENL3_WINDOW) - _OPENL3_WINDOW) // _OPENL3_HOP


def _passt_frames(n_samples: int) -> int:
    return max(n_samples, _PASST_WINDOW) // _PASST_WINDOW


def _panns_frames(n_samples: int) -> int:
    return 1


_FRAMES: dict[str, Callable[[int], int]] = {
    "vggish": _vggish_frames,
    "openl3": _openl3_frames,
    "passt": _passt_frames,
    "panns": _panns_frames,
}


def _known(teacher: str) -> str:
    if teacher not in _FRAMES:
        known = ", ".join(sorted(_FRAMES))
        raise KeyError(f"unknown pretrained teacher {teacher!r}; known: {known}")
    return teacher


def frames_for_samples(teacher: str, n_samples: int) -> int:
    """T for a clip of `n_samples` samples at the teacher's sample rate (see the table above)."""
    if n_samples < 1:
        raise ValueError(f"a clip needs at least one sample, got {n_samples}")
    return _FRAMES[_known(teacher)](n_samples)


def n_frames(teacher: str, seconds: float) -> int:
    """T for a clip of `seconds` seconds: `frames_for_samples` of `round(seconds · sr)`."""
    sample_rate = get_teacher(_known(teacher)).sample_rate
    return frames_for_samples(teacher, round(seconds * sample_rate))


FRAME_COUNT: dict[str, Callable[[float], int]] = {
    name: functools.partial(n_frames, name) for name in _FRAMES
}
"""Teacher name → (clip length in seconds → T)."""


# ---------------------------------------------------------------------------------------------
# The extractor


class Extractor:
    """A loaded teacher: `extractor(audio)` maps `(B, N)` mono audio to `(B, T, D)` embeddings.

    `audio` is a float tensor at `sample_rate` on any device; the result is float32 on the
    CPU, normalised, with `T = n_frames(N)`. `model` is the network (eval mode) on `device`.
    """

    def __init__(
        self, name: str, model: nn.Module, embed: Callable[[Tensor], Tensor], device: torch.device
    ) -> None:
        info = get_teacher(name)
        self.name = name
        self.sample_rate = info.sample_rate
        self.dim = info.dim
        self.hop_seconds = info.hop_seconds
        self.model = model
        self.device = device
        self._embed = embed

    def n_frames(self, n_samples: int) -> int:
        """T for a clip of `n_samples` samples."""
        return frames_for_samples(self.name, n_samples)

    def __call__(self, audio: Tensor) -> Tensor:
        if audio.ndim != 2:
            raise ValueError(
                f"{self.name}: expected mono audio (batch, samples), got shape {tuple(audio.shape)}"
            )
        batch, n_samples = audio.shape
        if batch == 0 or n_samples == 0:
            raise ValueError(f"{self.name}: empty audio batch of shape {tuple(audio.shape)}")
        if not audio.is_floating_point():
            raise TypeError(f"{self.name}: expected float audio in [-1, 1], got {audio.dtype}")
        expected = (batch, self.n_frames(n_samples), self.dim)
        with torch.inference_mode():
            out = self._embed(audio.to(self.device, torch.float32))
            out = out.to("cpu", torch.float32)
        if tuple(out.shape) != expected:  # an internal error, never the caller's
            raise RuntimeError(f"{self.name}: produced {tuple(out.shape)}, expected {expected}")
        return out.clone()  # a normal tensor (not an inference tensor), usable with autograd

    def __repr__(self) -> str:
        return (
            f"Extractor({self.name!r}, sample_rate={self.sample_rate}, dim={self.dim}, "
            f"device={self.device})"
        )


class Loader(Protocol):
    """The signature shared by the four `load_*` functions."""

    def __call__(
        self,
        device: torch.device | str,
        checkpoint: Path | None = None,
        pretrained: bool = True,
        *,
        max_batch: int = MAX_BATCH,
    ) -> Extractor: ...


# ---------------------------------------------------------------------------------------------
# Packages, downloads and checkpoint files


def _import(teacher: str, module: str, package: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"the {teacher} teacher needs the `{package}` package (the `teachers` extra of "
            f"east_ray): pip install 'east_ray[teachers]' ({error})"
        ) from error


def _release_url(teacher: str, part: str = "weights") -> str:
    """The URL the teacher's package downloads `part` ("weights"; VGGish also "pca") from."""
    if teacher == "vggish":
        module = _import(teacher, "torchvggish.torchvggish", "torchvggish")
        return str(module.PCA_PARAMS if part == "pca" else module.VGGISH_WEIGHTS)
    if teacher == "openl3":
        core = _import(teacher, "torchopenl3.core", "torchopenl3")
        return str(core.get_model_path("mel128", "music", 512))
    if teacher == "passt":
        passt = _import(teacher, "hear21passt.models.passt", "hear21passt")
        return str(passt.default_cfgs[_PASST_ARCH]["url"])
    if _known(teacher) == "panns":
        return _PANNS_URL
    raise AssertionError(f"no release URL for {teacher}")


def _file_name(url: str) -> str:
    return unquote(Path(urlparse(url).path).name)


def _fetch(teacher: str, url: str) -> Path:
    """The cached download of `url` in torch's hub cache, downloading it if absent."""
    target = Path(torch.hub.get_dir()) / "checkpoints" / _file_name(url)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Writes a temporary file beside `target` and renames it only when complete.
        torch.hub.download_url_to_file(url, str(target), progress=True)
    except (OSError, http.client.HTTPException) as error:
        if isinstance(error, urllib.error.HTTPError):
            error.close()  # it holds the response's socket open
        raise WeightsUnavailableError(
            f"could not fetch the pretrained {teacher} weights from {url} "
            f"({type(error).__name__}: {error}). Download that file elsewhere and pass its "
            f"path as checkpoint=Path(...), or put it at {target}"
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


def _read(teacher: str, path: Path, what: str = "checkpoint") -> Any:
    """The object stored in a checkpoint file, read without running code from it."""
    if not path.is_file():
        raise FileNotFoundError(f"{teacher} {what} {path} does not exist or is not a file")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types; all mean "not a checkpoint"
        raise ValueError(f"{teacher} {what} {path} could not be read: {error}") from error


def _state_dict(teacher: str, stored: Any, path: Path) -> dict[str, Tensor]:
    """The tensors of a state dict, unwrapping `{"model": ...}` (PANNs' file layout)."""
    if isinstance(stored, dict) and isinstance(stored.get("model"), dict):
        stored = stored["model"]
    if not isinstance(stored, dict) or not stored:
        raise ValueError(f"{path} does not hold {teacher} weights (no state dict in it)")
    state: dict[str, Tensor] = {}
    for key, stored_value in stored.items():
        value = (
            torch.from_numpy(stored_value) if isinstance(stored_value, np.ndarray) else stored_value
        )
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise ValueError(f"{path} does not hold {teacher} weights (entry {key!r})")
        state[key] = value
    return state


def _load_into(teacher: str, model: nn.Module, state: dict[str, Tensor], path: Path) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        message = str(error)
        if len(message) > 600:
            message = message[:600] + " ..."
        raise ValueError(f"{path} does not hold {teacher} weights: {message}") from error


def _weights_file(teacher: str, checkpoint: Path | None, pretrained: bool) -> Path | None:
    """The weights file to load, or None for random weights."""
    if checkpoint is not None:
        if not pretrained:
            raise ValueError(f"{teacher}: checkpoint={checkpoint} contradicts pretrained=False")
        return Path(checkpoint)
    return _fetch(teacher, _release_url(teacher)) if pretrained else None


def _check(teacher: str, device: torch.device | str, max_batch: int) -> torch.device:
    if max_batch < 1:
        raise ValueError(f"{teacher}: max_batch must be at least 1, got {max_batch}")
    return torch.device(device)


# ---------------------------------------------------------------------------------------------
# Shared pieces of the forward passes


def _pad_to(audio: Tensor, n_samples: int) -> Tensor:
    """Zero-pad `(B, N)` audio at the end to at least `n_samples`."""
    missing = n_samples - audio.shape[-1]
    return F.pad(audio, (0, missing)) if missing > 0 else audio


def _windows(audio: Tensor, window: int, hop: int) -> Tensor:
    """`(B, N)` → `(B, T, window)`: windows starting at 0, hop, 2·hop, ... that fit in N."""
    return _pad_to(audio, window).unfold(-1, window, hop)


def _in_chunks(network: Callable[[Tensor], Tensor], inputs: Tensor, size: int) -> Tensor:
    """`network` applied to `inputs` in slices of at most `size` along dim 0."""
    return torch.cat([network(part) for part in inputs.split(size)])


# ---------------------------------------------------------------------------------------------
# VGGish


class _VGGish(nn.Module):
    """torchvggish's network plus the AudioSet PCA and 8-bit quantisation.

    `forward` maps log-mel examples `(n, 96, 64)` to the quantised embedding `(n, 128)`:
    whole numbers 0..255 stored as float (the values OpenMIC ships as `X`).
    """

    pca_matrix: Tensor
    pca_means: Tensor

    def __init__(self, network: nn.Module, pca_matrix: Tensor, pca_means: Tensor) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("pca_matrix", pca_matrix.float())
        self.register_buffer("pca_means", pca_means.float())

    def forward(self, examples: Tensor) -> Tensor:
        raw: Tensor = self.network(examples.unsqueeze(1))
        projected = (raw - self.pca_means) @ self.pca_matrix.T
        clipped = projected.clamp(-_VGGISH_PCA_RANGE, _VGGISH_PCA_RANGE)
        return torch.round((clipped + _VGGISH_PCA_RANGE) * (255.0 / (2 * _VGGISH_PCA_RANGE)))


def _he_init(network: nn.Module) -> None:
    """Random weights that keep the activations' scale through VGGish's 11 ReLU layers.

    With PyTorch's default init the embedding comes out ~1000 times smaller than its input
    and the 8-bit quantiser maps every frame to the same few values.
    """
    for module in network.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def _vggish_pca(weights: Path | None, pca_url: str) -> tuple[Tensor, Tensor]:
    """PCA matrix `(128, 128)` and means `(128,)`: from the file beside `weights`, or random."""
    dim = get_teacher("vggish").dim
    if weights is None:
        matrix = torch.linalg.qr(torch.randn(dim, dim)).Q
        return matrix, torch.zeros(dim)
    path = weights.parent / _file_name(pca_url)
    stored = _read("vggish", path, what="PCA parameters file (expected beside the weights)")
    try:
        matrix = torch.as_tensor(np.asarray(stored["pca_eigen_vectors"]), dtype=torch.float32)
        means = torch.as_tensor(np.asarray(stored["pca_means"]), dtype=torch.float32)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path} does not hold the VGGish PCA parameters: {error!r}") from error
    means = means.reshape(-1)
    if matrix.shape != (dim, dim) or means.shape != (dim,):
        raise ValueError(
            f"{path}: VGGish PCA shapes {tuple(matrix.shape)}, {tuple(means.shape)}; "
            f"expected ({dim}, {dim}), ({dim},)"
        )
    return matrix, means


def load_vggish(
    device: torch.device | str,
    checkpoint: Path | None = None,
    pretrained: bool = True,
    *,
    max_batch: int = MAX_BATCH,
) -> Extractor:
    """VGGish: 128-d frames every 0.96 s from 16 kHz audio, as (q − 128) / 256 of the 8-bit
    PCA output q. `checkpoint`: `vggish-10086976.pth` with `vggish_pca_params-970ea276.pth`
    beside it, or the folder holding both."""
    device = _check("vggish", device, max_batch)
    vggish = _import("vggish", "torchvggish.torchvggish", "torchvggish")
    front_end = _import("vggish", "torchvggish.vggish_input", "torchvggish")
    sample_rate = get_teacher("vggish").sample_rate
    weights_url, pca_url = _release_url("vggish"), _release_url("vggish", "pca")

    if checkpoint is not None and Path(checkpoint).is_dir():
        checkpoint = Path(checkpoint) / _file_name(weights_url)
    weights = _weights_file("vggish", checkpoint, pretrained)
    if checkpoint is None and weights is not None:
        _fetch("vggish", pca_url)  # lands beside the weights in the hub cache
    state = None if weights is None else _state_dict("vggish", _read("vggish", weights), weights)
    matrix, means = _vggish_pca(weights, pca_url)

    model = _VGGish(vggish.VGG(vggish.make_layers(), False), matrix, means)
    if state is not None and weights is not None:
        _load_into("vggish", model.network, state, weights)
    else:
        _he_init(model.network)
    model = model.to(device).eval()

    def embed(audio: Tensor) -> Tensor:
        clips = _pad_to(audio, _VGGISH_MIN_SAMPLES).cpu().double().numpy()
        examples = np.stack(
            [
                front_end.waveform_to_examples(clip, sample_rate, return_tensor=False)
                for clip in clips
            ]
        )  # (B, T, 96, 64)
        batch, frames = examples.shape[:2]
        inputs = torch.from_numpy(examples).to(device, torch.float32).flatten(0, 1)
        quantised = _in_chunks(model, inputs, max_batch)
        return ((quantised - 128.0) / 256.0).reshape(batch, frames, -1)

    return Extractor("vggish", model, embed, device)


# ---------------------------------------------------------------------------------------------
# OpenL3


def load_openl3(
    device: torch.device | str,
    checkpoint: Path | None = None,
    pretrained: bool = True,
    *,
    max_batch: int = MAX_BATCH,
) -> Extractor:
    """OpenL3 (mel128, music, 512): frames of 1 s every 0.96 s from 48 kHz audio, minus 2.24.
    `checkpoint`: `torchopenl3_mel128_music_512.pth.tar`."""
    device = _check("openl3", device, max_batch)
    models = _import("openl3", "torchopenl3.models", "torchopenl3")
    weights = _weights_file("openl3", checkpoint, pretrained)
    state = None if weights is None else _state_dict("openl3", _read("openl3", weights), weights)

    model: nn.Module = models.PytorchOpenl3(
        content_type="music", input_repr="mel128", embedding_size=512
    )
    if state is not None and weights is not None:
        _load_into("openl3", model, state, weights)
    model = model.to(device).eval()

    def network(windows: Tensor) -> Tensor:
        out: Tensor = model(windows.unsqueeze(1))
        return out

    def embed(audio: Tensor) -> Tensor:
        windows = _windows(audio, _OPENL3_WINDOW, _OPENL3_HOP)  # (B, T, 48000)
        batch, frames = windows.shape[:2]
        out = _in_chunks(network, windows.flatten(0, 1), max_batch)
        return (out - _OPENL3_OFFSET).reshape(batch, frames, -1)

    return Extractor("openl3", model, embed, device)


# ---------------------------------------------------------------------------------------------
# PaSST


def load_passt(
    device: torch.device | str,
    checkpoint: Path | None = None,
    pretrained: bool = True,
    *,
    max_batch: int = MAX_BATCH,
) -> Extractor:
    """PaSST (`passt_s_swa_p16_128_ap476`, embed_only): 768-d frames from non-overlapping
    0.96 s windows of 32 kHz audio. `checkpoint`: `passt-s-f128-p16-s10-ap.476-swa.pt`."""
    device = _check("passt", device, max_batch)
    passt = _import("passt", "hear21passt.models.passt", "hear21passt")
    preprocess = _import("passt", "hear21passt.models.preprocess", "hear21passt")
    wrapper = _import("passt", "hear21passt.wrapper", "hear21passt")
    weights = _weights_file("passt", checkpoint, pretrained)
    state = None if weights is None else _state_dict("passt", _read("passt", weights), weights)

    sample_rate = get_teacher("passt").sample_rate
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the whole model
        mel = preprocess.AugmentMelSTFT(
            n_mels=128,
            sr=sample_rate,
            win_length=800,
            hopsize=320,
            n_fft=1024,
            freqm=48,
            timem=192,
            htk=False,
            fmin=0.0,
            fmax=None,
            norm=1,
            fmin_aug_range=10,
            fmax_aug_range=2000,
        )
        network: nn.Module = passt.get_model(arch=_PASST_ARCH, pretrained=False)
    vars(passt)["first_RUN"] = False  # else its first forward pass prints tensor shapes
    if state is not None and weights is not None:
        _load_into("passt", network, passt.checkpoint_filter_fn(state, network), weights)
    model: nn.Module = wrapper.PasstBasicWrapper(mel=mel, net=network, mode="embed_only")
    model = model.to(device).eval()

    def forward(windows: Tensor) -> Tensor:
        with warnings.catch_warnings():
            # Expected for 0.96 s inputs (its positional embedding is cut to fit), and torch
            # deprecations inside hear21passt's front end.
            warnings.filterwarnings("ignore", message="Input image size")
            warnings.filterwarnings("ignore", message=".*autocast.*is deprecated")
            warnings.filterwarnings("ignore", message="stft with return_complex=False")
            out: Tensor = model(windows)
        return out

    def embed(audio: Tensor) -> Tensor:
        windows = _windows(audio, _PASST_WINDOW, _PASST_WINDOW)  # (B, T, 30720)
        batch, frames = windows.shape[:2]
        out = _in_chunks(forward, windows.flatten(0, 1), max_batch)
        return out.reshape(batch, frames, -1)

    return Extractor("passt", model, embed, device)


# ---------------------------------------------------------------------------------------------
# PANNs


def load_panns(
    device: torch.device | str,
    checkpoint: Path | None = None,
    pretrained: bool = True,
    *,
    max_batch: int = MAX_BATCH,
) -> Extractor:
    """PANNs CNN14: one 2048-d vector per clip (T = 1) from 32 kHz audio.
    `checkpoint`: `Cnn14_mAP=0.431.pth`."""
    device = _check("panns", device, max_batch)
    models = _import("panns", "panns_hear.models", "panns-hear")
    weights = _weights_file("panns", checkpoint, pretrained)
    state = None if weights is None else _state_dict("panns", _read("panns", weights), weights)

    model: nn.Module = models.Cnn14(
        sample_rate=get_teacher("panns").sample_rate,
        window_size=1024,
        hop_size=320,
        mel_bins=64,
        fmin=50,
        fmax=14000,
        classes_num=527,
    )
    if state is not None and weights is not None:
        _load_into("panns", model, state, weights)
    model = model.to(device).eval()

    def network(clips: Tensor) -> Tensor:
        out: Tensor = model(clips)["embedding"]
        return out

    def embed(audio: Tensor) -> Tensor:
        out = _in_chunks(network, _pad_to(audio, _PANNS_MIN_SAMPLES), max_batch)
        return out.unsqueeze(1)

    return Extractor("panns", model, embed, device)


LOADERS: dict[str, Loader] = {
    "vggish": load_vggish,
    "openl3": load_openl3,
    "passt": load_passt,
    "panns": load_panns,
}
"""Teacher name → its `load_*` function."""
