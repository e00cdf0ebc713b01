"""Faults survived: a killed driver, a killed trial process, unwritable or full storage."""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from east_ray.data import parquet
from east_ray.study import __main__ as study
from tests.release_fixtures import tiny_study

SPEC = tiny_study("faults", recipe="max_steps = 60\nearly_stop_patience = 100")


def _start(spec: Path, data: Path, storage: Path, *extra: str) -> subprocess.Popen[bytes]:
    """The study command in its own session; its stderr goes to the next free
    `driver-<n>.log` beside `storage` (`_log_tail` shows it when a check fails)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    logs = len(list(storage.parent.glob("driver-*.log")))
    with (storage.parent / f"driver-{logs}.log").open("wb") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "east_ray.study",
                str(spec),
                "--data",
                str(data),
                "--storage",
                str(storage),
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
            env=env,
        )


def _log_tail(storage: Path, lines: int = 40) -> str:
    """The last lines of every driver's stderr, for a failed check's message."""
    tails = []
    for log in sorted(storage.parent.glob("driver-*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        tails.append(f"--- {log.name}\n" + "\n".join(tail))
    return "\n".join(tails)


def _wait_for(
    condition: Callable[[], bool], proc: subprocess.Popen[bytes], timeout: float = 240
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"study exited early with {proc.returncode}"
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def _cells(storage: Path) -> Path:
    return storage / "faults" / "cells"


def _epochs_logged(cell: Path) -> list[int]:
    """Every epoch step in all of a cell's TensorBoard event files (one per writer)."""
    steps = []
    for events in sorted((cell / "tb").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        if "epoch/val_mAP" in acc.Tags()["scalars"]:
            steps += [e.step for e in acc.Scalars("epoch/val_mAP")]
    return steps


def _check_complete_once(storage: Path, before: dict[str, int]) -> None:
    results = pd.read_parquet(storage / "faults" / "results.parquet")
    runs = results[results["regularizer"] != "teacher_lr"]
    assert sorted(runs["regularizer"]) == ["dcor", "kd", "none"]
    for cell in _cells(storage).iterdir():
        if cell.name in before:  # finished before the fault: untouched
            assert (cell / "result.json").stat().st_mtime_ns == before[cell.name]
        epochs = _epochs_logged(cell)
        assert len(epochs) == len(set(epochs)), (cell.name, epochs)  # resumed, not restarted


def _finished(storage: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in _cells(storage).glob("*/result.json")}


@pytest.mark.slow
def test_sigkill_of_the_driver_then_rerun_completes_every_cell_once(
    prepared: Path, tmp_path: Path
) -> None:
    spec = tmp_path / "faults.toml"
    spec.write_text(SPEC)
    storage = tmp_path / "results"
    proc = _start(spec, prepared, storage)

    def one_done_one_midway() -> bool:
        done = set(_finished(storage))
        midway = (
            [p for p in _cells(storage).glob("*/checkpoint.pt") if p.parent.name not in done]
            if _cells(storage).is_dir()
            else []
        )
        return bool(done) and bool(midway)

    _wait_for(one_done_one_midway, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started
    proc.wait()
    before = _finished(storage)
    assert 1 <= len(before) < 3
    rerun = _start(spec, prepared, storage)
    assert rerun.wait(timeout=300) == 0, _log_tail(storage)
    _check_complete_once(storage, before)


def _trial_processes() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"ImplicitFunc" in cmdline:
                pids.append(int(entry.name))
    return pids


@pytest.mark.slow
def test_a_killed_trial_process_is_retried_from_its_checkpoint(
    prepared: Path, tmp_path: Path
) -> None:
    spec = tmp_path / "faults.toml"
    spec.write_text(SPEC)
    storage = tmp_path / "results"
    proc = _start(spec, prepared, storage, "--retries", "2")

    def trial_midway() -> bool:
        return (
            _cells(storage).is_dir()
            and any(
                p.parent.name not in _finished(storage)
                for p in _cells(storage).glob("*/checkpoint.pt")
            )
            and bool(_trial_processes())
        )

    _wait_for(trial_midway, proc)
    before = _finished(storage)
    for pid in _trial_processes():
        os.kill(pid, signal.SIGKILL)
    assert proc.wait(timeout=300) == 0, _log_tail(storage)
    _check_complete_once(storage, before)
    writers = [
        len(list((c / "tb").glob("events.out.tfevents.*"))) for c in _cells(storage).iterdir()
    ]
    assert max(writers) >= 2  # some cell was resumed by a second trial process


def test_storage_that_cannot_be_written_is_a_clear_error(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "faults.toml"
    spec.write_text(SPEC)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the results folder should go")
    assert study.main([str(spec), "--data", str(prepared), "--storage", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert "error: cannot write" in err and str(blocker) in err


def test_a_full_disk_never_corrupts_the_results_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "results.parquet"
    good = pa.table({"cell_id": ["a", "b"], "test_mAP": [0.5, 0.6]})
    parquet.write_table_atomic(good, path)

    def disk_full(table: pa.Table, where: str) -> None:
        Path(where).write_bytes(b"PAR1 half a file")
        raise OSError(errno.ENOSPC, "No space left on device", where)

    monkeypatch.setattr(parquet.pq, "write_table", disk_full)
    with pytest.raises(OSError, match="No space left"):
        parquet.write_table_atomic(pa.table({"cell_id": ["c"], "test_mAP": [0.7]}), path)
    monkeypatch.undo()
    assert pq.read_table(path).equals(good)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.parquet"]


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_atomic_writes_follow_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    """results.parquet, spec.json, result.json and checkpoints go through these helpers:
    colleagues on a shared results folder read them like any other file the study writes."""
    old = os.umask(umask)
    try:
        parquet.write_table_atomic(pa.table({"x": [1]}), tmp_path / "results.parquet")
        parquet.write_json_atomic({"x": 1}, tmp_path / "spec.json")
        plain = tmp_path / "plain.txt"
        plain.write_text("any file")
    finally:
        os.umask(old)
    for name in ("results.parquet", "spec.json", "plain.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


@pytest.mark.slow
def test_two_drivers_on_one_storage_train_every_cell_once(prepared: Path, tmp_path: Path) -> None:
    """The same command started twice: a trial whose cell the other driver holds waits for
    it and skips it once finished, so both drivers end with every cell and none ran twice."""
    spec = tmp_path / "faults.toml"
    spec.write_text(SPEC)
    storage = tmp_path / "results"
    drivers = [_start(spec, prepared, storage, "--retries", "0") for _ in range(2)]
    codes = [d.wait(timeout=400) for d in drivers]
    assert codes == [0, 0], _log_tail(storage)  # 1 would mean a missing cell
    _check_complete_once(storage, {})
    for cell in _cells(storage).iterdir():
        writers = list((cell / "tb").glob("events.out.tfevents.*"))
        assert len(writers) == 1, cell.name  # one trainer process per cell, never two
    assert len(list((storage / "faults" / "tune").iterdir())) == 2  # two Tune runs
