"""The README's Python examples run as written, on a study folder made here."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from east_ray.config import load_study
from tests.test_reference import _fabricate

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_every_readme_python_example_runs(tmp_path: Path) -> None:
    blocks = _python_blocks()
    assert blocks, "README.md: no ```python block found"
    study_dir = tmp_path / "results" / "openmic"
    study_dir.mkdir(parents=True)
    _fabricate(load_study("openmic"), study_dir)
    for block in blocks:
        folders = set(re.findall(r'"(results/[^"]+)"', block))
        code = block
        for folder in folders:  # the example's study folder → the one made here
            code = code.replace(f'"{folder}"', repr(str(study_dir)))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, str(README), "exec"), {})
        printed = out.getvalue()
        assert "EAsT_Final" in printed and "Baseline" in printed
