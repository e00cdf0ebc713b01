"""Multi-node on one machine: `ray.cluster_utils.Cluster` with two GPU worker nodes (fake
GPUs), a CPU:0 head like cluster.yaml's; trials spread; a node lost mid-study."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from east_ray.ray_session import use_loopback
from east_ray.study import __main__ as study
from tests.release_fixtures import tiny_study


@pytest.fixture
def two_gpu_nodes() -> Iterator[tuple[Any, list[Any]]]:
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()  # this test needs its own cluster, not the shared local Ray
    use_loopback()  # every node of the test cluster on 127.0.0.1, as a local start is
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False}
    )
    nodes = [cluster.add_node(num_cpus=2, num_gpus=2) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
    yield cluster, nodes
    ray.shutdown()
    cluster.shutdown()


def _run(tmp_path: Path, prepared: Path, max_steps: int, *extra: str) -> int:
    spec = tmp_path / "multi.toml"
    spec.write_text(
        tiny_study(
            "multi",
            recipe=f"max_steps = {max_steps}\nearly_stop_patience = 100",
            resources="cpus_per_trial = 0.5\ngpus_per_trial = 0.5",
            regularizers='["none", "kd", "dcor", "cos_diff"]',
            stages='["final", "all"]',
        )
    )
    return study.main(
        [str(spec), "--data", str(prepared), "--storage", str(tmp_path / "results"), *extra]
    )


@pytest.mark.slow
def test_trials_spread_over_both_nodes_and_both_gpus(
    prepared: Path, tmp_path: Path, two_gpu_nodes: tuple[Any, list[Any]]
) -> None:
    _, nodes = two_gpu_nodes
    assert _run(tmp_path, prepared, 30) == 0
    runs = pd.read_parquet(tmp_path / "results" / "multi" / "results.parquet")
    runs = runs[runs["regularizer"] != "teacher_lr"]
    assert len(runs) == 6
    assert set(runs["node_id"]) == {n.node_id for n in nodes}  # never the CPU:0 head
    assert set(runs["gpu_ids"]) == {"0", "1"}  # half a GPU each, on both GPUs
    assert (runs["gpu_hours"] > 0).all()


@pytest.mark.slow
def test_losing_a_node_mid_study_loses_nothing(
    prepared: Path, tmp_path: Path, two_gpu_nodes: tuple[Any, list[Any]]
) -> None:
    cluster, nodes = two_gpu_nodes
    cells = tmp_path / "results" / "multi" / "cells"
    removed: list[float] = []

    def remove_a_node_once_trials_checkpoint() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            midway = (
                [
                    p
                    for p in cells.glob("*/checkpoint.pt")
                    if not (p.parent / "result.json").exists()
                ]
                if cells.is_dir()
                else []
            )
            if len(midway) >= 2:
                cluster.remove_node(nodes[0])
                removed.append(time.monotonic())
                return
            time.sleep(0.1)

    killer = threading.Thread(target=remove_a_node_once_trials_checkpoint, daemon=True)
    killer.start()
    assert _run(tmp_path, prepared, 80, "--retries", "3") == 0
    killer.join()
    assert removed, "the node was never removed: the study finished too fast to test"
    runs = pd.read_parquet(tmp_path / "results" / "multi" / "results.parquet")
    runs = runs[runs["regularizer"] != "teacher_lr"]
    assert len(runs) == 6 and runs["test_mAP"].notna().all()
    assert len(list(cells.glob("*/result.json"))) == 6
