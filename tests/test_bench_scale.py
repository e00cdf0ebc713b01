"""bench.scale's pieces on a tiny dataset: the random dataset is a prepared dataset the
openmic-featured study accepts, and one size's figures (the study run in this process,
sampled by the benchmark's sampler) have the structure, signs and order the report relies
on; growth, targets and the table from given figures. No timing target is asserted."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from bench import scale
from east_ray.config import load_study
from east_ray.study.__main__ import main as study_main
from east_ray.study.data_source import is_prepared


def test_random_logmels_are_finite_float16() -> None:
    spec = load_study(scale.SPEC)
    mels = scale.random_logmels(2, spec.features, seed=0)
    assert mels.dtype == np.float16 and mels.shape == (2, 128, 1000)
    assert np.isfinite(mels).all() and np.abs(mels).max() < 2 and mels.std() > 0.1


def _in_process(data: Path, storage: Path, log: Path) -> tuple[float, scale.Samples]:
    """The study in this process (the driver is this process; its local Ray runs under it)."""
    started = time.monotonic()
    argv = [str(scale.SPEC), "--data", str(data), "--storage", str(storage)]
    with scale.Sampler(os.getpid(), storage / "scale" / "cells", started) as sampler:
        assert study_main([*argv, "--max-concurrent", "2", "--retries", "0"]) == 0
    return time.monotonic() - started, sampler.samples


@pytest.mark.slow
def test_figures_of_one_size(tmp_path: Path, ray_local: None) -> None:
    spec = load_study(scale.SPEC)
    openmic = load_study("openmic")
    assert spec.features == openmic.features  # the datasets carry the shipped features
    size = scale.measure(64, spec, tmp_path, _in_process)

    assert is_prepared(openmic, tmp_path / "data")  # the study's own check of meta.json
    assert size["clips"] == 64 == sum(size["counts"].values())
    assert size["counts"]["train"] > size["counts"]["test"] > size["counts"]["valid"] > 0
    assert size["data_mib"] == pytest.approx(64 * 128 * 1000 * 2 / 2**20)
    assert size["samples"] > 0
    assert 0 < size["first_trial_start_s"] < size["study_s"]
    trials = size["trials"]
    assert len(trials) == 2  # two cells, two at a time
    for t in trials:
        assert 0 < t["rss_anon_at_start_mib"] <= t["rss_anon_mib"]
        assert t["rss_shmem_mib"] > 0  # the trial maps object-store pages
        assert 0 < t["startup_s"] < size["first_trial_start_s"]
    assert size["trial_rss_anon_mib"] == max(t["rss_anon_mib"] for t in trials)
    assert size["trial_startup_s"] == max(t["startup_s"] for t in trials)
    assert 0 < size["driver_beyond_store_mib"] <= size["driver_peak_rss_mib"]
    # the blocks are in the store (which keeps its peak pages: a high-water mark)
    assert size["data_mib"] <= size["object_store_mib"] <= size["object_store_capacity_mib"]
    assert size["eval_clips"] == size["counts"]["test"] and size["eval_s_per_1000"] > 0


def _size(clips: int, **figures: float) -> dict[str, float]:
    base = {key: 1.0 for key, _, _ in scale.FIGURES}
    return {**base, "clips": clips, "object_store_per_data": 1.0, **figures}


def test_growth_targets_and_table() -> None:
    sizes = [
        _size(100, data_mib=10, trial_rss_anon_mib=500, first_trial_start_s=20),
        _size(400, data_mib=40, trial_rss_anon_mib=502, first_trial_start_s=150),
    ]
    growth = scale.growth(sizes)
    assert set(growth) == {key for key, _, _ in scale.FIGURES}
    assert growth["data_mib"] == [4.0] and growth["trial_rss_anon_mib"] == [pytest.approx(1.004)]
    met = {t["target"].split(":")[0]: t["met"] for t in scale.targets(sizes)}
    assert sum(met.values()) == 2  # private slope 2/30 and a 150 s start miss
    assert not met["trial private memory does not grow with data"]
    result = {"date": "d", "host": "h", "seconds": 1.0, "load_before": [1], "load_after": [1]}
    table = scale.summary(
        {**result, "sizes": sizes, "growth": growth, "targets": scale.targets(sizes)}
    )
    assert "| 100 clips | 400 clips | ×4 clips | expected |" in table
    assert "| **no** |" in table
    assert len(table.splitlines()) == 4 + len(scale.FIGURES) + 3 + 4


def test_check_disk_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--workdir"):
        scale.check_disk(tmp_path, 10**18)
    scale.check_disk(tmp_path, 1)
