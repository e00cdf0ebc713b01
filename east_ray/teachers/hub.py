"""The hub teachers' extractor (`east_ray.catalog.hub`): a `transformers` model and its own
feature extractor, every requested hidden state from one forward pass per chunk, pooled to
the teacher's frame grid.

Weights come from `checkpoint` (a folder written by `save_pretrained`) or from the Hugging
Face cache at the row's pinned revision, downloaded there once where the hub is reachable
(`fetch_hub_teacher`); offline (`HF_HUB_OFFLINE=1`), a model not in the cache is one error
naming the model, the revision and how to fetch it. A checkpoint whose hidden sizes are not
the row's is refused, and so is one that leaves any of the model's weights uninitialised.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from east_ray.catalog.hub import HubModel
from east_ray.catalog.teachers import TeacherInfo, get_teacher
from east_ray.errors import BadValueError
from east_ray.teachers.extractor import Extractor
from east_ray.teachers.weights import WeightsUnavailableError, import_package

logger = logging.getLogger(__name__)

# a family's forward pass: (model, its feature extractor's output) → hidden states, each
# (B, native frames, D)
Forward = Callable[[Any, dict[str, Tensor]], Sequence[Tensor]]


def _transformers(teacher: str) -> ModuleType:
    return import_package(teacher, "transformers", "transformers", extra="hf")


def _source(info: TeacherInfo, checkpoint: Path | None) -> tuple[str, str | None, bool]:
    """Where the weights load from: (folder or repo, revision, offline only)."""
    model = _hub(info)
    if checkpoint is not None:
        if not Path(checkpoint).is_dir():
            raise BadValueError(
                f"{info.name}: --checkpoint {checkpoint} is not a folder; give the folder "
                f"that save_pretrained wrote for {model.repo}"
            )
        return str(checkpoint), None, True
    if model.revision is None:
        raise BadValueError(
            f"{info.name}: the catalog row of {model.repo} has no pinned revision yet; on a "
            "machine with hub access run `python -m east_ray.teachers revisions` and set the "
            "row's revision in east_ray/catalog/hub.py, or give --checkpoint a local folder"
        )
    from huggingface_hub import constants

    return model.repo, model.revision, bool(constants.HF_HUB_OFFLINE)


def _hub(info: TeacherInfo) -> HubModel:
    if info.hub is None:
        raise BadValueError(f"{info.name} is not a hub teacher")
    return info.hub


def _not_cached(
    info: TeacherInfo, revision: str | None, error: Exception
) -> WeightsUnavailableError:
    model = _hub(info)
    from huggingface_hub import constants

    return WeightsUnavailableError(
        f"{info.name}: {model.repo} at revision {revision} is not in the Hugging Face cache "
        f"({constants.HF_HUB_CACHE}) and cannot be downloaded here ({type(error).__name__}); "
        f"run `python -m east_ray.teachers fetch --teacher {info.name}` where the hub is "
        "reachable, with HF_HOME on a file system this machine reads, or give --checkpoint a "
        "folder that save_pretrained wrote"
    )


def load_parts(
    info: TeacherInfo, checkpoint: Path | None, pretrained: bool
) -> tuple[nn.Module, Any]:
    """The model (weights loaded, or random when not `pretrained`) and its feature extractor."""
    model = _hub(info)
    transformers = _transformers(info.name)
    source, revision, offline = _source(info, checkpoint)
    cls = getattr(transformers, model.model_class)
    where = {"revision": revision, "local_files_only": offline}
    try:
        features = getattr(transformers, model.features).from_pretrained(source, **where)
        if pretrained:
            net, loading = cls.from_pretrained(source, output_loading_info=True, **where)
        else:
            net, loading = cls(cls.config_class.from_pretrained(source, **where)), {}
    except OSError as error:  # transformers' error for a file it could neither find nor fetch
        if checkpoint is not None:
            raise BadValueError(f"{info.name}: {checkpoint}: {error}") from error
        raise _not_cached(info, revision, error) from error
    missing = loading.get("missing_keys", [])
    if missing:
        raise BadValueError(
            f"{info.name}: {source} leaves {len(missing)} weights of {model.model_class} "
            f"uninitialised (first: {sorted(missing)[:3]}); it is not a {model.repo} checkpoint"
        )
    _check_sizes(info, source, net)
    return net.eval(), features


# MERT's options that its repository's MERTModel adds to HuBERT (a CQT input branch, a
# "deepnorm" encoder); HubertModel has neither, so a config with one on is not loadable
MERT_ONLY = ("feature_extractor_cqt", "deepnorm")


def _check_sizes(info: TeacherInfo, source: str, net: nn.Module) -> None:
    model = _hub(info)
    config: Any = net.config
    used = [key for key in MERT_ONLY if getattr(config, key, False)]
    if used:
        raise BadValueError(
            f"{info.name}: {source} turns on {used}, which only MERT's own code "
            "(trust_remote_code) implements; transformers' HubertModel would ignore them"
        )
    if model.family == "clap":
        dims = [config.patch_embeds_hidden_size * 2**i for i in range(len(config.depths))]
        found = (*dims, dims[-1])
    else:
        hidden = config.d_model if model.family == "whisper" else config.hidden_size
        layers = config.encoder_layers if model.family == "whisper" else config.num_hidden_layers
        found = (hidden,) * (layers + 1)
    if found != model.hidden:
        raise BadValueError(
            f"{info.name}: {source} has hidden states of sizes {list(found)}, the catalog "
            f"row of {model.repo} {list(model.hidden)}; give that model's folder"
        )


def _hubert(net: Any, inputs: dict[str, Tensor]) -> Sequence[Tensor]:
    states: Sequence[Tensor] = net(inputs["input_values"], output_hidden_states=True).hidden_states
    return states


def _ast(net: Any, inputs: dict[str, Tensor]) -> Sequence[Tensor]:
    """Patch tokens (after the CLS and distillation tokens), frequency patch by time patch,
    averaged over frequency: (B, time patches, D)."""
    embeddings = net.embeddings
    freq, time = embeddings.get_shape(net.config)
    states = net(inputs["input_values"], output_hidden_states=True).hidden_states
    return [s[:, 2:].unflatten(1, (freq, time)).mean(dim=1) for s in states]


def _whisper(net: Any, inputs: dict[str, Tensor]) -> Sequence[Tensor]:
    encoder = net.get_encoder()
    states: Sequence[Tensor] = encoder(
        inputs["input_features"], output_hidden_states=True
    ).hidden_states
    return states


def _clap(net: Any, inputs: dict[str, Tensor]) -> Sequence[Tensor]:
    """Each stage's 2-D map averaged to one vector per window, (B, 1, D), and the projected,
    unit-length audio embedding as CLAP's retrieval uses it."""
    out = net(inputs["input_features"], is_longer=inputs["is_longer"], output_hidden_states=True)
    maps = [s.mean(dim=(2, 3))[:, None] for s in out.hidden_states]
    return [*maps, torch.nn.functional.normalize(out.audio_embeds, dim=-1)[:, None]]


FORWARD: dict[str, Forward] = {"hubert": _hubert, "ast": _ast, "whisper": _whisper, "clap": _clap}
EXTRA_ARGS: dict[str, dict[str, str]] = {
    # each chunk is at most the window CLAP takes, so "rand_trunc" never cuts at random
    "clap": {"truncation": "rand_trunc", "padding": "repeatpad"},
}


def pooling(model: HubModel, n_native: int, samples: int) -> Tensor:
    """`(frames, n_native)` weights averaging a chunk's native frames into the teacher's
    frames (`pool_frames` on the row's frame grid)."""
    frame = round(model.frame_seconds * model.sample_rate)
    if model.native_hop is None:  # one native frame per chunk
        return torch.ones(max(1, samples // frame), n_native) / n_native
    return pool_frames(n_native, samples, frame, model.native_hop, model.native_first_centre)


def pool_frames(n_native: int, samples: int, frame: int, hop: int, first_centre: int) -> Tensor:
    """`(frames, n_native)` weights: frame t of a chunk of `samples` samples (max(1,
    samples // frame) frames of `frame` samples from its start) is the mean of the native
    frames, `hop` samples apart from `first_centre`, centred in [t, t + 1) · frame."""
    frames = max(1, samples // frame)
    centres = first_centre + hop * torch.arange(n_native)
    which = torch.div(centres, frame, rounding_mode="floor")
    weights = (which[None] == torch.arange(frames)[:, None]).float()
    counts = weights.sum(dim=1, keepdim=True)
    if bool((counts == 0).any()):  # a wrong hop or first centre: not the caller's
        raise RuntimeError(f"a {frame}-sample frame holds none of the native frames")
    return weights / counts


def chunks(n_samples: int, frame: int, chunk: int) -> list[tuple[int, int]]:
    """(start, length) of the chunks one clip is embedded in: whole frames, at most `chunk`
    samples each; a trailing part shorter than a frame is left out (a clip shorter than a
    frame is one chunk, padded by the caller)."""
    usable = max(frame, n_samples // frame * frame)
    return [(s, min(chunk, usable - s)) for s in range(0, usable, chunk)]


def load_hub_teacher(
    device: torch.device | str,
    checkpoint: Path | None = None,
    pretrained: bool = True,
    *,
    outputs: tuple[str, ...],
) -> Extractor:
    """A hub teacher (`east_ray.catalog.hub`): audio `(B, N)` at its sample rate → each
    reference in `outputs` as `(B, T, D_layer)`, T = N // frame (1 for a shorter clip)."""
    info = get_teacher(get_teacher(outputs[0]).base)
    model = _hub(info)
    net, features = load_parts(info, checkpoint, pretrained)
    net = net.to(device)
    forward = FORWARD[model.family]
    index = {name: i for i, (name, _) in enumerate(model.layers)}
    layers = {ref: index[str(get_teacher(ref).layer)] for ref in outputs}

    frame = round(model.frame_seconds * model.sample_rate)
    chunk = round(model.chunk_seconds * model.sample_rate)

    def embed(audio: Tensor) -> dict[str, Tensor]:
        pooled: dict[str, list[Tensor]] = {ref: [] for ref in outputs}
        clips = audio.to("cpu", torch.float32).numpy()
        if clips.shape[1] < frame and model.family != "clap":  # CLAP's extractor repeat-pads
            clips = np.pad(clips, ((0, 0), (0, frame - clips.shape[1])))
        for start, length in chunks(clips.shape[1], frame, chunk):
            part = clips[:, start : start + length]
            inputs = features(
                list(np.ascontiguousarray(part)),
                sampling_rate=model.sample_rate,
                return_tensors="pt",
                **EXTRA_ARGS.get(model.family, {}),
            )
            states = forward(net, {k: v.to(device) for k, v in inputs.items()})
            for ref, i in layers.items():
                weights = pooling(model, states[i].shape[1], length).to(device)
                pooled[ref].append(weights @ states[i].float())
        return {ref: torch.cat(parts, dim=1) for ref, parts in pooled.items()}

    return Extractor(outputs[0], embed, device, net, outputs=outputs)


def fetch_hub_teacher(name: str) -> Path:
    """Download teacher `name`'s model at its pinned revision into the Hugging Face cache
    (once); the folder it is in."""
    info = get_teacher(get_teacher(name).base)
    model = _hub(info)
    source, revision, _ = _source(info, None)
    from huggingface_hub import snapshot_download

    # the files from_pretrained reads: config, preprocessor config, weights
    patterns = ["*.json", "*.safetensors", "*.bin"]
    try:
        folder = snapshot_download(source, revision=revision, allow_patterns=patterns)
    except OSError as error:  # huggingface_hub's offline, connection and HTTP errors
        raise _not_cached(info, revision, error) from error
    load_parts(info, Path(folder), pretrained=True)  # what was fetched loads
    logger.info("%s: %s at %s in %s", name, model.repo, revision, folder)
    return Path(folder)
