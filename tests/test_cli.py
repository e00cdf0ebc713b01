"""The one error convention of the command lines (east_ray.cli) and the install check."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

import pytest

from east_ray import check_install, cli
from east_ray.data import parquet
from east_ray.errors import UnknownNameError
from east_ray.study import __main__ as study
from east_ray.study import driver

LIBRARY = "Could not load this library: /venv/site-packages/torchaudio/lib/libtorchaudio.so"


def _raise(exc: BaseException) -> Callable[..., None]:
    def fail(*args: object, **kwargs: object) -> None:
        raise exc

    return fail


def test_library_load_failure_in_a_study_is_not_called_a_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(driver, "init_ray", _raise(OSError(LIBRARY)))
    # the demo's portable CPU kernels cannot be set in a process that already ran torch
    monkeypatch.setattr(driver, "use_cpu_numerics", lambda choice: {})
    storage = tmp_path / "results"
    assert study.main(["demo", "--storage", str(storage), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cannot write" not in err
    last = err.splitlines()[-1]
    assert last.startswith(f"error: {LIBRARY}") and "east_ray.check_install" in last


def test_missing_input_is_named_with_its_own_message(tmp_path: Path) -> None:
    missing = tmp_path / "data" / "meta.json"
    exc = FileNotFoundError(errno.ENOENT, "No such file or directory", str(missing))
    message = cli.describe(exc, outputs=[tmp_path / "results"])
    assert message == f"{missing}: No such file or directory"


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.ENOTDIR])
def test_errors_under_an_output_folder_are_write_errors(tmp_path: Path, code: int) -> None:
    target = tmp_path / "results" / "demo" / "spec.json"
    exc = OSError(code, "reason", str(target))
    assert cli.describe(exc, outputs=[tmp_path / "results"]) == f"cannot write {target}: reason"


def test_pyarrow_write_errors_name_the_destination(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pyarrow raises OSError without a filename; the CLI needs one to say where
    monkeypatch.setattr(parquet.pq, "write_table", _raise(OSError("Error writing bytes")))
    path = tmp_path / "results.parquet"
    with pytest.raises(OSError) as info:
        parquet.write_table_atomic(parquet.pa.table({"x": [1]}), path)
    assert info.value.filename == str(path)
    assert cli.describe(info.value, outputs=[tmp_path]).startswith(f"cannot write {path}")


def test_user_errors_exit_2_and_bugs_keep_their_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    unknown = UnknownNameError("unknown teacher 'x'; known: a, b")
    assert cli.run_command(_raise(unknown)) == 2
    assert capsys.readouterr().err == "error: unknown teacher 'x'; known: a, b\n"
    with pytest.raises(ValueError, match="a bug"):  # not a UserError: a bug, with traceback
        cli.run_command(_raise(ValueError("a bug")))
    native = ImportError("libtorch_cpu.so: undefined symbol: foo")
    assert cli.run_command(_raise(native)) == 2
    assert "east_ray.check_install" in capsys.readouterr().err
    with pytest.raises(ImportError, match="No module named"):
        cli.run_command(_raise(ModuleNotFoundError("No module named 'typo'")))
    with pytest.raises(RuntimeError, match="a bug"):
        cli.run_command(_raise(RuntimeError("a bug")))


def test_install_check_names_the_broken_package(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = dict(check_install.CHECKS, torchaudio=_raise(OSError(LIBRARY)))
    monkeypatch.setattr(check_install, "CHECKS", broken)
    assert check_install.main([]) == 2
    err = capsys.readouterr().err
    version = check_install._version("torchaudio")
    assert f"torchaudio {version}: OSError: {LIBRARY}" in err
    assert "make clean install" in err and "torch " not in err.split("\n")[1]


def test_every_compiled_library_of_this_environment_loads() -> None:
    assert check_install.check() == []
