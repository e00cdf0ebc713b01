"""Benchmarks: ratios measured side by side in one run (not timed tests)."""

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from east_ray.data.parquet import write_text_atomic

# the reference a trainer step is compared with (also `--estimate`'s calibration step)
from east_ray.train.calibrate import bare_step

__all__ = ["RESULTS", "bare_step", "local_ray", "memory_kib", "save_result", "timed"]

RESULTS = Path(__file__).resolve().parent / "results"


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
