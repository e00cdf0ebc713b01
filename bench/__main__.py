"""`python -m bench` (or `make bench`): every benchmark in one run on this machine.

Writes `bench/results/<date>-<host>.json` and a Markdown summary beside it. Each figure is
a ratio of two things measured side by side in the same run: trainer full path vs bare
loop, regularizer vs baseline step (with each regularizer's memory saved for backward),
compiled vs eager step, the step with mel-band jitter
vs without (and the bytes it stores per clip vs the log-mel), log-mel vs librosa, study
runner vs in-process, a trial's private memory with the object-store blocks viewed vs
copied, training FLOP/s vs this machine's matmul peak, and how a study's memory and
start-up grow with the dataset (`bench.scale` at 64, 256 and 1,024 clips; `python -m
bench.scale` runs it up to OpenMIC's 20,000). The trainer's ratios are the median over
alternating repetitions, with their range in brackets.
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import date
from typing import Any

from threadpoolctl import threadpool_limits

from bench import (
    distances,
    flops,
    local_ray,
    logmel,
    meljitter,
    save_result,
    scale,
    spread,
    study_overhead,
    trainer,
    trial_memory,
)


def summary(result: dict[str, Any]) -> str:
    t, lm, st, fl = result["trainer"], result["logmel"], result["study"], result["flops"]
    lines = [
        f"# Benchmarks {result['date']} on {result['host']} ({result['seconds']:.0f} s)",
        "",
        "| measurement | ratio or value | target |",
        "|---|---|---|",
        f"| trainer full path in a Tune trial / bare loop ({t['student']}) | "
        f"{spread(t['full_path_vs_bare'])} | ≤ 1.05 |",
    ]
    for name, cost in t["regularizer_cost"].items():
        if name != "none":
            lines.append(f"| {name} step / baseline step | {spread(cost)} | ≤ 1.05 (dcor) |")
    for name, row in result["distances"]["by_base_channels"]["128"].items():
        lines.append(
            f"| {name}: memory saved for backward, batch 16, paper CP-ResNet, final / all "
            f"stages | {row['final_bytes'] / 1e6:.1f} / {row['all_bytes'] / 1e6:.1f} MB | |"
        )
    for name, c in t["compile"].items():
        first = c["first_step_s"]
        lines += [
            f"| compiled / eager step, {name} ({c['student']}) | "
            f"{spread(c['compiled_vs_eager']) if c['compiled'] else 'did not compile'} | |",
            f"| first step compiled / again (cached) / eager, {name} (the compile) | "
            f"{first['compiled']:.0f} s / {first['compiled_again']:.0f} s / "
            f"{first['eager']:.1f} s | |",
        ]
    for name in meljitter.TRAIN_CLIPS:
        step, stored = result["meljitter"][name]["step"], result["meljitter"][name]["storage"]
        lines += [
            f"| mel-jitter step / without, {name} ({step['student']}, {step['threads']} "
            f"thread(s)) | {spread(step['jitter_vs_off'])} | ≤ 1.15 (openmic: its default) |",
            f"| stored STFT magnitudes / log-mel per training clip, {name} | "
            f"{stored['ratio_per_training_clip']:.1f} | |",
        ]
    lines += [
        f"| log-mel clips/s/core east_ray / librosa | {lm['features_ratio']:.2f} | ≥ 3 |",
        f"| decode+resample+log-mel / librosa | {lm['full_path_ratio']:.2f} | |",
        f"| musicnn extraction, 10 s clips, 1 thread | {result['musicnn']['clips_per_s']:.2f} "
        "clips/s | |",
        f"| study runner overhead per trial ({st['trials']} trials) | "
        f"{st['overhead_per_trial_s']:.2f} s | ≤ 0.3 s |",
    ]
    for slots, row in st["concurrency_fake_gpus"].items():
        lines.append(
            f"| {slots} trial(s) at once on fake GPUs | {row['trials_per_s']:.2f} trials/s | |"
        )
    mem = result["trial_memory"]
    lines.append(
        f"| trial private memory / spectrogram MiB ({mem['data_mib']} MiB): views / joined "
        f"chunks | {mem['private_per_data_views']:.3f} / {mem['private_per_data_joined']:.2f} "
        "| ~0 |"
    )
    for name, row in fl["students"].items():
        lines.append(f"| {name} training FLOP/s / matmul peak | {row['fraction_of_peak']:.2f} | |")
    sizes = result["scale"]["sizes"]
    steps = ", ".join(f"{s['clips']:,}" for s in sizes)
    for key, expected, label in scale.FIGURES:
        ratios = " / ".join(f"{r:.2f}" for r in result["scale"]["growth"][key] if r is not None)
        lines.append(f"| scale ({steps} clips): {label}, ×4 per step | {ratios} | {expected} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=64, help="study-overhead trials")
    args = parser.parse_args()
    started = time.perf_counter()
    local_ray(num_gpus=4)  # fake GPUs: the concurrency-scaling measurement
    result: dict[str, Any] = {"host": platform.node(), "date": date.today().isoformat()}
    with threadpool_limits(1):
        result["logmel"] = logmel.run("openmic", 32)
        result["musicnn"] = logmel.musicnn_throughput()
    result["trainer"] = trainer.run(
        reps=5, base_channels=32, clips=40, compile_studies=trainer.COMPILE_STUDIES
    )
    result["distances"] = distances.run()
    result["meljitter"] = meljitter.run(reps=5, base_channels=32, studies=("openmic", "demo"))
    result["flops"] = flops.run(steps=2)
    result["study"] = study_overhead.run(args.trials)
    result["trial_memory"] = trial_memory.run(clips=1000)
    result["scale"] = scale.run(full_clips=1024)
    result["seconds"] = time.perf_counter() - started
    save_result(result, markdown=summary(result))
    print(summary(result))


if __name__ == "__main__":
    main()
