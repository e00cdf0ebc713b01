"""Benchmarks: ratios measured side by side in one run (not timed tests)."""

import json
import random
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from east_ray.config import Cell, StudySpec
from east_ray.data.parquet import LabelTable, write_text_atomic
from east_ray.train.calibrate import bare_step  # also `--estimate`'s calibration step
from east_ray.train.data import ArrayStore, TrialData, build_trial_data

__all__ = [
    "CLASSES",
    "RESULTS",
    "TEACHER_DIM",
    "TEACHER_FRAMES",
    "TEACHER_HOP",
    "alternating",
    "bare_step",
    "local_ray",
    "memory_kib",
    "ratio",
    "save_result",
    "spread",
    "synthetic_trial_data",
    "timed",
]

RESULTS = Path(__file__).resolve().parent / "results"
TEACHER_FRAMES, TEACHER_DIM, TEACHER_HOP = 10, 128, 0.96  # VGGish on a 10 s clip
CLASSES = 20  # OpenMIC's instruments


def local_ray(num_gpus: int = 0) -> None:
    """The benchmarks' Ray: 2 CPUs (this machine's), optional fake GPUs, loopback only."""
    from east_ray.ray_session import init_ray  # bench.gpu runs where Ray may not be installed

    init_ray(num_cpus=2, num_gpus=num_gpus)


def timed(fn: Callable[..., Any], *args: Any) -> float:
    """Wall seconds of `fn(*args)` (the caller synchronises a GPU inside `fn`)."""
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def memory_kib(pid: int | str = "self") -> dict[str, int]:
    """The memory lines of `/proc/PID/status` in KiB: VmHWM (peak resident), VmRSS, and its
    parts RssAnon (private), RssFile and RssShmem (shared memory, e.g. mapped Ray
    object-store pages); none of them for a zombie, `OSError` once the process is gone."""
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if value.endswith("kB\n") and key.startswith(("Vm", "Rss")):
                out[key] = int(value.split()[0])
    return out


def save_result(result: dict[str, Any], kind: str = "", markdown: str | None = None) -> Path:
    """Write `result` as `bench/results/<date>-<host>[-kind].json` (and `markdown` beside it
    as `.md`), each atomically; names are built whole, since a host name may hold dots."""
    RESULTS.mkdir(exist_ok=True)
    stem = "-".join(x for x in (result["date"], result["host"], kind) if x)
    path = RESULTS / f"{stem}.json"
    write_text_atomic(json.dumps(result, indent=1), path)
    if markdown is not None:
        write_text_atomic(markdown, RESULTS / f"{stem}.md")
    return path


def alternating(
    variants: Mapping[str, Callable[[int], Any]], repetitions: int, seed: int = 0
) -> dict[str, list[float]]:
    """Wall seconds of every variant in each of `repetitions` repetitions. A repetition runs
    each variant once (given the repetition's index), in an order drawn afresh (seeded), so
    a change in the machine's load falls on all variants alike, not on whichever runs last."""
    rng = random.Random(seed)
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(repetitions):
        rng.shuffle(names)
        for name in names:
            times[name].append(timed(variants[name], rep))
    return times


def ratio(times: Mapping[str, list[float]], name: str, reference: str) -> dict[str, float]:
    """`name`'s time over `reference`'s, taken within each repetition: the median ratio and
    its range, with the median seconds of both."""
    ratios = [a / b for a, b in zip(times[name], times[reference], strict=True)]
    return {
        "seconds": statistics.median(times[name]),
        "reference_seconds": statistics.median(times[reference]),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "repetitions": float(len(ratios)),
    }


def spread(r: Mapping[str, float]) -> str:
    """A `ratio` as 'median (min–max)'."""
    return f"{r['ratio']:.2f} ({r['ratio_min']:.2f}–{r['ratio_max']:.2f})"


def synthetic_trial_data(spec: StudySpec, cell: Cell, clips: int) -> TrialData:
    """Random spectrograms at `spec`'s features (float16, in process memory), labels and
    VGGish-shaped teacher arrays; a quarter of the clips split between valid and test."""
    rng = np.random.default_rng(0)
    ids = [f"clip{i:05d}" for i in range(clips)]
    split = np.array(["train"] * (clips - 2 * (clips // 8)) + ["valid", "test"] * (clips // 8))
    labels = LabelTable(
        clip_ids=ids,
        split=split,
        group=np.arange(clips).astype(str),
        labels=(rng.random((clips, CLASSES)) > 0.8).astype(np.float32),
        mask=rng.random((clips, CLASSES)) > 0.2,
        classes=tuple(f"class{k}" for k in range(CLASSES)),
    )
    shape = (clips, spec.features.n_mels, spec.features.frames)
    store = ArrayStore(ids, rng.standard_normal(shape).astype(np.float16))
    seq = rng.standard_normal((clips, TEACHER_FRAMES, TEACHER_DIM)).astype(np.float32)
    logits = rng.standard_normal((clips, CLASSES)).astype(np.float32)
    return build_trial_data(cell, labels, store, (seq,) if cell.teacher else (), logits)
