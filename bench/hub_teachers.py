"""The hub teachers (`east_ray.catalog.hub`) and Dasheng on this machine: each
row's extraction throughput with a tiny model of its class (the real loading and pooling
path, offline), the parameter count of its full configuration (built on the meta device,
no weights), and the bytes one stored layer takes per 1,000 OpenMIC clips (10 s, float32,
as `teachers/<name>` stores it).

The full configurations are the published ones (`config.json` of each repository, as copied
in public code; CLAP's audio tower is LAION's HTSAT-base as the conversion script maps it).
Tiny-model throughput measures the framework around the network (feature extractor,
chunking, pooling), not the network: the full models are 10^3-10^4 times larger.

    .venv/bin/python -m bench.hub_teachers [--clips 8] [--reps 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import transformers

from east_ray.catalog import TEACHERS, get_teacher
from east_ray.catalog.hub import HUB_MODELS
from east_ray.catalog.teachers import hub_teacher
from east_ray.teachers import load_extractor
from tests.hub_fixtures import tiny_model, tiny_row

OPENMIC_SECONDS = 10.0


def full_model(name: str) -> Any:
    """The row's model class at its full published size."""
    t: Any = transformers
    family = HUB_MODELS[name].family
    if family == "hubert":
        large = name == "mert_v1_330m"
        config = t.HubertConfig(
            hidden_size=1024 if large else 768,
            num_hidden_layers=24 if large else 12,
            num_attention_heads=16 if large else 12,
            intermediate_size=4096 if large else 3072,
            conv_bias=False,
            feat_extract_norm="group",
            do_stable_layer_norm=large,
        )
        return t.HubertModel(config)
    if family == "ast":
        return t.ASTModel(t.ASTConfig())
    if family == "whisper":
        config = t.WhisperConfig(
            d_model=512,
            encoder_layers=6,
            encoder_attention_heads=8,
            encoder_ffn_dim=2048,
            decoder_layers=6,
            decoder_attention_heads=8,
            decoder_ffn_dim=2048,
        )
        return t.WhisperModel(config)
    config = t.ClapAudioConfig(
        patch_embeds_hidden_size=128,
        depths=[2, 2, 12, 2],
        num_attention_heads=[4, 8, 16, 32],
        hidden_size=1024,
        projection_dim=512,
    )
    return t.ClapAudioModelWithProjection(config)


def parameters(name: str) -> dict[str, int]:
    with torch.device("meta"):
        model = full_model(name)
    counts = {"loaded": sum(p.numel() for p in model.parameters())}
    if HUB_MODELS[name].family == "whisper":  # the decoder loads too, unused
        counts["encoder"] = sum(p.numel() for p in model.get_encoder().parameters())
    return counts


def throughput(name: str, clips: int, reps: int, folder: Path) -> dict[str, Any]:
    torch.manual_seed(0)
    net, features, hidden = tiny_model(name)
    net.save_pretrained(folder)
    features.save_pretrained(folder)
    saved = TEACHERS[name]
    TEACHERS[name] = hub_teacher(name, tiny_row(name, hidden))
    try:
        row = get_teacher(name)
        refs = tuple(f"{name}@{layer}" for layer, _ in row.layers)
        extractor = load_extractor(name, "cpu", folder, outputs=refs)
        rate = timed(extractor, row.sample_rate, clips, reps)
    finally:
        TEACHERS[name] = saved
    return {**rate, "layers": len(refs)}


def timed(extractor: Any, sample_rate: int, clips: int = 8, reps: int = 3) -> dict[str, Any]:
    """Clips per second embedding `clips` 10 s clips, best of `reps` after a warm-up."""
    audio = 0.1 * torch.randn(clips, round(OPENMIC_SECONDS * sample_rate))
    extractor.embed_all(audio[:1])
    seconds = []
    for _ in range(reps):
        start = time.perf_counter()
        extractor.embed_all(audio)
        seconds.append(time.perf_counter() - start)
    return {"clips_per_s": clips / min(seconds), "seconds": seconds}


def dasheng_row() -> dict[str, Any]:
    """Dasheng's figures: parameters of its base size, tiny-model throughput."""
    from dasheng.pretrained.pretrained import Dasheng

    from east_ray.teachers.dasheng import SIZE, load_dasheng_teacher

    full = Dasheng(**SIZE)  # its mel front end cannot be built on the meta device
    tiny = {"embed_dim": 16, "depth": 2, "num_heads": 2}
    saved = TEACHERS["dasheng"]
    layers = tuple((str(i), 16) for i in range(3))
    TEACHERS["dasheng"] = dataclasses.replace(saved, dim=16, layers=layers, output="2")
    try:
        refs = ("dasheng", "dasheng@0", "dasheng@1")
        extractor = load_dasheng_teacher("cpu", pretrained=False, outputs=refs, size=tiny)
        rate = timed(extractor, 16_000)
    finally:
        TEACHERS["dasheng"] = saved
    return {
        "parameters": {"loaded": sum(p.numel() for p in full.parameters())},
        "tiny": {**rate, "layers": len(refs)},
        "mb_per_layer_per_1000_clips": storage_per_1000("dasheng"),
    }


def storage_per_1000(name: str) -> dict[str, float]:
    """MB per stored layer per 1,000 OpenMIC clips (float32), by layer dimension."""
    row = get_teacher(name)
    frames = row.frames(round(OPENMIC_SECONDS * row.sample_rate))
    return {str(dim): frames * dim * 4 * 1000 / 1e6 for dim in sorted({d for _, d in row.layers})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in HUB_MODELS:
            rows[name] = {
                "parameters": parameters(name),
                "tiny": throughput(name, args.clips, args.reps, Path(tmp) / name),
                "mb_per_layer_per_1000_clips": storage_per_1000(name),
            }
    rows["dasheng"] = dasheng_row()
    out = {"threads": torch.get_num_threads(), "clip_seconds": OPENMIC_SECONDS, "rows": rows}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
