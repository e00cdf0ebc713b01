"""Scale: how a study's memory and start-up grow with the dataset, at 1/16, 1/4 and the
full size of OpenMIC (`--full-clips`, default 20,000 clips).

For each size this writes a prepared dataset of random 128 × 1000 float16 log-mels (no
audio) through `prepare` itself (its manifest, fingerprint, shard writer and `meta.json`;
`write_shard` is given random values instead of decoded audio), with the features of the
shipped `studies/openmic.toml` and OpenMIC's split proportions (train 12,692 : valid
2,223 : test 5,085). Then it runs the real study command on it as a subprocess,
`python -m east_ray.study bench/scale.toml --data D --storage S --max-concurrent 2`
(two baseline cells, CP-ResNet with 4 base channels, 2 training steps, 1 CPU per trial),
while a thread samples the command's process tree every 0.2 s. Figures, per size:

- data: the log-mel bytes, clips × 128 × 1000 × 2.
- first trial start: seconds from starting the command to the first trial's training
  start, which is when its TensorBoard event file appears (first sample that sees it):
  the trainer opens it at the end of `_Run.__init__`, after the trial has mapped the
  object-store blocks, built its `TrialData` and built the model; the first optimiser step
  follows at once. It includes Python and Ray start, reading the Parquet shards into the
  object store (Ray Data), Tune and Optuna set-up and the trial process's start.
- trial start-up: per trial, from the first sample where a process of the tree is titled
  `ray::ImplicitFunc` (Ray 2.60's name for a Tune function-trainable actor; it runs
  `run_trial`) to that trial's event file (its name carries the pid).
- trial memory: per trial process, the largest `RssAnon` (private) and `RssShmem`
  (shared memory: the object-store pages this process has touched, which grows with the
  clips it reads, not with what it maps) of `/proc/PID/status` over the samples, and its
  `RssAnon` at the first sample (what the worker held before the trial).
- driver: the command's own process, the largest `VmRSS - RssShmem` over the samples
  (resident memory beyond mapped object-store pages) and its last `VmHWM` (peak resident,
  shared pages included).
- object store: the pages allocated in the raylet's plasma file (tmpfs `st_blocks`, read
  through the raylet's open file descriptor, so another Ray on the machine does not count),
  largest over the samples. The store does not give pages back when objects are freed, so
  this is the node's peak object-store memory, the Ray Data read's transient blocks
  included; its capacity (the file's size) beside it.
- evaluation per 1,000 clips: after the study, in this process on one thread (a trial's
  `cpus_per_trial`), the trainer's `_Run.evaluate_rows` over the size's test clips (read
  into memory), seed 0's untrained model, seconds × 1,000 / clips.

Growth is the ratio of each figure between consecutive sizes (4× the clips each): data
and object store should grow linearly, the first trial start by a fixed part (Python, Ray,
Tune, the trial process) plus a linear one (the read), so by less than 4× until the read
dominates; trial `RssAnon`, driver memory beyond the object store, trial start-up and
evaluation per 1,000 clips should stay flat. Targets (issue
17), judged at the largest size: the spectrograms are held once per node (object store ≤
1.1 × data; a trial's private memory grows < 0.05 MiB per MiB of data), the driver's
memory beyond the object store < 2 GiB, the first trial starts within 2 minutes.

Writes `bench/results/<date>-<host>-scale.{json,md}`. The full size needs ~5.1 GB of disk
under `--workdir` (checked first) and a 2-core machine spends minutes on it.

    .venv/bin/python -m bench.scale [--full-clips 20000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import pyarrow.parquet as pq
import torch

from bench import CLASSES, memory_kib, save_result
from east_ray.catalog import get_dataset
from east_ray.config import Features, StudySpec, expand_cells, load_study
from east_ray.data.datasets import published_counts
from east_ray.data.parquet import column_numpy, read_labels
from east_ray.data.prepare import ShardJob, ok_status, prepare, shard_rows, write_shard
from east_ray.data.release import ReleaseIndex
from east_ray.train.data import ArrayStore, build_trial_data
from east_ray.train.trainer import _Run
from east_ray.train.trial import TrialSpec

PUBLISHED_COUNTS = published_counts(get_dataset("openmic"))

SPEC = Path(__file__).resolve().parent / "scale.toml"
DIVISORS = (16, 4, 1)  # the sizes, as fractions 1/16, 1/4, 1 of --full-clips
SAMPLE_S = 0.2
TRIAL_TITLE = b"ray::ImplicitFunc"  # Ray 2.60's process title of a Tune function trial
LABELLED = 0.25  # chance that a (clip, class) entry is labelled; half of those positive
MIB = 2**20


def clip_bytes(features: Features) -> int:
    """Bytes of one clip's float16 log-mel."""
    return 2 * features.n_mels * features.frames


def synthetic_index(n_clips: int, seed: int = 0) -> ReleaseIndex:
    """`n_clips` OpenMIC-like clips (ids `{i:06d}_0`, 20 classes, random partial labels,
    4 clips per artist group) spread over train/valid/test in OpenMIC's proportions; the
    audio paths are never read."""
    rng = np.random.default_rng(seed)
    total = sum(PUBLISHED_COUNTS.values())
    valid = round(n_clips * PUBLISHED_COUNTS["valid"] / total)
    test = round(n_clips * PUBLISHED_COUNTS["test"] / total)
    split = np.array(["train"] * (n_clips - valid - test) + ["valid"] * valid + ["test"] * test)
    rng.shuffle(split)  # every shard mixes the splits, as sorted real clip ids do
    mask = rng.random((n_clips, CLASSES)) < LABELLED
    labels = (rng.random((n_clips, CLASSES)) < 0.5).astype(np.float32)
    ids = [f"{i:06d}_0" for i in range(n_clips)]
    clips = pd.DataFrame(
        {
            "clip_id": ids,
            "split": split,
            "group": [f"artist{i // 4}" for i in range(n_clips)],
            "labels": list(labels),
            "label_mask": list(mask),
            "audio_path": [f"random/{c}.ogg" for c in ids],
        }
    )
    return ReleaseIndex(
        dataset="openmic",
        root=Path("random"),
        classes=tuple(f"class{k:02d}" for k in range(CLASSES)),
        clips=clips,
        valid_split={"rule": "random (bench.scale)", "seed": seed},
    )


def random_logmels(n: int, features: Features, seed: int) -> np.ndarray:
    """`(n, n_mels, frames)` float16 from random bits with the exponent's top bit cleared:
    every value finite, |x| < 2 (a uint16 draw is ~6× faster than drawing floats and
    casting them, which matters for 2.6 billion values)."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 1 << 16, (n, features.n_mels, features.frames), dtype=np.uint16)
    bits &= np.uint16(0xBFFF)
    return bits.view(np.float16)


def _random_shards(jobs: list[ShardJob]) -> None:
    """`prepare`'s runner: each shard's clips with random log-mels, one shard at a time."""
    for job in jobs:
        out = Path(job.out)
        rows = shard_rows(out, job.shard)
        mels = random_logmels(len(rows), job.features, seed=job.shard)
        write_shard(out, job.shard, rows, mels, [ok_status(c) for c in rows["clip_id"].to_pylist()])


def write_dataset(n_clips: int, features: Features, out: Path) -> dict[str, Any]:
    """The prepared dataset of `n_clips` random clips at `out` (kept if already there);
    returns its meta."""
    return prepare(synthetic_index(n_clips), features, out, runner=_random_shards)


def check_disk(workdir: Path, need: int) -> None:
    """Fail, saying what is needed and free, unless `workdir` has `need` bytes free (plus
    1 GiB)."""
    free = shutil.disk_usage(workdir).free
    if free < need + 2**30:
        raise SystemExit(
            f"bench.scale: the datasets need {need / 1e9:.1f} GB (+1 GiB margin) under "
            f"{workdir}, which has {free / 1e9:.1f} GB free; free space there, choose another "
            "--workdir, or lower --full-clips"
        )


@dataclasses.dataclass
class TrialProcess:
    """One trial process as sampled: when first seen titled as a trial, its memory then
    and its largest memory since (KiB)."""

    first_seen_s: float
    rss_anon_at_start_kib: int
    rss_anon_kib: int = 0
    rss_shmem_kib: int = 0


@dataclasses.dataclass
class Samples:
    """What the sampler saw; times in seconds since the command started."""

    count: int = 0
    driver_private_kib: int = 0  # largest VmRSS - RssShmem
    driver_shmem_kib: int = 0
    driver_hwm_kib: int = 0  # last VmHWM read
    trials: dict[int, TrialProcess] = dataclasses.field(default_factory=dict)
    event_files: dict[str, tuple[float, int]] = dataclasses.field(default_factory=dict)
    store_bytes: int = 0
    store_capacity: int = 0


def _cmdline(pid: int) -> bytes:
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        return fh.read()


def _plasma_file(raylet: int) -> str | None:
    """The raylet's open descriptor of its plasma (object store) file, as a /proc path."""
    for fd in os.listdir(f"/proc/{raylet}/fd"):
        path = f"/proc/{raylet}/fd/{fd}"
        try:
            if os.path.basename(os.readlink(path)).startswith("plasma"):
                return path
        except OSError:
            continue
    return None


class Sampler:
    """Samples the process tree of `driver` every `interval` s on a thread, and the event
    files under `cells_dir` (`<cell>/tb/events.out.tfevents.<time>.<host>.<pid>.<n>`)."""

    def __init__(
        self, driver: int, cells_dir: Path, started: float, interval: float = SAMPLE_S
    ) -> None:
        self.driver, self.cells_dir, self.started, self.interval = (
            driver,
            cells_dir,
            started,
            interval,
        )
        self.samples = Samples()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._plasma: str | None = None

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        """One sample of the driver, its descendants and the event files."""
        now = time.monotonic() - self.started
        s = self.samples
        try:
            driver = memory_kib(self.driver)
            children = psutil.Process(self.driver).children(recursive=True)
        except (OSError, psutil.Error):  # the command has exited
            return
        if "VmRSS" not in driver:  # exited, not yet reaped: a zombie has no memory lines
            return
        s.count += 1
        s.driver_private_kib = max(s.driver_private_kib, driver["VmRSS"] - driver["RssShmem"])
        s.driver_shmem_kib = max(s.driver_shmem_kib, driver["RssShmem"])
        s.driver_hwm_kib = driver["VmHWM"]
        for child in children:
            try:
                title = _cmdline(child.pid)
                if title.startswith(TRIAL_TITLE):
                    self._trial(child.pid, now)
                elif title.split(b"\0")[0].endswith(b"/raylet"):
                    self._store(child.pid)
            except OSError:  # exited between the listing and the read
                continue
        for path in self.cells_dir.glob("*/tb/events.out.tfevents.*"):
            if path.name not in s.event_files:
                s.event_files[path.name] = (now, int(path.name.split(".")[-2]))

    def _trial(self, pid: int, now: float) -> None:
        kib = memory_kib(pid)
        if "RssAnon" not in kib:  # a zombie
            return
        trial = self.samples.trials.setdefault(pid, TrialProcess(now, kib["RssAnon"]))
        trial.rss_anon_kib = max(trial.rss_anon_kib, kib["RssAnon"])
        trial.rss_shmem_kib = max(trial.rss_shmem_kib, kib["RssShmem"])

    def _store(self, raylet: int) -> None:
        self._plasma = self._plasma or _plasma_file(raylet)
        if self._plasma is not None:
            st = os.stat(self._plasma)
            self.samples.store_bytes = max(self.samples.store_bytes, st.st_blocks * 512)
            self.samples.store_capacity = st.st_size


def run_study(data: Path, storage: Path, log: Path) -> tuple[float, Samples]:
    """The study command on `data` into a fresh `storage`, sampled; its wall seconds and
    the samples. A failed command raises with its log's tail."""
    shutil.rmtree(storage, ignore_errors=True)  # a rerun would find every cell done
    command = [sys.executable, "-m", "east_ray.study", str(SPEC), "--data", str(data)]
    command += ["--storage", str(storage), "--max-concurrent", "2", "--retries", "0"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a local Ray: our tree
    with log.open("wb") as out:
        started = time.monotonic()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        with Sampler(proc.pid, storage / "scale" / "cells", started) as sampler:
            code = proc.wait()
        seconds = time.monotonic() - started
    if code != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(command)} exited {code}; end of {log}:\n{tail}")
    return seconds, sampler.samples


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def evaluation_seconds(data: Path, spec: StudySpec, run_dir: Path) -> tuple[int, float]:
    """The test clips of `data` and the seconds the trainer's `evaluate_rows` takes over
    them (seed 0's cell, on the CPU, one thread per `cpus_per_trial`)."""
    cell = expand_cells(spec)[0]
    labels = read_labels(data)
    test = labels.rows("test")
    only_test = dataclasses.replace(
        labels,
        clip_ids=[labels.clip_ids[i] for i in test],
        split=labels.split[test],
        group=labels.group[test],
        labels=labels.labels[test],
        mask=labels.mask[test],
    )
    table = pq.read_table(
        data / "clips", columns=["clip_id", "logmel"], filters=[("split", "==", "test")]
    )
    store = ArrayStore(table["clip_id"].to_pylist(), column_numpy(table["logmel"]))
    trial = build_trial_data(cell, only_test, store)
    run = _Run(
        TrialSpec.for_cell(spec, cell, len(labels.classes)), trial, run_dir, torch.device("cpu")
    )
    try:
        with _torch_threads(max(1, int(spec.resources.cpus_per_trial))):
            started = time.perf_counter()
            run.evaluate_rows(trial.test_rows)
            seconds = time.perf_counter() - started
    finally:
        run.writer.close()
    return len(test), seconds


StudyRunner = Callable[[Path, Path, Path], tuple[float, Samples]]
"""Runs the study on a dataset into a storage folder, logging to a file (`run_study`)."""


def measure(
    n_clips: int, spec: StudySpec, folder: Path, study: StudyRunner = run_study
) -> dict[str, Any]:
    """Every figure of one size (module doc), its dataset written under `folder`; `study`
    replaces the study command (the test runs the study in its own process)."""
    started = time.perf_counter()
    meta = write_dataset(n_clips, spec.features, folder / "data")
    write_s = time.perf_counter() - started
    study_s, s = study(folder / "data", folder / "storage", folder / "study.log")
    eval_clips, eval_s = evaluation_seconds(folder / "data", spec, folder / "eval")
    data_mib = n_clips * clip_bytes(spec.features) / MIB
    if not s.trials or not s.event_files:
        raise RuntimeError(
            f"{folder}: the sampler saw {len(s.trials)} trial processes and "
            f"{len(s.event_files)} event files in {s.count} samples; expected 2 of each"
        )
    starts: dict[int, float] = {}  # each trial process's first event file
    for seen, pid in s.event_files.values():
        starts[pid] = min(seen, starts.get(pid, seen))
    startups = [starts[pid] - t.first_seen_s for pid, t in s.trials.items() if pid in starts]
    trials = [
        {
            "pid": pid,
            "rss_anon_mib": t.rss_anon_kib / 1024,
            "rss_anon_at_start_mib": t.rss_anon_at_start_kib / 1024,
            "rss_shmem_mib": t.rss_shmem_kib / 1024,
            "startup_s": starts[pid] - t.first_seen_s if pid in starts else None,
        }
        for pid, t in sorted(s.trials.items())
    ]
    return {
        "clips": n_clips,
        "counts": meta["counts"],
        "data_mib": data_mib,
        "write_s": write_s,
        "study_s": study_s,
        "samples": s.count,
        "first_trial_start_s": min(starts.values()),
        "trial_startup_s": max(startups, default=None),
        "trials": trials,
        "trial_rss_anon_mib": max(t.rss_anon_kib for t in s.trials.values()) / 1024,
        "trial_rss_shmem_mib": max(t.rss_shmem_kib for t in s.trials.values()) / 1024,
        "driver_beyond_store_mib": s.driver_private_kib / 1024,
        "driver_shmem_mib": s.driver_shmem_kib / 1024,
        "driver_peak_rss_mib": s.driver_hwm_kib / 1024,
        "object_store_mib": s.store_bytes / MIB,
        "object_store_capacity_mib": s.store_capacity / MIB,
        "object_store_per_data": s.store_bytes / MIB / data_mib,
        "eval_clips": eval_clips,
        "eval_s_per_1000": eval_s * 1000 / eval_clips,
    }


# figure, how it should grow with the data, its label
FIGURES = (
    ("data_mib", "linear", "log-mel data (MiB)"),
    ("object_store_mib", "linear", "object store, peak pages (MiB)"),
    ("first_trial_start_s", "fixed + linear", "command start → first trial's training start (s)"),
    ("trial_startup_s", "flat", "trial start-up, process seen → training start, max (s)"),
    ("trial_rss_anon_mib", "flat", "trial RssAnon (private), max over trials (MiB)"),
    ("trial_rss_shmem_mib", "linear", "trial RssShmem (object-store pages touched) (MiB)"),
    ("driver_beyond_store_mib", "flat", "driver VmRSS − RssShmem, peak (MiB)"),
    ("driver_peak_rss_mib", "flat", "driver VmHWM (MiB)"),
    ("eval_s_per_1000", "flat", "evaluation per 1,000 clips, 1 thread (s)"),
    ("study_s", "", "study command wall time (s)"),
    ("write_s", "fixed + linear", "writing the dataset (s)"),
)


def growth(sizes: list[dict[str, Any]]) -> dict[str, list[float | None]]:
    """Each figure's ratio between consecutive sizes."""
    out: dict[str, list[float | None]] = {}
    for key, _, _ in FIGURES:
        values = [size[key] for size in sizes]
        out[key] = [b / a if a and b is not None else None for a, b in itertools.pairwise(values)]
    return out


def targets(sizes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 17's targets, judged at the largest size (the private-memory slope between the
    smallest and the largest)."""
    small, big = sizes[0], sizes[-1]
    added_data = big["data_mib"] - small["data_mib"]
    slope = (big["trial_rss_anon_mib"] - small["trial_rss_anon_mib"]) / added_data
    return [
        {
            "target": "spectrograms once per node: object store ≤ 1.1 × data",
            "value": round(big["object_store_per_data"], 3),
            "met": big["object_store_per_data"] <= 1.1,
        },
        {
            "target": "trial private memory does not grow with data: ΔRssAnon / Δdata < 0.05",
            "value": round(slope, 4),
            "met": slope < 0.05,
        },
        {
            "target": "driver memory beyond the object store < 2 GiB (MiB)",
            "value": round(big["driver_beyond_store_mib"]),
            "met": big["driver_beyond_store_mib"] < 2048,
        },
        {
            "target": "first trial's training start ≤ 120 s after the command (s)",
            "value": round(big["first_trial_start_s"], 1),
            "met": big["first_trial_start_s"] <= 120,
        },
    ]


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def summary(result: dict[str, Any]) -> str:
    """The Markdown table: figures by size, the growth per size step, the targets."""
    sizes = result["sizes"]
    head = [f"{s['clips']:,} clips" for s in sizes]
    steps = [f"×{b['clips'] / a['clips']:g} clips" for a, b in itertools.pairwise(sizes)]
    lines = [
        f"# Scale {result['date']} on {result['host']} ({result['seconds']:.0f} s; "
        f"load average {result['load_before']} before, {result['load_after']} after)",
        "",
        "| figure | " + " | ".join(head) + " | " + " | ".join(steps) + " | expected |",
        "|---" * (2 + len(head) + len(steps)) + "|",
    ]
    for key, expected, label in FIGURES:
        cells = [_fmt(s[key]) for s in sizes]
        ratios = [_fmt(r) for r in result["growth"][key]]
        lines.append(f"| {label} | " + " | ".join(cells + ratios) + f" | {expected} |")
    lines += ["", "| target | value | met |", "|---|---|---|"]
    for t in result["targets"]:
        lines.append(f"| {t['target']} | {t['value']} | {'yes' if t['met'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def run(full_clips: int, workdir: Path | None = None) -> dict[str, Any]:
    """Every size's figures, their growth and the targets; datasets under `workdir` (a
    temporary folder, removed after, by default; a given one keeps them for a rerun)."""
    spec = load_study(SPEC)
    clips = [full_clips // d for d in DIVISORS]
    per_split_min = min(PUBLISHED_COUNTS.values()) / sum(PUBLISHED_COUNTS.values())
    if clips[0] * per_split_min < 1 or clips[0] < 2 * spec.recipe.batch_size:
        raise SystemExit(f"--full-clips {full_clips}: too few for 1/16 of it to train and test")
    temporary = workdir is None
    root = Path(tempfile.mkdtemp(prefix="east_ray_scale_")) if workdir is None else workdir
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    load_before = [round(x, 2) for x in os.getloadavg()]
    try:
        todo = [n for n in clips if not (root / f"clips-{n}" / "data" / "meta.json").is_file()]
        check_disk(root, sum(todo) * clip_bytes(spec.features))
        sizes = [measure(n, spec, root / f"clips-{n}") for n in clips]
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
    return {
        "benchmark": "scale",
        "host": platform.node(),
        "date": date.today().isoformat(),
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "seconds": time.perf_counter() - started,
        "spec": str(SPEC.relative_to(SPEC.parents[1])),
        "sizes": sizes,
        "growth": growth(sizes),
        "targets": targets(sizes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full-clips", type=int, default=20_000, help="the full size")
    parser.add_argument("--workdir", type=Path, help="where the datasets go (default: temp)")
    args = parser.parse_args()
    result = run(args.full_clips, args.workdir)
    save_result(result, "scale", summary(result))
    print(summary(result))


if __name__ == "__main__":
    main()
