"""The layer contract in pyproject.toml holds, and it catches an import that breaks it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(package_parent: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run(
        [str(LINT), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=package_parent,
    )


def test_the_package_keeps_its_layers() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("train/trainer.py", "import ray", "training imports no Ray"),
        ("config/spec.py", "import east_ray.models", "a spec loads without torch or Ray"),
        (
            "data/parquet.py",
            "import east_ray.train.trainer",
            "layers: study > results, tables > train",
        ),
        (
            "train/trainer.py",
            "import east_ray.analysis.results",
            "layers: study > results, tables > train",
        ),
        (
            "analysis/results.py",
            "import east_ray.study.store",
            "layers: study > results, tables > train",
        ),
        ("analysis/results.py", "import torch", "the analysis API imports no torch or Ray"),
        ("analysis/stats.py", "import pandas", "the statistics import no pandas, pyarrow, torch"),
        ("analysis/metrics.py", "import east_ray.data", "layers: study > results, tables > train"),
        (
            "data/scores.py",
            "import east_ray.analysis.tables",
            "layers: study > results, tables > train",
        ),
        (
            "catalog/teachers.py",
            "import east_ray.config",
            "layers: study > results, tables > train",
        ),
        ("catalog/regularizers.py", "import east_ray.losses", "a spec loads without torch or Ray"),
    ],
)
def test_a_wrong_import_breaks_the_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    shutil.copytree(ROOT / "east_ray", tmp_path / "east_ray")
    path = tmp_path / "east_ray" / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    result = _lint(tmp_path)
    assert result.returncode == 1
    assert f"{contract}" in result.stdout and "BROKEN" in result.stdout
