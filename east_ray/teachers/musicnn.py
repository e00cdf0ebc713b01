"""musicnn (Pons & Serra, 2019) in PyTorch, with the released weights read from TF1 checkpoints.

One job: give the rest of east_ray musicnn's features (taggram, penultimate layer, temporal
mean/max pools) from audio, numerically matching the original TensorFlow package
(`musicnn` 0.1.0: `models.py`, `extractor.py`, `configuration.py`), without TensorFlow.

Front end (as `extractor.batch_data` does with librosa): mono audio at 16 kHz; centred
power STFT (n_fft 512, hop 256, periodic Hann, zero padding); 96 Slaney mel bands
(Slaney-normalised, 0–8 kHz); the mel power is cast to float16 (the original does this to
save memory; we keep it for fidelity), then `log10(10000·x + 1)` in float32; the frames are
cut into non-overlapping 3 s patches of 187 frames (a trailing partial patch is dropped,
as `extractor(..., input_length=3, input_overlap=False)` does).

The original resamples with librosa (soxr "HQ" in librosa >= 0.10, which made the
reference outputs); we resample with torchaudio's windowed sinc (`RESAMPLING`, tuned to
imitate soxr), which moves a few low-energy log-mel bins by up to ~6e-3 (mean 3e-5) and
the taggram by ~1e-4 on the reference clip: see `tests/test_musicnn.py`.

Network (`build_musicnn`, "7774timbraltemporal"; NHWC in TF with H = time, W = mel; here
NCHW with the same H, W):

- input batch norm (one channel);
- timbral: time-padded (3, 3) 'valid' convs 7×38 and 7×67 (204 filters each), temporal:
  'same' convs 128×1, 64×1, 32×1 (51 filters each); each is conv → ReLU → batch norm →
  max over all mel bins; concatenated → 561 channels per frame;
- mid-end: three 7-tap 1-D convs of 64 filters (time-padded (3, 3)), conv → ReLU → batch
  norm, the 2nd and 3rd with residual connections; dense connection: concatenate the
  front end and the three outputs → 753 channels;
- back end: max and mean over time (753 each), interleaved per channel as TF's
  `concat([max, mean], 2)` + `flatten` orders them (1506), batch norm, dense 200 + ReLU,
  batch norm (`penultimate`), dense 50 (`logits`); `taggram = sigmoid(logits)`.

All batch norms use TF's epsilon 1e-3 and run on the stored moving statistics; dropout
is the identity at inference. The MSD and MTT models share this architecture (64 mid-end
filters, 200 back-end units); the `_vgg` variants are not ported.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from torch import Tensor, nn

from east_ray.catalog.teachers import get_teacher
from east_ray.data.audio import decode
from east_ray.errors import BadValueError, UnknownNameError
from east_ray.teachers.extractor import Extractor
from east_ray.teachers.tf_checkpoint import CheckpointError, index_path, read_checkpoint
from east_ray.teachers.weights import WeightsUnavailableError

__all__ = [
    "FRAMES_PER_PATCH",
    "MODELS",
    "MusicnnOutput",
    "MusicnnTagger",
    "checkpoint_state_dict",
    "default_checkpoint_dir",
    "load_musicnn",
    "musicnn_features",
    "musicnn_file_features",
    "musicnn_log_mel",
    "musicnn_patches",
]

SAMPLE_RATE = 16_000
N_FFT = 512
HOP_LENGTH = 256
N_MELS = 96
FRAMES_PER_PATCH = 187  # librosa.time_to_frames(3 s, sr=16000, n_fft=512, hop=256) + 1
BATCH_NORM_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization default
N_TAGS = 50
MIDEND_FILTERS = 64
BACKEND_UNITS = 200
TIMBRAL_FILTERS = int(1.6 * 128)  # 204
TEMPORAL_FILTERS = int(1.6 * 32)  # 51
TIMBRAL_HEIGHTS = (int(0.4 * N_MELS), int(0.7 * N_MELS))  # 38, 67 mel bins; 7 frames
TEMPORAL_LENGTHS = (128, 64, 32)  # frames; 1 mel bin
FRONTEND_CHANNELS = 2 * TIMBRAL_FILTERS + 3 * TEMPORAL_FILTERS  # 561
POOLED_CHANNELS = FRONTEND_CHANNELS + 3 * MIDEND_FILTERS  # 753

# torchaudio's windowed-sinc resampler set to imitate librosa >= 0.10's default, soxr "HQ"
# (what made the reference outputs): fitted on 11 real clips at 44.1 and 22.05 kHz, where
# it matches soxr to ~1e-4 relative RMS (the cutoff matters most; 0.945 gives ~1e-3).
RESAMPLING: dict[str, float | int | str] = {
    "lowpass_filter_width": 64,
    "rolloff": 0.9569,
    "resampling_method": "sinc_interp_kaiser",
    "beta": 6.0,
}

MODELS: dict[str, tuple[str, ...]] = {
    "MSD_musicnn": (
        "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance",
        "00s", "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists",
        "classic rock", "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s",
        "chill", "instrumental", "punk", "oldies", "blues", "hard rock", "ambient",
        "acoustic", "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party",
        "country", "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal",
        "Progressive rock", "60s", "rnb", "indie pop", "sad", "House", "happy",
    ),
    "MTT_musicnn": (
        "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock",
        "fast", "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian",
        "opera", "male", "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet",
        "flute", "woman", "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man",
        "classic", "choir", "voice", "new age", "dance", "male voice", "female vocal",
        "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice",
        "choral",
    ),
}  # fmt: skip
"""The released musicnn models and their 50 tags, in output order."""


class MusicnnOutput(NamedTuple):
    """What `MusicnnTagger` computes for a batch of patches `(n, 187, 96)`."""

    logits: Tensor  # (n, 50), pre-sigmoid
    penultimate: Tensor  # (n, 200), after the back end's second batch norm
    mean_pool: Tensor  # (n, 753), mean over time of the mid-end features
    max_pool: Tensor  # (n, 753), max over time of the mid-end features


def _batch_norm_2d(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BATCH_NORM_EPS, momentum=0.01)


def _batch_norm_1d(channels: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=BATCH_NORM_EPS, momentum=0.01)


class _FrontEndBranch(nn.Module):
    """conv (explicit time padding) → ReLU → batch norm → max over every mel bin."""

    def __init__(self, filters: int, kernel: tuple[int, int], time_pad: tuple[int, int]):
        super().__init__()
        self.time_pad = time_pad
        self.conv = nn.Conv2d(1, filters, kernel)
        self.bn = _batch_norm_2d(filters)

    def forward(self, x: Tensor) -> Tensor:  # (n, 1, T, 96) → (n, filters, T)
        y: Tensor = self.bn(F.relu(self.conv(F.pad(x, (0, 0, *self.time_pad)))))
        return y.amax(dim=3)


class _MidEndLayer(nn.Module):
    """7-tap conv over time (padded 3 + 3) → ReLU → batch norm."""

    def __init__(self, in_channels: int, filters: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, filters, 7)
        self.bn = _batch_norm_1d(filters)

    def forward(self, x: Tensor) -> Tensor:  # (n, C, T) → (n, filters, T)
        y: Tensor = self.bn(F.relu(self.conv(F.pad(x, (3, 3)))))
        return y


def _same_padding(length: int) -> tuple[int, int]:
    """TF 'same' padding of a stride-1 kernel: the extra element goes after."""
    before = (length - 1) // 2
    return before, length - 1 - before


class MusicnnTagger(nn.Module):
    """The musicnn network (`build_musicnn` of musicnn 0.1.0) on log-mel patches."""

    def __init__(
        self,
        n_tags: int = N_TAGS,
        midend_filters: int = MIDEND_FILTERS,
        backend_units: int = BACKEND_UNITS,
    ) -> None:
        super().__init__()
        self.input_bn = _batch_norm_2d(1)
        self.timbral = nn.ModuleList(
            _FrontEndBranch(TIMBRAL_FILTERS, (7, height), (3, 3)) for height in TIMBRAL_HEIGHTS
        )
        self.temporal = nn.ModuleList(
            _FrontEndBranch(TEMPORAL_FILTERS, (length, 1), _same_padding(length))
            for length in TEMPORAL_LENGTHS
        )
        self.midend = nn.ModuleList(
            [
                _MidEndLayer(FRONTEND_CHANNELS, midend_filters),
                _MidEndLayer(midend_filters, midend_filters),
                _MidEndLayer(midend_filters, midend_filters),
            ]
        )
        pooled = FRONTEND_CHANNELS + 3 * midend_filters
        self.pool_bn = _batch_norm_1d(2 * pooled)
        self.dense = nn.Linear(2 * pooled, backend_units)
        self.dense_bn = _batch_norm_1d(backend_units)
        self.output = nn.Linear(backend_units, n_tags)

    def forward(self, input_batch: Tensor) -> MusicnnOutput:
        """Log-mel patches `(n, T, 96)` (T = 187 for the released models) → outputs."""
        if input_batch.ndim != 3 or input_batch.shape[2] != N_MELS:
            raise ValueError(
                f"input_batch: got shape {tuple(input_batch.shape)}, expected (n, T, {N_MELS})"
            )
        x = self.input_bn(input_batch.unsqueeze(1))  # (n, 1, T, 96)
        frontend = torch.cat(
            [branch(x) for branch in self.timbral] + [branch(x) for branch in self.temporal],
            dim=1,
        )  # (n, 561, T)
        cnn1 = self.midend[0](frontend)
        cnn2 = self.midend[1](cnn1) + cnn1
        cnn3 = self.midend[2](cnn2) + cnn2
        features = torch.cat([frontend, cnn1, cnn2, cnn3], dim=1)  # (n, 753, T)
        max_pool = features.amax(dim=2)
        mean_pool = features.mean(dim=2)
        pooled = torch.stack([max_pool, mean_pool], dim=2).flatten(1)  # max0, mean0, max1, ...
        penultimate = self.dense_bn(F.relu(self.dense(self.pool_bn(pooled))))
        logits = self.output(penultimate)
        return MusicnnOutput(logits, penultimate, mean_pool, max_pool)


# --------------------------------------------------------------------------------------
# Weights


def default_checkpoint_dir(model: str = "MSD_musicnn") -> Path:
    """Where the installed `musicnn` wheel keeps `model`'s checkpoint (not imported)."""
    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailableError(
            "the musicnn weights come with the musicnn package, which is not installed: "
            "pip install --no-deps musicnn==0.1.0, or pass the folder of its checkpoint "
            "(checkpoint_dir, --checkpoint)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / model


def _conv_layers(model: MusicnnTagger) -> list[nn.Conv2d | nn.Conv1d]:
    """Convolutions in the order TF created them (`conv2d`, `conv2d_1`, ...)."""
    branches = [*model.timbral, *model.temporal]
    convs: list[nn.Conv2d | nn.Conv1d] = [
        b.conv for b in branches if isinstance(b, _FrontEndBranch)
    ]
    convs += [m.conv for m in model.midend if isinstance(m, _MidEndLayer)]
    return convs


def _batch_norms(model: MusicnnTagger) -> list[nn.BatchNorm1d | nn.BatchNorm2d]:
    """Batch norms in TF creation order (`batch_normalization`, `batch_normalization_1`, ...)."""
    norms: list[nn.BatchNorm1d | nn.BatchNorm2d] = [model.input_bn]
    norms += [b.bn for b in [*model.timbral, *model.temporal] if isinstance(b, _FrontEndBranch)]
    norms += [m.bn for m in model.midend if isinstance(m, _MidEndLayer)]
    return [*norms, model.pool_bn, model.dense_bn]


def _tf_name(base: str, i: int) -> str:
    return base if i == 0 else f"{base}_{i}"


def checkpoint_state_dict(
    model: MusicnnTagger, weights: dict[str, np.ndarray]
) -> dict[str, Tensor]:
    """Map TF variables (`conv2d_5/kernel`, ...) onto `model`'s parameter names."""
    module_names = {id(m): name for name, m in model.named_modules()}
    state: dict[str, Tensor] = {}

    def put(module: nn.Module, attribute: str, value: np.ndarray) -> None:
        state[f"{module_names[id(module)]}.{attribute}"] = torch.from_numpy(
            np.ascontiguousarray(value, dtype=np.float32)
        )

    for i, conv in enumerate(_conv_layers(model)):
        kernel = weights[f"{_tf_name('conv2d', i)}/kernel"]  # HWIO
        if isinstance(conv, nn.Conv1d):  # a (7, C) kernel spanning all C channels, 1 input map
            kernel = kernel[:, :, 0, :].transpose(2, 1, 0)  # (out, C, 7)
        else:
            kernel = kernel.transpose(3, 2, 0, 1)  # OIHW
        put(conv, "weight", kernel)
        put(conv, "bias", weights[f"{_tf_name('conv2d', i)}/bias"])
    for i, norm in enumerate(_batch_norms(model)):
        name = _tf_name("batch_normalization", i)
        put(norm, "weight", weights[f"{name}/gamma"])
        put(norm, "bias", weights[f"{name}/beta"])
        put(norm, "running_mean", weights[f"{name}/moving_mean"])
        put(norm, "running_var", weights[f"{name}/moving_variance"])
    for i, dense in enumerate([model.dense, model.output]):
        put(dense, "weight", weights[f"{_tf_name('dense', i)}/kernel"].T)
        put(dense, "bias", weights[f"{_tf_name('dense', i)}/bias"])
    return state


def _checkpoint_variable_names() -> list[str]:
    names = [f"{_tf_name('conv2d', i)}/{p}" for i in range(8) for p in ("kernel", "bias")]
    names += [
        f"{_tf_name('batch_normalization', i)}/{p}"
        for i in range(11)
        for p in ("gamma", "beta", "moving_mean", "moving_variance")
    ]
    return names + [f"{_tf_name('dense', i)}/{p}" for i in range(2) for p in ("kernel", "bias")]


def load_musicnn(model: str = "MSD_musicnn", checkpoint_dir: Path | None = None) -> MusicnnTagger:
    """Build `model` ("MSD_musicnn" or "MTT_musicnn") and load its released weights.

    `checkpoint_dir` is the folder holding the checkpoint's bare `.index` and
    `.data-00000-of-00001` files (or a V2 checkpoint prefix); by default the installed
    `musicnn` wheel's folder of that name. Returned in eval mode, on the CPU.
    """
    if model not in MODELS:
        raise UnknownNameError(
            f"unknown musicnn model {model!r}; known models: {', '.join(MODELS)}"
        )
    directory = default_checkpoint_dir(model) if checkpoint_dir is None else Path(checkpoint_dir)
    index = index_path(directory)
    if not index.is_file():
        raise FileNotFoundError(f"musicnn checkpoint for {model} not found: {index} is missing")
    try:
        weights = read_checkpoint(directory, _checkpoint_variable_names())
    except CheckpointError as exc:
        raise CheckpointError(exc.path, f"{exc.reason} (loading {model})") from exc
    network = MusicnnTagger(n_tags=len(MODELS[model]))
    state = checkpoint_state_dict(network, weights)
    own = network.state_dict()
    for name, value in state.items():
        if own[name].shape != value.shape:
            raise CheckpointError(
                index,
                f"{name}: checkpoint shape {tuple(value.shape)} != model {tuple(own[name].shape)}",
            )
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise CheckpointError(index, f"no checkpoint values for {missing}")
    network.load_state_dict(state, strict=False)
    return network.eval()


# --------------------------------------------------------------------------------------
# Audio front end


@functools.lru_cache(maxsize=4)
def _mel_filters(device: torch.device) -> Tensor:
    """Slaney mel filters (Slaney-normalised), `(n_fft // 2 + 1, 96)`, as librosa's."""
    filters: Tensor = AF.melscale_fbanks(
        N_FFT // 2 + 1,
        f_min=0.0,
        f_max=SAMPLE_RATE / 2,
        n_mels=N_MELS,
        sample_rate=SAMPLE_RATE,
        norm="slaney",
        mel_scale="slaney",
    )
    return filters.to(device)


def _mono(audio: np.ndarray | Tensor) -> Tensor:
    x = torch.as_tensor(audio)
    if x.ndim == 2:
        x = x.float().mean(dim=0)
    elif x.ndim != 1:
        raise ValueError(
            f"audio: got shape {tuple(x.shape)}, expected (samples,) or (channels, samples)"
        )
    return x.float()


def musicnn_log_mel(
    audio: np.ndarray | Tensor, sample_rate: int, device: torch.device | str | None = None
) -> Tensor:
    """Audio `(samples,)` or `(channels, samples)` → musicnn's log-mel `(frames, 96)`.

    Channels are averaged; the signal is resampled to 16 kHz (`RESAMPLING`).
    """
    x = _mono(audio)
    if device is not None:
        x = x.to(device)
    if sample_rate != SAMPLE_RATE:
        x = AF.resample(x, sample_rate, SAMPLE_RATE, **RESAMPLING)
    window = torch.hann_window(N_FFT, periodic=True, device=x.device)
    spec = torch.stft(
        x, N_FFT, HOP_LENGTH, window=window, center=True, pad_mode="constant", return_complex=True
    )
    power = spec.real.square() + spec.imag.square()  # (257, frames)
    mel = power.T @ _mel_filters(x.device)  # (frames, 96)
    mel = mel.half().float()  # the original stores the mel power as float16
    return torch.log10(10000.0 * mel + 1.0)


def musicnn_patches(log_mel: Tensor, frames: int = FRAMES_PER_PATCH) -> Tensor:
    """`(frames_total, 96)` → non-overlapping patches `(n, frames, 96)`; the tail is dropped."""
    n = (log_mel.shape[0] - frames) // frames + 1
    if log_mel.shape[0] < frames:
        seconds = frames * HOP_LENGTH / SAMPLE_RATE
        raise BadValueError(
            f"audio too short for musicnn: {log_mel.shape[0]} frames < {frames} (~{seconds:.2f} s)"
        )
    return log_mel[: n * frames].reshape(n, frames, log_mel.shape[1])


def musicnn_features(
    audio: np.ndarray | Tensor, sample_rate: int, model: nn.Module
) -> dict[str, Tensor]:
    """Audio → musicnn's outputs per 3 s patch, on `model`'s device.

    Keys: `input_batch` (n, 187, 96), `taggram` (n, 50) = sigmoid of the logits,
    `logits` (n, 50), `penultimate` (n, 200), `mean_pool` (n, 753), `max_pool` (n, 753).
    `audio` is `(samples,)` or `(channels, samples)` at `sample_rate`. The model is put
    in eval mode (a frozen teacher: batch norms on their stored statistics).
    """
    model.eval()
    device = next(model.parameters()).device
    input_batch = musicnn_patches(musicnn_log_mel(audio, sample_rate, device))
    with torch.inference_mode():
        out = model(input_batch)
    if not isinstance(out, MusicnnOutput):
        raise TypeError(f"model returned {type(out).__name__}, expected a MusicnnTagger")
    return {
        "input_batch": input_batch,
        "taggram": torch.sigmoid(out.logits),
        "logits": out.logits,
        "penultimate": out.penultimate,
        "mean_pool": out.mean_pool,
        "max_pool": out.max_pool,
    }


def musicnn_file_features(path: Path | str, model: nn.Module) -> dict[str, Tensor]:
    """`musicnn_features` of an audio file (decoded with soundfile, channels averaged)."""
    audio, rate = decode(path)
    return musicnn_features(audio, rate, model)


def load_musicnn_teacher(
    device: torch.device | str,
    checkpoint: Path | None = None,
    pretrained: bool = True,
    *,
    outputs: tuple[str, ...] = ("musicnn",),
) -> Extractor:
    """The musicnn teacher: 16 kHz audio `(B, N)` → penultimate layer `(B, T, 200)` per
    patch, or with `outputs` each named layer (`musicnn@mean_pool`, ...) from one pass.

    `checkpoint`: a directory holding `.index` + `.data-*` (default: the installed wheel's
    MSD model). `pretrained=False` keeps random weights (tests).
    """
    if pretrained:
        model = load_musicnn("MSD_musicnn", checkpoint).to(device)
    else:
        model = MusicnnTagger().to(device).eval()

    layers = {ref: get_teacher(ref).layer for ref in outputs}

    def embed(audio: Tensor) -> dict[str, Tensor]:
        clips = [musicnn_features(clip, SAMPLE_RATE, model) for clip in audio]
        return {ref: torch.stack([c[str(layer)] for c in clips]) for ref, layer in layers.items()}

    return Extractor(outputs[0], embed, device, model, outputs=outputs)
