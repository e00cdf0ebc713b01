"""`recipe.cpu_numerics = "portable"`: does it give an AVX-512 machine the numbers an AVX2
machine computes, and what does it cost? Side by side in one run, on the demo's data.

Two cells of the demo study (the Baseline and EAsT_All with musicnn; one thread, as a demo
trial runs) train `--epochs` epochs in a fresh process (`python -m east_ray.train`) under:

- `native`: this CPU's own kernels (AVX-512 where it has them);
- `avx2-cpu`: native on an emulated CPU without AVX-512 (ATen's and oneDNN's kernels
  capped at AVX2 through their own variables, nothing else), i.e. what a demo machine
  without AVX-512 computes;
- `portable`: the demo's setting.

Reported: each run's final validation loss and test mAP (all digits), whether `portable`
equals `avx2-cpu` and `native` bit for bit, and seconds per training step (the trial's own
clock, so process start-up is left out) as `portable` / `native`, median and range over
`--reps` repetitions in a fresh order each (`bench.alternating`'s rule).

    .venv/bin/python -m bench.portable [--data data/synthmic] [--epochs 4] [--reps 3]

Needs the demo's prepared data with its musicnn embeddings (`make demo` once).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

from bench import ratio, save_result, spread
from east_ray.config import expand_cells, load_study

EMULATED_AVX2_CPU = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
SETTINGS: dict[str, tuple[str, dict[str, str]]] = {
    "native": ("native", {}),
    "avx2-cpu": ("native", EMULATED_AVX2_CPU),
    "portable": ("portable", {}),
}
SYSTEMS = ("Baseline", "EAsT_All")


# the demo's data and recipe with the two cells measured (the demo's own grid has no EAsT_All)
GRID = (
    '[grid]\nregularizers = ["none", "dcor"]\nstages = ["all"]\nlams = [0.8]\nfractions = [1.0]\n'
)


def _cells(study: Path) -> dict[str, str]:
    cells = [c for c in expand_cells(load_study(study)) if c.seed == 1223]
    return {s: next(c.cell_id for c in cells if c.system == s) for s in SYSTEMS}


def _train(study: Path, cell: str, data: Path, epochs: int, env: dict[str, str]) -> dict[str, Any]:
    """One cell in a fresh process; its result.json fields."""
    with tempfile.TemporaryDirectory() as out:
        clean = {k: v for k, v in os.environ.items() if k not in EMULATED_AVX2_CPU}
        command = [sys.executable, "-m", "east_ray.train", "--study", str(study)]
        command += ["--cell", cell, "--data", str(data), "--max-epochs", str(epochs)]
        done = subprocess.run(
            [*command, "--out", out],
            env={**clean, **env, "OMP_NUM_THREADS": "1"},
            capture_output=True,
            text=True,
            check=True,
        )
    # the command prints each epoch's metrics, then the result, as JSON
    result: dict[str, Any] = json.loads(done.stdout[done.stdout.rindex("\n{") :])
    return result


def run(data: Path, epochs: int, reps: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as specs:
        studies = {}
        for name, (choice, _) in SETTINGS.items():
            studies[name] = Path(specs) / f"{name}.toml"
            studies[name].write_text(
                f'extends = "demo"\n[recipe]\ncpu_numerics = "{choice}"\n{GRID}'
            )
        cells = _cells(studies["native"])
        results: dict[str, dict[str, list[dict[str, Any]]]] = {s: {} for s in SYSTEMS}
        order = [(s, n) for s in SYSTEMS for n in SETTINGS]
        rng = random.Random(0)
        for rep in range(reps):
            rng.shuffle(order)
            for system, name in order:
                print(f"rep {rep + 1}/{reps}: {system} {name}", file=sys.stderr, flush=True)
                row = _train(studies[name], cells[system], data, epochs, SETTINGS[name][1])
                results[system].setdefault(name, []).append(row)
    out: dict[str, Any] = {}
    for system, by_setting in results.items():
        final = {
            name: {"val_loss": rows[0]["val_loss"], "test_mAP": rows[0]["test_mAP"]}
            for name, rows in by_setting.items()
        }
        repeatable = all(
            (r["val_loss"], r["test_mAP"]) == (rows[0]["val_loss"], rows[0]["test_mAP"])
            for rows in by_setting.values()
            for r in rows
        )
        step_seconds = {
            name: [r["wall_seconds"] / r["steps"] for r in rows]
            for name, rows in by_setting.items()
        }
        out[system] = {
            "cell": cells[system],
            "final": final,
            "repeatable": repeatable,
            "portable_equals_avx2_cpu": final["portable"] == final["avx2-cpu"],
            "portable_equals_native": final["portable"] == final["native"],
            "step_cost": ratio(step_seconds, "portable", "native"),
        }
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f'# `cpu_numerics = "portable"` ({result["date"]}, {result["host"]}, '
        f"{result['epochs']} epochs, {result['reps']} repetitions)",
        "",
        "| cell | native val loss | AVX2 CPU (emulated) | portable | portable = AVX2 CPU "
        "| portable = native | step time portable / native |",
        "|---|---|---|---|---|---|---|",
    ]
    for system in SYSTEMS:
        r = result[system]
        f = r["final"]
        lines.append(
            f"| {system} | {f['native']['val_loss']!r} | {f['avx2-cpu']['val_loss']!r} "
            f"| {f['portable']['val_loss']!r} | {r['portable_equals_avx2_cpu']} "
            f"| {r['portable_equals_native']} | {spread(r['step_cost'])} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.portable", description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/synthmic"))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    result = {
        "date": date.today().isoformat(),
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "epochs": args.epochs,
        "reps": args.reps,
        **run(args.data, args.epochs, args.reps),
    }
    text = markdown(result)
    path = save_result(result, "portable", text)
    print(text + f"\n{path}")


if __name__ == "__main__":
    main()
