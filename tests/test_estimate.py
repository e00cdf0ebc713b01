"""`--dry-run --estimate`: step budgets, benchmark figures at the spec's packing, and the
command's output."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from east_ray.config import Resources, expand_cells, load_study
from east_ray.study import __main__ as study
from east_ray.study.estimate import (
    EVAL_COST,
    Throughput,
    bench_throughput,
    device_hours,
    work,
)
from east_ray.train.calibrate import student_description
from tests.release_fixtures import tiny_study


def test_each_cell_counts_its_step_budget_and_the_evaluations_it_implies(tmp_path: Path) -> None:
    spec = load_study(_tiny(tmp_path, "max_steps = 10"))  # batch 4, fractions 1.0
    half = dataclasses.replace(expand_cells(spec)[0], fraction=0.5)
    counts = {"train": 30, "valid": 7, "test": 5}
    # 15 clips at fraction 0.5 → 4 steps an epoch (the last of 3 clips); 10 steps → 2 whole
    # epochs validated, the third cut by the cap and not validated (recipe.partial_epoch)
    w = work(spec, [half], counts, max_epochs=None)
    assert (w.steps, w.trained, w.evaluated) == (10, 40, 2 * 7 + 5)
    validate = dataclasses.replace(
        spec, recipe=dataclasses.replace(spec.recipe, partial_epoch="validate")
    )
    assert work(validate, [half], counts, max_epochs=None).evaluated == 3 * 7 + 5
    dropped = dataclasses.replace(spec, recipe=dataclasses.replace(spec.recipe, last_batch="drop"))
    assert work(dropped, [half], counts, max_epochs=1).steps == 3  # 15 // 4
    # --max-epochs 2 ends it after 8 steps
    w = work(spec, [half], counts, max_epochs=2)
    assert (w.steps, w.trained, w.evaluated) == (8, 32, 2 * 7 + 5)
    rate = Throughput(samples_per_s=2.0, trials=1, device="d", source="s", gpu=True)
    assert device_hours(w, rate) * 3600 == pytest.approx((32 + EVAL_COST * 19) / 2.0)


def _bench(path: Path, spec_description: str, single: float, packing: list[float]) -> None:
    path.write_text(
        json.dumps(
            {
                "device": "Test GPU",
                "students": {
                    "openmic": {
                        "student": spec_description,
                        "fp32": {"samples_per_s": single},
                        "bf16": {"samples_per_s": 2 * single},
                    }
                },
                "packing": [
                    {"trials": k + 1, "aggregate_samples_per_s": v} for k, v in enumerate(packing)
                ],
            }
        )
    )


def test_the_newest_benchmark_of_this_student_gives_the_rate_at_the_specs_packing(
    tmp_path: Path,
) -> None:
    spec = load_study("openmic")  # fp32, gpus_per_trial 0.25: 4 trials per GPU
    described = student_description(spec)
    _bench(tmp_path / "2026-01-01-a-gpu.json", described, 100.0, [110.0, 200.0])
    _bench(tmp_path / "2026-02-01-b-gpu.json", described, 300.0, [330.0, 600.0, 640.0, 660.0])
    rate = bench_throughput(spec, tmp_path)
    assert rate is not None and rate.gpu and rate.device == "Test GPU"
    assert rate.samples_per_s == pytest.approx(300.0 * 660.0 / 330.0)
    assert rate.source.startswith("2026-02-01-b-gpu.json, fp32")
    assert "no compiled figure" in rate.source  # a benchmark from before the compiled rows

    bf16 = dataclasses.replace(spec, recipe=dataclasses.replace(spec.recipe, precision="bf16"))
    two = dataclasses.replace(bf16, resources=Resources(cpus_per_trial=4, gpus_per_trial=0.5))
    rate = bench_throughput(two, tmp_path)
    assert rate is not None and rate.samples_per_s == pytest.approx(600.0 * 600.0 / 330.0)

    eight = dataclasses.replace(spec, resources=Resources(cpus_per_trial=1, gpus_per_trial=0.125))
    rate = bench_throughput(eight, tmp_path)  # more than was measured: the nearest row
    assert rate is not None and rate.samples_per_s == pytest.approx(300.0 * 660.0 / 330.0)
    assert "packing measured up to 4" in rate.source

    wider = dataclasses.replace(spec, student_options={"rho": 7, "base_channels": 64})
    assert bench_throughput(wider, tmp_path) is None  # another size: not this student's figure


def _compiled_bench(path: Path, spec_description: str, compiled: bool) -> None:
    """`bench.gpu`'s layout since the compiled rows: eager 100, compiled 250 samples/s (fp32),
    packing per student and compile setting (eager ×2 at 4 trials, compiled ×1.5)."""
    path.write_text(
        json.dumps(
            {
                "device": "Test GPU",
                "students": {
                    "magnatagatune": {
                        "student": spec_description,
                        "fp32": {"samples_per_s": 100.0, "compiled": 0.0},
                        "fp32_compiled": {"samples_per_s": 250.0, "compiled": float(compiled)},
                    }
                },
                "packing": {
                    "magnatagatune": {
                        setting: [
                            {"trials": k, "aggregate_samples_per_s": v}
                            for k, v in zip((1, 2, 4, 8), rates, strict=True)
                        ]
                        for setting, rates in (
                            ("off", (100.0, 160.0, 200.0, 210.0)),
                            ("reduce-overhead", (250.0, 330.0, 375.0, 380.0)),
                        )
                    }
                },
            }
        )
    )


@pytest.mark.parametrize("compiled", [True, False])
def test_a_compiling_recipe_is_priced_at_the_compiled_rows_when_they_compiled(
    tmp_path: Path, compiled: bool
) -> None:
    spec = load_study("magnatagatune")  # fp32, compile "auto", 4 trials per GPU
    _compiled_bench(tmp_path / "2026-03-01-h-gpu.json", student_description(spec), compiled)
    rate = bench_throughput(spec, tmp_path)
    assert rate is not None
    if compiled:
        assert rate.samples_per_s == pytest.approx(250.0 * 375.0 / 250.0)
        assert rate.source == "2026-03-01-h-gpu.json, fp32_compiled"
    else:  # the benchmark's compile fell back to eager: so would the trials'
        assert rate.samples_per_s == pytest.approx(100.0 * 200.0 / 100.0)
        assert rate.source.startswith("2026-03-01-h-gpu.json, fp32; the trials compile, no")
    eager = dataclasses.replace(spec, recipe=dataclasses.replace(spec.recipe, compile="off"))
    rate = bench_throughput(eager, tmp_path)
    assert rate is not None and rate.samples_per_s == pytest.approx(100.0 * 200.0 / 100.0)
    assert rate.source == "2026-03-01-h-gpu.json, fp32"


def test_dry_run_estimate_prints_each_part_and_estimate_needs_dry_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _tiny(tmp_path, "max_steps = 20")
    args = [str(spec), "--data-root", str(tmp_path / "none"), "--storage", str(tmp_path / "r")]
    assert study.main([*args, "--estimate"]) == 2
    assert "--estimate: only with --dry-run" in capsys.readouterr().err
    # an OpenMIC-layout study without a prepared dataset: the published clip counts, and
    # (no benchmark of this tiny student) a few steps measured on this CPU
    assert study.main([*args, "--dry-run", "--estimate"]) == 0
    out = capsys.readouterr().out
    assert "clips train/valid/test 12,692/2,223/5,085 (the release's published" in out
    assert "at most 60 training steps (240 samples)" in out  # 3 cells × 20 steps × batch 4
    assert "CPU-hours on this machine" in out and "this machine's CPU (measured here" in out
    assert not (tmp_path / "r").exists()  # a dry run writes nothing


def test_dry_run_marks_finished_cells_and_estimates_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _tiny(tmp_path, "max_steps = 20")
    storage = tmp_path / "r"
    args = [str(spec), "--data-root", str(tmp_path / "none"), "--storage", str(storage)]
    first = expand_cells(load_study(spec))[0]
    result = storage / "tiny" / "cells" / first.cell_id / "result.json"
    result.parent.mkdir(parents=True)
    result.write_text("{}")
    before = sorted(p.name for p in storage.rglob("*"))
    assert study.main([*args, "--dry-run", "--estimate"]) == 0
    out = capsys.readouterr().out
    (line,) = [row for row in out.splitlines() if row.startswith(first.cell_id)]
    assert line.endswith("yes")
    assert sum(row.endswith("  -") for row in out.splitlines()) == 2
    assert "3 cells in study 'tiny' (none: 1, kd: 1, dcor: 1); 1 done, 2 to run" in out
    assert "at most 40 training steps (160 samples)" in out  # the 2 cells left × 20 steps
    assert sorted(p.name for p in storage.rglob("*")) == before  # a dry run writes nothing


def _tiny(tmp_path: Path, recipe: str) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(tiny_study("tiny", recipe=recipe))
    return path


def test_the_estimate_reads_the_benchmarks_of_the_folder_it_is_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command reads `--bench-results`, not a folder of the package's source tree."""
    spec_path = _tiny(tmp_path, "max_steps = 20")
    bench = tmp_path / "my-benchmarks"
    bench.mkdir()
    _bench(bench / "2026-04-01-x-gpu.json", student_description(load_study(spec_path)), 50.0, [])
    args = [str(spec_path), "--data-root", str(tmp_path / "none"), "--dry-run", "--estimate"]
    assert study.main([*args, "--bench-results", str(bench)]) == 0
    assert "2026-04-01-x-gpu.json, fp32" in capsys.readouterr().out
    assert study.main([*args, "--bench-results", str(tmp_path / "empty")]) == 0
    assert "CPU-hours on this machine" in capsys.readouterr().out
