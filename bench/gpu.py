"""One-GPU benchmark: the EAsT training step in fp32 vs bf16 autocast, eager and compiled
(torch.compile "reduce-overhead", the trainer's `recipe.compile = "auto"` on CUDA), for both
students, trials packed 1, 2, 4 or 8 per GPU eager and compiled (aggregate samples/s, peak GPU
memory per trial), the trainer's full step vs a bare loop on the device, compiled vs eager,
and a real `train()` run with resume (compiled, as the studies run on CUDA).

The step is the trainer's: student forward, composite loss with the dcor regularizer on the
final stage against a 10-frame teacher, backward, gradient clipping, Adam; channels_last on
CUDA; a compiled row compiles forward and loss as the trainer does
(`east_ray.train.compiled.CompiledStep`) and reports the first step's time (the compile)
and whether it compiled (a failed compile falls back to eager with a warning in the
output). Shapes, width and batch come from the shipped studies (`studies/openmic.toml`:
CP-ResNet ρ=7, 128 base channels, 128×1000; `studies/magnatagatune.toml`: Mobile FCN,
96×1456). Packed trials are separate processes, each capped at 1/k of the GPU memory as
`tune.with_resources(..., {"gpu": 1/k})` trials are; they start timing together (a
barrier) and the aggregate is all their samples over the wall time from the first start
to the last finish. On a machine without CUDA the same code runs on the CPU at a small
width: a smoke check, not a measurement.

    bench/gpu.sh OUT_DIR        # writes OUT_DIR/gpu.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench import (
    CLASSES,
    TEACHER_DIM,
    TEACHER_FRAMES,
    TEACHER_HOP,
    alternating,
    bare_step,
    ratio,
    synthetic_trial_data,
    timed,
)
from bench.flops import matmul_peak
from bench.meljitter import with_spectra
from east_ray.config import Cell, StudySpec, load_study
from east_ray.data.meljitter import JITTER, draw_jitter
from east_ray.data.parquet import write_text_atomic
from east_ray.losses import LossSpec, LossTerms, east_loss
from east_ray.models import build_student
from east_ray.train.calibrate import student_description
from east_ray.train.compiled import CompiledStep, compile_mode
from east_ray.train.data import make_batch
from east_ray.train.inputs import adam, limit_gpu_memory
from east_ray.train.prefetch import prefetched
from east_ray.train.trainer import _Run, train
from east_ray.train.trial import TrialSpec

PACKINGS = (1, 2, 4, 8)  # trials per GPU
PACK_TIMEOUT_S = 600.0  # a packed trial that never reports is a failure, not a hang
COMPILED = "reduce-overhead"  # the compiled rows' recipe.compile ("auto" on CUDA)
ROW_KEYS = ("step_s", "samples_per_s", "tflop_per_s", "peak_memory_gib", "first_step_s", "compiled")


@dataclass(frozen=True)
class Variant:
    """One way of running the step."""

    bf16: bool = True
    channels_last: bool = True
    cudnn_benchmark: bool = False
    memory_fraction: float = 1.0
    compile: str = "off"  # a recipe.compile value


def _shape(spec: StudySpec) -> tuple[int, int, int]:
    """(batch, mels, frames) of a study's trials."""
    return spec.recipe.batch_size, spec.features.n_mels, spec.features.frames


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def measure(
    spec: StudySpec,
    device_name: str,
    variant: Variant,
    steps: int,
    barrier: Any = None,
) -> dict[str, float]:
    """Median step time, peak memory and the timed window of `steps` steps after 3
    warm-up steps; with `barrier`, every packed process starts timing at once."""
    device = torch.device(device_name)
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = variant.cudnn_benchmark
    _reset_peak_memory(device)
    limit_gpu_memory(variant.memory_fraction, device)
    batch, mels, frames = _shape(spec)
    model = build_student(spec.student, CLASSES, seed=0, **spec.student_options).to(device)
    if cuda and variant.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = adam(model, spec.recipe, device)  # the trials' optimiser (fused on CUDA)
    x = torch.randn(batch, mels, frames, device=device)
    labels = (torch.rand(batch, CLASSES, device=device) > 0.8).float()
    mask = torch.ones(batch, CLASSES, dtype=torch.bool, device=device)
    teacher = torch.randn(batch, TEACHER_FRAMES, TEACHER_DIM, device=device)
    loss_spec = LossSpec("dcor", "final", 0.8)
    hops = [s * spec.features.hop_seconds for s in model.time_strides]

    def forward_loss(x: torch.Tensor) -> LossTerms:
        context = (
            torch.autocast(device.type, dtype=torch.bfloat16) if variant.bf16 else nullcontext()
        )
        with context:
            out = model(x)
        return east_loss(
            out,
            labels,
            mask,
            loss_spec,
            stage_hops=hops,
            teacher_seqs=[teacher],
            teacher_hops=[TEACHER_HOP],
        )

    name = f"bench {spec.student} {variant}"
    eager = CompiledStep(forward_loss, model, None, name)
    fast = CompiledStep(forward_loss, model, compile_mode(variant.compile, device), name)

    def step(forward_backward: CompiledStep[torch.Tensor] = fast) -> None:
        opt.zero_grad(set_to_none=True)
        forward_backward(x)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    with FlopCounterMode(display=False) as counter:  # the same FLOPs eager or compiled
        step(eager)

    def synced_step() -> None:
        step()
        _sync(device)

    first_step_s = timed(synced_step)  # compiles, when compiled
    step()
    _sync(device)
    if barrier is not None:
        barrier.wait()
    times = []
    start = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    end = time.perf_counter()
    median = statistics.median(times)
    return {
        "step_s": median,
        "samples_per_s": batch / median,
        "peak_memory_gib": _peak_memory_gib(device),
        "start": start,
        "end": end,
        "samples": float(batch * steps),
        "tflop_per_s": counter.get_total_flops() / median / 1e12,
        "first_step_s": first_step_s,
        "compiled": float(fast.compiled),
    }


def _worker(args: tuple[StudySpec, str, Variant, int], barrier: Any, queue: Any) -> None:
    try:
        queue.put(measure(*args, barrier=barrier))
    except BaseException as error:
        barrier.abort()  # the others would wait for this one forever
        queue.put({"error": repr(error)})
        raise


def packed(spec: StudySpec, device: str, k: int, steps: int, compile: str) -> dict[str, Any]:
    """k trials on one device at once (bf16), each its own process with 1/k of the memory;
    `compile` is their recipe.compile (each process compiles its own graph)."""
    ctx = mp.get_context("spawn")
    queue, barrier = ctx.Queue(), ctx.Barrier(k, timeout=PACK_TIMEOUT_S)
    variant = Variant(memory_fraction=1 / k, compile=compile)
    procs = [
        ctx.Process(target=_worker, args=((spec, device, variant, steps), barrier, queue))
        for _ in range(k)
    ]
    for p in procs:
        p.start()
    rows = [queue.get(timeout=PACK_TIMEOUT_S) for _ in procs]
    for p in procs:
        p.join()
    errors = [r["error"] for r in rows if "error" in r]
    if errors:
        raise RuntimeError(f"{len(errors)} of {k} packed trials failed: {errors[0]}")
    wall = max(r["end"] for r in rows) - min(r["start"] for r in rows)
    return {
        "trials": k,
        "aggregate_samples_per_s": sum(r["samples"] for r in rows) / wall,
        "peak_memory_gib_per_trial": max(r["peak_memory_gib"] for r in rows),
        "per_trial_step_s": [r["step_s"] for r in rows],
        "compiled": all(r["compiled"] for r in rows),
    }


def _cell(spec: StudySpec, regularizer: str = "dcor") -> Cell:
    return Cell(spec.dataset, spec.student, regularizer, "vggish", "final", 0.8, 1.0, 0)


def trainer_vs_bare(spec: StudySpec, device_name: str, steps: int, tmp: Path) -> dict[str, Any]:
    """The trainer's steps (`_Run.train_batches`: batches gathered from the store, copied to
    the device, loss terms read back one step late and logged), eager and compiled
    (`recipe.compile = "auto"`: "reduce-overhead" on CUDA, eager on the CPU), against a bare
    eager loop on tensors already on the device; baseline system, same initial model and
    batches. Each variant runs `steps` consecutive steps as training does (no sync between
    them); 5 repetitions run every variant once each in a shuffled order
    (`bench.alternating`): seconds per step and the ratios' medians and ranges. When the
    recipe jitters the mel bands, the eager trainer also runs with the jitter (log-mels
    computed on the device from the clips' and partners' STFT magnitudes) against without."""
    device = torch.device(device_name)
    cell = Cell(spec.dataset, spec.student, "none", None, None, 0.0, 1.0, 0)
    data = synthetic_trial_data(spec, cell, clips=8 * spec.recipe.batch_size)
    ranges = JITTER[spec.recipe.mel_jitter]
    if ranges is not None:
        data = with_spectra(data, spec.features.n_fft)
    runs = {}
    for setting in ("off", "auto"):
        recipe = replace(spec.recipe, compile=setting)
        trial = TrialSpec.for_cell(replace(spec, recipe=recipe), cell, CLASSES)
        runs[setting] = _Run(trial, data, tmp / f"vs_bare-{setting}", device)
    eager = runs["off"]
    b = spec.recipe.batch_size
    rows = [data.train_rows[i * b : (i + 1) * b] for i in range(len(data.train_rows) // b)]
    resident = [
        (
            torch.from_numpy(data.store.gather(data.store_rows[r])).float().to(device),
            torch.from_numpy(data.labels.labels[r]).to(device),
            torch.from_numpy(data.labels.mask[r]).to(device),
        )
        for r in rows
    ]
    grad_clip = spec.recipe.grad_clip

    def bare(_: int) -> None:
        for i in range(steps):
            model, opt = eager.model, eager.opt
            bare_step(model, opt, resident[i % len(resident)], grad_clip, eager.autocast())
        _sync(device)

    def trainer(run: _Run, jittered: bool = False) -> Callable[[int], None]:
        def steps_of(rep: int) -> None:
            # the next batch's rows stand in for the mixup partners: the same gather cost;
            # gathered as `train` does, into page-locked memory by the prefetch thread
            draw = np.random.default_rng(rep)
            batches = (
                make_batch(
                    data,
                    rows[i % len(rows)],
                    rows[(i + 1) % len(rows)],
                    run.alloc,
                    jitter=draw_jitter(draw, b, ranges) if jittered and ranges else None,
                    partner_jitter=draw_jitter(draw, b, ranges) if jittered and ranges else None,
                )
                for i in range(steps)
            )
            run.train_batches(prefetched(batches, run.prefetch))
            _sync(device)

        return steps_of

    variants = {"bare": bare, "trainer": trainer(eager), "trainer_compiled": trainer(runs["auto"])}
    if ranges is not None:
        variants["trainer_jitter"] = trainer(eager, jittered=True)
    for warm_up in variants.values():  # the compiled trainer compiles here
        warm_up(0)
    times = alternating(variants, 5)
    per_step = {name: [t / steps for t in ts] for name, ts in times.items()}
    for run in runs.values():
        run.writer.close()
    return {
        "trainer_vs_bare": ratio(per_step, "trainer", "bare"),
        "compiled_vs_eager_trainer": ratio(per_step, "trainer_compiled", "trainer"),
        "compiled_trainer_vs_bare": ratio(per_step, "trainer_compiled", "bare"),
        "compiled": runs["auto"].forward_backward.compiled,
        **(
            {"jitter_vs_off_trainer": ratio(per_step, "trainer_jitter", "trainer")}
            if ranges is not None
            else {}
        ),
    }


def train_smoke(spec: StudySpec, device_name: str, tmp: Path, epochs: int) -> dict[str, Any]:
    """`train()` on the device as a quarter-GPU trial (dcor, final stage), stopped after
    `epochs - 1` epochs and resumed to `epochs` from its checkpoint."""
    cell = _cell(spec)
    data = synthetic_trial_data(spec, cell, clips=16 * spec.recipe.batch_size)
    if JITTER[spec.recipe.mel_jitter] is not None:  # as the study's trials train
        data = with_spectra(data, spec.features.n_fft)
    trial = TrialSpec.for_cell(spec, cell, CLASSES, gpu_fraction=0.25)
    device = torch.device(device_name)
    _reset_peak_memory(device)
    started = time.perf_counter()
    first = train(replace(trial, max_epochs=epochs - 1), data, tmp / "smoke", device=device)
    resumed = train(replace(trial, max_epochs=epochs), data, tmp / "smoke", device=device)
    return {
        "device": resumed.device,
        "epochs_first": first.epochs,
        "epochs_after_resume": resumed.epochs,
        "steps": resumed.steps,
        "test_mAP": resumed.test["mAP"],
        "finite": bool(np.isfinite([resumed.test["mAP"], resumed.val["loss"]]).all()),
        "seconds": time.perf_counter() - started,
        "peak_memory_gib": _peak_memory_gib(device),
    }


def run(
    steps: int, smoke_width: int | None, save: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Every GPU measurement, handed to `save` after each part (a run stopped by a time
    limit keeps what it measured); `smoke_width` shrinks the students (CPU smoke check)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    specs = {name: load_study(name) for name in ("openmic", "magnatagatune")}
    if smoke_width is not None:
        specs["openmic"] = replace(
            specs["openmic"], student_options={"rho": 5, "base_channels": smoke_width}
        )
    openmic = specs["openmic"]
    tmp = Path(tempfile.mkdtemp(prefix="east_ray_gpu_"))
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu (smoke check)",
        "host": platform.node(),
        "torch": torch.__version__,
        "steps": steps,
        "students": {},
    }
    size = 8192 if device == "cuda" else 1024
    peaks = {
        "fp32": matmul_peak(size, 10, device, torch.float32),
        "bf16": matmul_peak(size, 10, device, torch.bfloat16),
    }
    result["matmul_peak_tflop_per_s"] = {k: v / 1e12 for k, v in peaks.items()}
    for name, spec in specs.items():
        rows = {
            "fp32": measure(spec, device, Variant(bf16=False), steps),
            "bf16": measure(spec, device, Variant(), steps),
            "bf16_cudnn_benchmark": measure(spec, device, Variant(cudnn_benchmark=True), steps),
            "bf16_no_channels_last": measure(spec, device, Variant(channels_last=False), steps),
            "fp32_compiled": measure(spec, device, Variant(bf16=False, compile=COMPILED), steps),
            "bf16_compiled": measure(spec, device, Variant(compile=COMPILED), steps),
        }
        result["students"][name] = {
            "student": student_description(spec),
            **{k: {m: v[m] for m in ROW_KEYS} for k, v in rows.items()},
            "bf16_speedup": rows["fp32"]["step_s"] / rows["bf16"]["step_s"],
            "compile_speedup": {
                p: rows[p]["step_s"] / rows[f"{p}_compiled"]["step_s"] for p in ("fp32", "bf16")
            },
            "fraction_of_matmul_peak": {
                k: v["tflop_per_s"] * 1e12 / peaks["bf16" if k.startswith("bf16") else "fp32"]
                for k, v in rows.items()
            },
        }
        print(json.dumps({name: result["students"][name]}, indent=1), flush=True)
        save(result)
    result["trainer_vs_bare"] = trainer_vs_bare(openmic, device, steps, tmp)
    save(result)
    result["train_smoke"] = train_smoke(openmic, device, tmp, epochs=3)
    save(result)
    result["packing"] = {}
    for name, spec in specs.items():
        result["packing"][name] = {}
        for setting in ("off", COMPILED):
            packings: list[dict[str, Any]] = []
            result["packing"][name][setting] = packings
            for k in PACKINGS:
                packings.append(packed(spec, device, k, steps, setting))
                save(result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu.json")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--smoke-width",
        type=int,
        default=None,
        help="CP-ResNet base channels for a quick CPU check (default: the study's)",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    def save(result: dict[str, Any]) -> None:
        write_text_atomic(json.dumps(result, indent=1), args.out / "gpu.json")

    result = run(args.steps, args.smoke_width, save)
    for name, settings in result["packing"].items():
        for setting, rows in settings.items():
            for row in rows:
                print(
                    f"{name}, compile {setting}, {row['trials']} per GPU: "
                    f"{row['aggregate_samples_per_s']:.1f} samples/s, "
                    f"{row['peak_memory_gib_per_trial']:.2f} GiB per trial"
                )
    print("trainer full step / bare loop:", json.dumps(result["trainer_vs_bare"]))
    print("train() smoke:", json.dumps(result["train_smoke"]))


if __name__ == "__main__":
    main()
