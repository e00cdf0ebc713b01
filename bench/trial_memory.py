"""A trial's private memory for the spectrograms: Ray object-store blocks viewed in place
(`BlockStore`, what trials do) beside each block's chunks joined into one array (what
`BlockStore` did before: a private copy of the whole dataset in every trial process).

Each measurement runs in a Ray worker process and reports how much that process's
private (`RssAnon`) and shared (`RssShmem`) resident memory grew while it built its store
over OpenMIC-shaped blocks (128 × 1000 float16 log-mels, 4 chunks per block, as Parquet
row groups give).

    .venv/bin/python -m bench.trial_memory [--clips 2000]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import pyarrow as pa
import ray

from bench import local_ray, memory_kib
from east_ray.data.parquet import column_numpy, tensor_array

CHUNKS_PER_BLOCK = 4


def _resident_mib() -> dict[str, int]:
    kib = memory_kib()
    return {key: kib[key] // 1024 for key in ("RssAnon", "RssShmem")}


@ray.remote
def _store_growth(refs: list[Any], joined: bool) -> dict[str, int]:
    from east_ray.train.data import BlockStore

    before = _resident_mib()
    tables = ray.get(refs)
    held = [column_numpy(t["logmel"]) for t in tables] if joined else BlockStore(tables)
    after = _resident_mib()
    del held
    return {key: after[key] - before[key] for key in after}


def run(clips: int) -> dict[str, Any]:
    local_ray()
    rng = np.random.default_rng(0)
    chunk = max(1, clips // (2 * CHUNKS_PER_BLOCK))
    refs = []
    for b in range(2):
        parts = [
            tensor_array(rng.random((chunk, 128, 1000), dtype=np.float32).astype(np.float16))
            for _ in range(CHUNKS_PER_BLOCK)
        ]
        ids = [f"{b}-{i}" for i in range(chunk * CHUNKS_PER_BLOCK)]
        refs.append(ray.put(pa.table({"clip_id": ids, "logmel": pa.chunked_array(parts)})))
    data_mib = 2 * CHUNKS_PER_BLOCK * chunk * 128 * 1000 * 2 // 2**20
    views = ray.get(_store_growth.remote(refs, False))
    joined = ray.get(_store_growth.remote(refs, True))
    return {
        "clips": 2 * CHUNKS_PER_BLOCK * chunk,
        "data_mib": data_mib,
        "views": views,
        "joined": joined,
        "private_per_data_views": views["RssAnon"] / data_mib,
        "private_per_data_joined": joined["RssAnon"] / data_mib,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=2000)
    print(json.dumps(run(parser.parse_args().clips), indent=1))


if __name__ == "__main__":
    main()
