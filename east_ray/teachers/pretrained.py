"""The four pretrained teachers (VGGish, OpenL3, PaSST, PANNs) as frame-level extractors.

One job: build each network, with its released weights (`east_ray.teachers.weights`) or
random ones, behind the one `Extractor` interface, normalised as the EAsT authors did.

`load_vggish`, `load_openl3`, `load_passt` and `load_panns` share one signature,
`(device, checkpoint=None, pretrained=True, *, max_batch=16)`; the catalog rows name them
and hold each teacher's frame grid (`TeacherInfo.frames`):

| teacher | D | sr | frame t (s) | T(N) | 10 s | 29.1 s | normalised |
|---|---|---|---|---|---|---|---|
| vggish | 128 | 16 kHz | [.96 t, .96 t + .975) | 1 + (N − 15600)//15360 | 10 | 30 | (q − 128)/256 |
| openl3 | 512 | 48 kHz | [.96 t − .5, .96 t + .5) | 1 + ⌈(N − 24000)/46080⌉ | 11 | 31 | x − 2.24 |
| passt | 768 | 32 kHz | [.96 t − .48, .96 t + .48) | 1 + N//30720 | 11 | 31 | none |
| panns | 2048 | 32 kHz | the whole clip | 1 | 1 | 1 | none |

For VGGish, q is the 8-bit PCA output (whole numbers 0..255), so its values lie in
[−0.5, 0.5). A VGGish clip shorter than one window is zero-padded to one window (T = 1);
PANNs clips shorter than 1 s are zero-padded to 1 s, as `panns-hear` does.

OpenL3 and PaSST frames are centred as the EAsT authors extracted them (catalog
`framing`): openl3's `get_audio_embedding(center=True, hop_size=0.96)` puts half a window
of zeros in front (frame t centred on .96 t s) and zero-pads the end up to the last frame
holding clip samples (T = 1 for N ≤ 24000); hear21passt's `get_timestamp_embeddings` with
a 960 ms window and hop reflects half a window at each end (clips of at most half a window
are zero-padded first, since reflection needs more samples than it mirrors) and drops a
remainder shorter than a hop. VGGish frames start at 0, as the VGGish frames shipped with
OpenMIC do.

Networks and their settings:
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

`pretrained=False` builds the network with random weights (tests, offline runs): the
package's own initialisation, except VGGish, which gets He-normal weights and a random
orthogonal PCA with zero mean so that its 8-bit output still varies.

Packages (the `[teachers]` extra, beside torch 2.11.0 / torchaudio 2.11.0; the torchvision
pin keeps timm, which hear21passt pulls, from swapping torch):

| package | version used | brings |
|---|---|---|
| torchvggish | 0.2 | resampy 0.2.2 |
| torchopenl3 | 1.0.1 | librosa 0.11.0, nnAudio 0.3.4, julius 0.2.8, resampy |
| hear21passt | 0.0.26 | timm 1.0.31, torchvision 0.26.0 |
| panns-hear | 0.2.1 | torchlibrosa 0.1.0 |

Some package internals are used and therefore pinned: hear21passt's `get_model`,
`checkpoint_filter_fn` and its module flag `first_RUN` (set to False so the first forward
pass does not print tensor shapes), torchvggish's `VGG`/`make_layers`. The download URLs
in the catalog are the ones these versions use (a test compares them).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from east_ray.catalog.teachers import TeacherInfo, get_teacher
from east_ray.errors import BadValueError
from east_ray.teachers.extractor import Extractor
from east_ray.teachers.weights import fetch, file_name, import_package, read_file, read_weights

MAX_BATCH = 16
"""Default number of network inputs (windows; clips for PANNs) per forward pass. On two CPU
cores 16 was fastest for OpenL3 and PaSST (60 windows at once took 3-4x longer)."""

_VGGISH_PCA_RANGE = 2.0  # the PCA output is clipped to ±2 before 8-bit quantisation
_OPENL3_OFFSET = 2.24
_PASST_ARCH = "passt_s_swa_p16_128_ap476"


def _check(teacher: str, device: torch.device | str, max_batch: int) -> torch.device:
    if max_batch < 1:
        raise BadValueError(f"{teacher}: max_batch must be at least 1, got {max_batch}")
    return torch.device(device)


def _pad_to(audio: Tensor, n_samples: int) -> Tensor:
    """Zero-pad `(B, N)` audio at the end to at least `n_samples`."""
    missing = n_samples - audio.shape[-1]
    return F.pad(audio, (0, missing)) if missing > 0 else audio


def _windows(audio: Tensor, info: TeacherInfo) -> Tensor:
    """`(B, N)` → `(B, T, window)`: the teacher's frames, padded as its `framing` says."""
    if info.hop is None:
        raise ValueError(f"{info.name} is a clip-level teacher: it has no frames to cut")
    frames = info.frames(audio.shape[-1])
    half = info.window // 2
    if info.framing == "centred_reflect":
        audio = F.pad(_pad_to(audio, half + 1).unsqueeze(1), (half, half), mode="reflect")
        audio = audio.squeeze(1)
    elif info.framing == "centred_zeros":
        audio = F.pad(audio, (half, 0))
    length = info.window + (frames - 1) * info.hop  # zeros at the end or the tail dropped
    return _pad_to(audio, length)[..., :length].unfold(-1, info.window, info.hop)


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


def _vggish_pca(weights: Path | None, pca_url: str, dim: int) -> tuple[Tensor, Tensor]:
    """PCA matrix `(dim, dim)` and means `(dim,)`: from the file beside `weights`, or random."""
    if weights is None:
        matrix = torch.linalg.qr(torch.randn(dim, dim)).Q
        return matrix, torch.zeros(dim)
    path = weights.parent / file_name(pca_url)
    stored = read_file("vggish", path, what="PCA parameters file (expected beside the weights)")
    try:
        matrix = torch.as_tensor(np.asarray(stored["pca_eigen_vectors"]), dtype=torch.float32)
        means = torch.as_tensor(np.asarray(stored["pca_means"]), dtype=torch.float32)
    except (KeyError, TypeError, ValueError) as error:
        raise BadValueError(f"{path} does not hold the VGGish PCA parameters: {error!r}") from error
    means = means.reshape(-1)
    if matrix.shape != (dim, dim) or means.shape != (dim,):
        raise BadValueError(
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
    vggish = import_package("vggish", "torchvggish.torchvggish", "torchvggish")
    front_end = import_package("vggish", "torchvggish.vggish_input", "torchvggish")
    info = get_teacher("vggish")
    assert info.weights_url is not None and info.pca_url is not None  # the row has both

    if checkpoint is not None and Path(checkpoint).is_dir():
        checkpoint = Path(checkpoint) / file_name(info.weights_url)
    weights = read_weights("vggish", checkpoint, pretrained)
    if checkpoint is None and weights is not None:
        fetch("vggish", info.pca_url)  # lands beside the weights in the hub cache
    matrix, means = _vggish_pca(None if weights is None else weights.path, info.pca_url, info.dim)

    model = _VGGish(vggish.VGG(vggish.make_layers(), False), matrix, means)
    if weights is not None:
        weights.load_into(model.network)
    else:
        _he_init(model.network)
    model = model.to(device).eval()

    def embed(audio: Tensor) -> Tensor:
        clips = _pad_to(audio, info.window).cpu().double().numpy()
        examples = np.stack(
            [
                front_end.waveform_to_examples(clip, info.sample_rate, return_tensor=False)
                for clip in clips
            ]
        )  # (B, T, 96, 64)
        batch, frames = examples.shape[:2]
        inputs = torch.from_numpy(examples).to(device, torch.float32).flatten(0, 1)
        quantised = _in_chunks(model, inputs, max_batch)
        return ((quantised - 128.0) / 256.0).reshape(batch, frames, -1)

    return Extractor("vggish", embed, device, model)


# ---------------------------------------------------------------------------------------------
# OpenL3


def load_openl3(
    device: torch.device | str,
    checkpoint: Path | None = None,
    pretrained: bool = True,
    *,
    max_batch: int = MAX_BATCH,
) -> Extractor:
    """OpenL3 (mel128, music, 512): frames of 1 s centred every 0.96 s from 48 kHz audio,
    minus 2.24. `checkpoint`: `torchopenl3_mel128_music_512.pth.tar`."""
    device = _check("openl3", device, max_batch)
    models = import_package("openl3", "torchopenl3.models", "torchopenl3")
    weights = read_weights("openl3", checkpoint, pretrained)
    info = get_teacher("openl3")

    model: nn.Module = models.PytorchOpenl3(
        content_type="music", input_repr="mel128", embedding_size=info.dim
    )
    if weights is not None:
        weights.load_into(model)
    model = model.to(device).eval()

    def network(windows: Tensor) -> Tensor:
        out: Tensor = model(windows.unsqueeze(1))
        return out

    def embed(audio: Tensor) -> Tensor:
        windows = _windows(audio, info)  # (B, T, 48000), centred
        batch, frames = windows.shape[:2]
        out = _in_chunks(network, windows.flatten(0, 1), max_batch)
        return (out - _OPENL3_OFFSET).reshape(batch, frames, -1)

    return Extractor("openl3", embed, device, model)


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
    0.96 s windows of 32 kHz audio, centred every 0.96 s. `checkpoint`:
    `passt-s-f128-p16-s10-ap.476-swa.pt`."""
    device = _check("passt", device, max_batch)
    passt = import_package("passt", "hear21passt.models.passt", "hear21passt")
    preprocess = import_package("passt", "hear21passt.models.preprocess", "hear21passt")
    wrapper = import_package("passt", "hear21passt.wrapper", "hear21passt")
    weights = read_weights("passt", checkpoint, pretrained)
    info = get_teacher("passt")

    with contextlib.redirect_stdout(io.StringIO()):  # it prints the whole model
        mel = preprocess.AugmentMelSTFT(
            n_mels=128,
            sr=info.sample_rate,
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
    if weights is not None:
        weights.load_into(network, passt.checkpoint_filter_fn(weights.state, network))
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
        windows = _windows(audio, info)  # (B, T, 30720), centred
        batch, frames = windows.shape[:2]
        out = _in_chunks(forward, windows.flatten(0, 1), max_batch)
        return out.reshape(batch, frames, -1)

    return Extractor("passt", embed, device, model)


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
    models = import_package("panns", "panns_hear.models", "panns-hear")
    weights = read_weights("panns", checkpoint, pretrained)
    info = get_teacher("panns")

    model: nn.Module = models.Cnn14(
        sample_rate=info.sample_rate,
        window_size=1024,
        hop_size=320,
        mel_bins=64,
        fmin=50,
        fmax=14000,
        classes_num=527,
    )
    if weights is not None:
        weights.load_into(model)
    model = model.to(device).eval()

    def network(clips: Tensor) -> Tensor:
        out: Tensor = model(clips)["embedding"]
        return out

    def embed(audio: Tensor) -> Tensor:
        out = _in_chunks(network, _pad_to(audio, info.window), max_batch)
        return out.unsqueeze(1)

    return Extractor("panns", embed, device, model)
