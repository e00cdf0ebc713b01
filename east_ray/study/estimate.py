"""`--dry-run --estimate`: what a study's grid will cost before it runs.

Per part, every cell is counted at its upper bound, `recipe.max_steps` training steps
(with `--max-epochs`, fewer when those epochs end sooner), plus a validation pass over the
validation clips after each epoch and one test pass. Early stopping ends most runs
sooner, so the figure is a ceiling, and it leaves out teacher extraction and Teacher_LR.

The throughput is the part's student at its batch and input size, in samples per second
per device at the spec's packing (`1 / gpus_per_trial` trials per GPU):
- on a machine with CUDA, measured here with a few bare training steps (one trial; the
  packing gain is not measured, so none is assumed);
- else read from the newest GPU benchmark (`<dir>/*-gpu.json`, the folder the command's
  `--bench-results` names, default `bench/results`) that measured this student at this
  size: the row of the step the trials will run (the recipe's precision, compiled unless
  `recipe.compile` is "off" and the benchmark's compile succeeded, else eager), its
  packing rows of the same compile setting scaling the single-trial rate;
- else measured on this machine's CPU, and the estimate is in CPU-hours.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from east_ray.catalog import get_dataset
from east_ray.config import Cell, StudySpec
from east_ray.data.datasets import published_counts
from east_ray.data.parquet import META, read_meta
from east_ray.train.data import batches_per_epoch

# A forward pass is about a third of a training step's work (backward costs about twice
# the forward), so an evaluated clip is counted as a third of a trained one.
EVAL_COST = 1 / 3


@dataclass(frozen=True)
class Throughput:
    """Samples per second on one device with `trials` trials packed on it, and where the
    figure comes from."""

    samples_per_s: float
    trials: int
    device: str
    source: str
    gpu: bool


@dataclass(frozen=True)
class Work:
    """The samples a part's cells train on and evaluate, at their upper bound."""

    cells: int
    steps: int
    trained: int
    evaluated: int


@dataclass(frozen=True)
class Clips:
    """A dataset's clips per split, its class count, and where they were read."""

    counts: dict[str, int]
    classes: int
    source: str


def clip_counts(spec: StudySpec, data_dir: Path) -> Clips:
    """The prepared dataset's clips, else the release's published split sizes."""
    if (data_dir / META).is_file():
        meta = read_meta(data_dir)
        return Clips(dict(meta["counts"]), len(meta["classes"]), str(data_dir / META))
    row = get_dataset(spec.dataset)
    if row.published_clips:  # the default scheme's (MTAT: the paper's "won")
        return Clips(published_counts(row), row.classes, "the release's published split sizes")
    raise FileNotFoundError(
        f"{data_dir / META}: --estimate needs the prepared {spec.dataset} dataset's clip "
        "counts; prepare it first or give --data"
    )


def work(
    spec: StudySpec, cells: Sequence[Cell], counts: dict[str, int], max_epochs: int | None
) -> Work:
    """Training and evaluation samples of `cells`, each run to its step budget."""
    r = spec.recipe
    batch, steps_total, trained, evaluated = r.batch_size, 0, 0, 0
    for cell in cells:
        n_train = math.floor(counts["train"] * cell.fraction)
        per_epoch = max(1, batches_per_epoch(n_train, batch, r.last_batch == "drop"))
        steps = r.max_steps
        if max_epochs is not None:
            steps = min(steps, max_epochs * per_epoch)
        steps_total += steps
        trained += steps * batch
        # an epoch cut by the step cap is validated only with partial_epoch = "validate"
        passes = math.ceil if r.partial_epoch == "validate" else math.floor
        evaluated += max(1, passes(steps / per_epoch)) * counts["valid"] + counts["test"]
    return Work(len(cells), steps_total, trained, evaluated)


def device_hours(w: Work, throughput: Throughput) -> float:
    return (w.trained + EVAL_COST * w.evaluated) / throughput.samples_per_s / 3600


def _packing(result: dict[str, Any], student: str, setting: str) -> dict[int, float]:
    """Aggregate samples/s by trials per GPU for `student` at compile `setting` ("off" or
    the compiled rows' mode). Benchmarks before the compiled rows hold one list, of the
    openmic student, eager."""
    packing = result.get("packing", [])
    if isinstance(packing, list):
        rows = packing if student == "openmic" and setting == "off" else []
    else:
        rows = packing.get(student, {}).get(setting, [])
    return {p["trials"]: p["aggregate_samples_per_s"] for p in rows}


def _step_row(spec: StudySpec, row: dict[str, Any]) -> tuple[str, str, str] | None:
    """The key of `row`'s figure for the step `spec`'s trials run on CUDA, its packing
    setting and a note: compiled when the recipe compiles there and the benchmark's compile
    worked, else eager (noted when the trials would compile)."""
    import torch

    from east_ray.train.compiled import compile_mode

    precision = spec.recipe.precision
    mode = compile_mode(spec.recipe.compile, torch.device("cuda"))
    compiled = row.get(f"{precision}_compiled", {})
    if mode is not None and compiled.get("compiled"):
        return f"{precision}_compiled", mode, ""
    note = "; the trials compile, no compiled figure: eager's used" if mode is not None else ""
    return (precision, "off", note) if precision in row else None


def bench_throughput(spec: StudySpec, bench_dir: Path) -> Throughput | None:
    """The newest GPU benchmark's figure for this student at this size, precision and
    compile setting, at the spec's packing (its packing rows' gain over one trial; their
    nearest row when the spec packs more trials than were measured)."""
    from east_ray.train.calibrate import student_description

    wanted, trials = student_description(spec), spec.resources.trials_per_gpu
    for path in sorted(bench_dir.glob("*-gpu.json"), reverse=True):
        result: dict[str, Any] = json.loads(path.read_text())
        for key, row in result.get("students", {}).items():
            step = _step_row(spec, row) if row.get("student") == wanted else None
            if step is None:
                continue
            row_key, setting, note = step
            single = float(row[row_key]["samples_per_s"])
            packing = _packing(result, key, setting)
            gain = 1.0
            if 1 in packing:
                measured = max((k for k in packing if k <= trials), default=1)
                gain = packing[measured] / packing[1]
                note += f"; packing measured up to {measured}" if measured != trials else ""
            elif trials > 1:
                note += "; packing not measured for this student, one trial's rate used"
            return Throughput(
                single * gain,
                trials,
                str(result.get("device", "GPU")),
                f"{path.name}, {row_key}{note}",
                gpu=True,
            )
    return None


def measured_throughput(spec: StudySpec, num_classes: int) -> Throughput:
    """A few bare steps of the student on this machine's CUDA device, else its CPU."""
    import torch

    from east_ray.train.calibrate import step_seconds

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    seconds = step_seconds(spec, num_classes, device)
    name = torch.cuda.get_device_name(device) if cuda else "this machine's CPU"
    return Throughput(
        spec.recipe.batch_size / seconds,
        1,
        name,
        "measured here (5 bare steps, one trial; no packing gain assumed)",
        gpu=cuda,
    )


def describe(
    spec: StudySpec,
    cells: Sequence[Cell],
    clips: Clips,
    throughput: Throughput,
    max_epochs: int | None,
) -> tuple[str, float]:
    """A part's estimate as printable lines, and its device-hours."""
    w = work(spec, cells, clips.counts, max_epochs)
    hours = device_hours(w, throughput)
    unit = "GPU-hours" if throughput.gpu else "CPU-hours on this machine"
    n = clips.counts
    lines = [
        f"estimate for {spec.name!r} ({spec.student}, {w.cells} cells):",
        f"  clips train/valid/test {n['train']:,}/{n['valid']:,}/{n['test']:,} ({clips.source})",
        f"  at most {w.steps:,} training steps ({w.trained:,} samples) and "
        f"{w.evaluated:,} evaluated clips",
        f"  throughput {throughput.samples_per_s:,.0f} samples/s per device with "
        f"{throughput.trials} trial(s) on it: {throughput.device} ({throughput.source})",
        f"  at most {hours:,.1f} {unit} (every cell to its step budget; early stopping "
        "ends most runs sooner)",
    ]
    return "\n".join(lines), hours


def estimate(
    parts: Sequence[tuple[StudySpec, Sequence[Cell], Path]],
    max_epochs: int | None,
    bench_dir: Path,
) -> str:
    """Every part's estimate, then the total when there are several: `parts` holds each
    spec with its cells and prepared-data folder."""
    blocks, totals = [], {True: 0.0, False: 0.0}
    for spec, cells, data_dir in parts:
        clips = clip_counts(spec, data_dir)
        throughput = bench_throughput(spec, bench_dir)
        if throughput is None:
            throughput = measured_throughput(spec, clips.classes)
        text, hours = describe(spec, cells, clips, throughput, max_epochs)
        blocks.append(text)
        totals[throughput.gpu] += hours
    if len(parts) > 1:
        blocks.append(
            f"total: at most {totals[True]:,.1f} GPU-hours"
            + (f" and {totals[False]:,.1f} CPU-hours" if totals[False] else "")
        )
    return "\n".join(blocks)
