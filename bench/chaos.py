"""`python -m bench.chaos` (or `make chaos`): SIGKILL a running study at random moments.

One uninterrupted reference run of a small study first: 8 cells (4 regularizers × 2 data
fractions, handcrafted teacher, 8-channel CP-ResNet) on a tiny OpenMIC-format release, from
a prepared dataset with no teacher extracted, so every run goes through Ray start, teacher
extraction, Teacher_LR (2 fits), Ray Data reading and training. While it runs, the moments
each phase begins are read off the disk. Then, `-n` times, on a fresh copy of the data:
start the same command as its own process group, SIGKILL the group at a moment drawn
(seeded) inside one phase (the phases taken in turn, so every phase is hit), wait for every
process the driver had started to exit, run the command again to the end, and check:

- complete once: exit 0, one result per cell in `results.parquet`, and every `result.json`
  written before the kill untouched by the rerun;
- identical: `results.parquet` equals the reference's (all metrics, exactly; wall time
  and the like excluded);
- epochs logged twice / missing in the cells' TensorBoard events;
- temporary files (`*.tmp`) left anywhere in the data or results folders;
- seconds from the kill until the last process of the killed run was gone.

Writes `bench/results/<date>-<host>-chaos.json` and prints a Markdown summary. A failing
run is replayed with the same `--seed` and `--only RUN`; `--keep` keeps its folders.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bench import save_result
from east_ray.teachers.stored import record_path
from tests.release_fixtures import prepared_openmic, tiny_study

NAME = "chaos"
SPEC = tiny_study(
    NAME,
    recipe="max_steps = 40\nearly_stop_patience = 100",
    regularizers='["none", "kd", "dcor", "cos_diff"]',
).replace("seeds = [0]", "seeds = [0]\nfractions = [0.5, 1.0]")
CELLS, TEACHER_LR_FITS = 8, 2
# Columns that differ between two correct runs of the same cell.
UNSTABLE = ("wall_seconds", "node_id")
PHASES = ("ray start", "extraction", "teacher_lr", "ray data + tune start", "training", "tables")


@dataclass(frozen=True)
class Workspace:
    data: Path
    storage: Path
    spec: Path
    log: Path  # the driver's output

    @property
    def study(self) -> Path:
        return self.storage / NAME

    def phase(self) -> str:
        """The phase a run of the study is in, read off the disk."""
        if b"teacher handcrafted" not in self.log.read_bytes():
            return PHASES[0]
        if not record_path(self.data, "handcrafted").is_file():
            return PHASES[1]
        if len(list((self.data / "teacher_lr").glob("*/*.json"))) < TEACHER_LR_FITS:
            return PHASES[2]
        cells = self.study / "cells"
        if not cells.is_dir() or not any(cells.glob("*/checkpoint.pt")):
            return PHASES[3]
        if len(list(cells.glob("*/result.json"))) < CELLS:
            return PHASES[4]
        return PHASES[5]


def workspace(root: Path, template: Path) -> Workspace:
    root.mkdir(parents=True)
    shutil.copytree(template, root / "data")
    (root / "chaos.toml").write_text(SPEC)
    return Workspace(root / "data", root / "results", root / "chaos.toml", root / "driver.log")


def start(ws: Workspace) -> subprocess.Popen[bytes]:
    """The study command as its own process group (what a user's shell would start)."""
    command = [sys.executable, "-m", "east_ray.study", str(ws.spec), "--data", str(ws.data)]
    with ws.log.open("ab") as out:
        return subprocess.Popen(
            [*command, "--storage", str(ws.storage)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def reference(ws: Workspace, timeout: float) -> tuple[float, dict[str, float]]:
    """Run the study uninterrupted; its wall seconds and when each phase began."""
    begun = time.monotonic()
    proc = start(ws)
    onsets: dict[str, float] = {PHASES[0]: 0.0}
    while proc.poll() is None:
        onsets.setdefault(ws.phase(), time.monotonic() - begun)
        if time.monotonic() - begun > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            raise RuntimeError(f"reference run exceeded {timeout:.0f} s; see {ws.log}")
        time.sleep(0.05)
    wall = time.monotonic() - begun
    if proc.returncode != 0:
        raise RuntimeError(f"reference run exited {proc.returncode}; see {ws.log}")
    return wall, onsets


def kill_moments(seed: int, n: int, wall: float, onsets: dict[str, float]) -> list[float]:
    """Run i's kill moment: uniform inside the i-th phase (phases in turn)."""
    spans = [(a, b) for a, b in itertools.pairwise([*sorted(onsets.values()), wall]) if b > a]
    rng = random.Random(seed)
    return [rng.uniform(*spans[i % len(spans)]) for i in range(n)]


def _label(p: psutil.Process) -> str:
    """A Ray process's title (`ray::IDLE`, `raylet`), else its script or program name."""
    try:
        words = p.cmdline()
    except psutil.Error:
        return "?"
    scripts = [Path(w).name for w in words if w.endswith(".py")]
    return scripts[0] if scripts else Path(words[0]).name if words else "?"


def _alive(p: psutil.Process) -> bool:
    try:
        return bool(p.is_running() and p.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def kill_at(ws: Workspace, moment: float, timeout: float) -> dict[str, Any]:
    """Start the study, SIGKILL its process group at `moment` s; how the kill landed and
    when each process the driver had started was gone (those outside its process group,
    which the SIGKILL does not reach, exit on their own)."""
    begun = time.monotonic()
    proc = start(ws)
    while time.monotonic() - begun < moment and proc.poll() is None:
        time.sleep(0.02)
    if proc.poll() is not None:
        return {"phase": "after exit", "exit_s": 0.0, "last": "", "survivors": []}
    phase = ws.phase()
    tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    labels = {p.pid: _label(p) for p in tree}
    killed = time.monotonic()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    gone: dict[int, float] = {}
    while len(gone) < len(tree) and time.monotonic() - killed < timeout:
        for p in tree:
            if p.pid not in gone and not _alive(p):
                gone[p.pid] = time.monotonic() - killed
        time.sleep(0.05)
    survivors = [f"{p.pid} {labels[p.pid]}" for p in tree if p.pid not in gone]
    for p in tree:  # the next run must not share them
        if p.pid not in gone:
            p.kill()
    last = max(gone, key=gone.__getitem__)
    return {
        "phase": phase,
        "exit_s": max(gone.values()),
        "last": labels[last],
        "survivors": survivors,
    }


def _result_files(ws: Workspace) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in ws.study.glob("cells/*/result.json")}


def epoch_record(ws: Workspace) -> tuple[int, int]:
    """(epochs logged more than once, epochs never logged) over every finished cell."""
    twice = missing = 0
    for result in ws.study.glob("cells/*/result.json"):
        steps: list[int] = []
        for events in sorted((result.parent / "tb").glob("events.out.tfevents.*")):
            acc = EventAccumulator(str(events))
            acc.Reload()
            if "epoch/val_mAP" in acc.Tags()["scalars"]:
                steps += [e.step for e in acc.Scalars("epoch/val_mAP")]
        epochs = json.loads(result.read_text())["epochs"]
        twice += len(steps) - len(set(steps))
        missing += len(set(range(1, epochs + 1)) - set(steps))
    return twice, missing


def comparable(results: pd.DataFrame) -> pd.DataFrame:
    frame = results.drop(columns=[c for c in UNSTABLE if c in results])
    return frame.sort_values("cell_id").reset_index(drop=True)


def check(
    ws: Workspace, rc: int | None, before: dict[str, int], ref: pd.DataFrame
) -> dict[str, Any]:
    """The rerun's outcome against the reference run."""
    path = ws.study / "results.parquet"
    results = pd.read_parquet(path) if path.is_file() else pd.DataFrame({"cell_id": []})
    after = _result_files(ws)
    rewritten = sorted(c for c, t in before.items() if after.get(c) != t)
    counts = results["cell_id"].value_counts()
    complete_once = (
        rc == 0
        and len(after) == CELLS
        and len(counts) == CELLS + TEACHER_LR_FITS
        and bool((counts == 1).all())
        and not rewritten
    )
    try:
        pd.testing.assert_frame_equal(comparable(results), comparable(ref), check_exact=True)
        identical, difference = True, ""
    except AssertionError as exc:
        identical, difference = False, " ".join(str(exc).split())
    twice, missing = epoch_record(ws)
    temps = sorted(
        str(p.relative_to(ws.data.parent))
        for root in (ws.data, ws.storage)
        for p in root.rglob("*")
        if ".tmp" in p.name
    )
    return {
        "rerun_exit": rc,
        "complete_once": complete_once,
        "result_json_rewritten": rewritten,
        "identical": identical,
        "difference": difference,
        "epochs_twice": twice,
        "epochs_missing": missing,
        "temp_files": temps,
    }


@dataclass(frozen=True)
class Run:
    run: int
    kill_s: float
    phase: str
    finished_before_kill: int
    ray_exit_s: float
    last_to_exit: str
    survivors: list[str]
    outcome: dict[str, Any]


def one_run(
    i: int, moment: float, *, root: Path, template: Path, ref: pd.DataFrame, timeout: float
) -> Run:
    ws = workspace(root / f"run{i}", template)
    kill = kill_at(ws, moment, timeout=60)
    before = _result_files(ws)
    rerun = start(ws)
    try:
        rc: int | None = rerun.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(rerun.pid, signal.SIGKILL)
        rerun.wait()
        rc = None
    return Run(
        i,
        moment,
        kill["phase"],
        len(before),
        kill["exit_s"],
        kill["last"],
        kill["survivors"],
        check(ws, rc, before, ref),
    )


def summary(result: dict[str, Any]) -> str:
    runs = result["runs"]
    ok = [r for r in runs if r["outcome"]["complete_once"]]
    same = [r for r in runs if r["outcome"]["identical"]]
    exits = [r["ray_exit_s"] for r in runs if r["phase"] != "after exit"]
    lines = [
        f"# Chaos {result['date']} on {result['host']}: seed {result['seed']}, "
        f"{len(runs)} kills ({result['seconds']:.0f} s)",
        "",
        f"Reference run {result['reference_s']:.0f} s; phases began at "
        + ", ".join(f"{k} {v:.1f} s" for k, v in result["phase_onsets"].items()),
        "",
        "| run | kill at | phase | cells done | all processes gone after (last) "
        "| complete once | identical | epochs twice / missing | temp files |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        o = r["outcome"]
        lines.append(
            f"| {r['run']} | {r['kill_s']:.1f} s | {r['phase']} | {r['finished_before_kill']} "
            f"| {r['ray_exit_s']:.1f} s ({r['last_to_exit']}) "
            f"| {'yes' if o['complete_once'] else 'NO'} | {'yes' if o['identical'] else 'NO'} "
            f"| {o['epochs_twice']} / {o['epochs_missing']} | {len(o['temp_files'])} |"
        )
    lines += [
        "",
        f"complete once {len(ok)}/{len(runs)}, identical to the reference "
        f"{len(same)}/{len(runs)}, epochs logged twice "
        f"{sum(r['outcome']['epochs_twice'] for r in runs)}, temporary files left "
        f"{sum(len(r['outcome']['temp_files']) for r in runs)}, killed run's processes gone "
        f"after at most {max(exits, default=0.0):.1f} s",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None, progress: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--runs", type=int, default=10, help="kills (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="draws the kill moments")
    parser.add_argument("--only", type=int, help="replay run ONLY of this seed alone")
    parser.add_argument("--keep", action="store_true", help="keep the work folders")
    parser.add_argument("--workdir", type=Path, help="where the folders go (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs: got {args.runs}, expected at least 1")
    if args.only is not None and not 0 <= args.only < args.runs:
        parser.error(f"--only: got {args.only}, expected a run from 0 to {args.runs - 1}")
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="east_ray-chaos-", dir=args.workdir))
    progress(f"work folder {root}; preparing the dataset")
    template = prepared_openmic(root / "template")
    ref_ws = workspace(root / "reference", template)
    wall, onsets = reference(ref_ws, timeout=900)
    progress(f"reference run {wall:.0f} s; phases began at " + json.dumps(onsets))
    ref = pd.read_parquet(ref_ws.study / "results.parquet")
    moments = kill_moments(args.seed, args.runs, wall, onsets)
    runs = []
    for i in [args.only] if args.only is not None else range(args.runs):
        run = one_run(i, moments[i], root=root, template=template, ref=ref, timeout=3 * wall + 60)
        o = run.outcome
        good = o["complete_once"] and o["identical"]
        progress(
            f"run {i}: killed at {run.kill_s:.1f} s in {run.phase}; complete once "
            f"{o['complete_once']}, identical {o['identical']}, processes gone after "
            f"{run.ray_exit_s:.1f} s (last: {run.last_to_exit})"
            + ("" if good else f"; kept {root / f'run{i}'}")
        )
        if good and not args.keep:
            shutil.rmtree(root / f"run{i}")
        runs.append(asdict(run))
    result = {
        "host": platform.node(),
        "date": date.today().isoformat(),
        "seed": args.seed,
        "reference_s": wall,
        "phase_onsets": onsets,
        "runs": runs,
        "seconds": time.monotonic() - started,
    }
    bad = [
        r["run"] for r in runs if not (r["outcome"]["complete_once"] and r["outcome"]["identical"])
    ]
    if not bad and not args.keep:
        shutil.rmtree(root)
    text = summary(result)
    save_result(result, "chaos", text)
    print(text)
    if bad:
        progress(f"failed runs {bad}: replay one with --seed {args.seed} --only RUN; see {root}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
