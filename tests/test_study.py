"""`python -m east_ray.study` end to end on a tiny prepared dataset with local Ray Tune."""

from __future__ import annotations

import contextlib
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from east_ray.study import __main__ as study
from east_ray.teachers.embeddings import extract_teacher
from tests.release_fixtures import tiny_study
from tests.test_tensorboard import _plugin_routes, _post


def _write(path: Path, lams: str) -> Path:
    path.write_text(tiny_study("tiny", recipe="max_steps = 12", lams=lams))
    return path


def _result_times(storage: Path) -> dict[str, float]:
    return {
        p.parent.name: p.stat().st_mtime_ns
        for p in (storage / "tiny" / "cells").glob("*/result.json")
    }


def _contents(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `root` with its bytes and mode; and every folder."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"", p.stat().st_mode)
        for p in root.rglob("*")
    }


def _set_writable(root: Path, writable: bool) -> None:
    """Give or take every write permission under `root`, `root` included."""
    for path in [*root.rglob("*"), root]:
        mode = path.stat().st_mode
        path.chmod(mode | 0o200 if writable else mode & ~0o222)


def _tree(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every file and folder under `root` with its size, mode and modification time."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mode, p.stat().st_mtime_ns)
        for p in root.rglob("*")
    }


def test_read_only_commands_on_empty_storage_create_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _write(tmp_path / "tiny.toml", "0.5")
    storage = tmp_path / "results"
    assert study.main([str(spec), "--storage", str(storage), "--dry-run"]) == 0
    assert study.main([str(spec), "--storage", str(storage), "--tables-only"]) == 2
    err = capsys.readouterr().err
    assert f"{storage / 'tiny' / 'results.parquet'}: no stored results" in err
    assert not storage.exists()


@contextlib.contextmanager
def _meta_reads(prepared: Path) -> Iterator[list[str]]:
    """The stacks of this process's reads of `prepared`'s meta.json while the block runs."""
    reads: list[str] = []
    read_text = Path.read_text

    def counting(self: Path, *args: Any, **kwargs: Any) -> str:
        if self == prepared / "meta.json":
            reads.append("".join(traceback.format_stack(limit=4)[:-1]))
        return read_text(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Path, "read_text", counting)
        yield reads


@pytest.mark.slow
def test_study_runs_resumes_adds_cells_and_refuses_another_recipe(
    prepared: Path, tmp_path: Path, ray_local: None, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _write(tmp_path / "tiny.toml", "0.5")
    storage = tmp_path / "results"
    args = [str(spec), "--data", str(prepared), "--storage", str(storage)]
    # A prepared dataset with its teacher extracted is only read: every run below (fits,
    # resumes, more cells, a damaged result) leaves it byte for byte as it was, so it can
    # be shared or read-only.
    extract_teacher(prepared, "handcrafted", pretrained=False)
    _set_writable(prepared, False)  # for root, who may write anyway, the byte check below
    dataset = _contents(prepared)
    with _meta_reads(prepared) as reads:
        assert study.main(args) == 0
    # The driver reads the prepared meta.json to plan, to open the dataset for every stage
    # below, and in the teacher's extraction; the Teacher_LR fit and the trials' arrays
    # read the opened dataset.
    assert len(reads) == 3, reads
    err = capsys.readouterr().err  # status lines are log messages, on stderr
    assert "3 cells in study 'tiny'" in err and "3 to run" in err
    assert f"tensorboard --logdir {storage / 'tiny'}" in err
    results = pd.read_parquet(storage / "tiny" / "results.parquet")
    assert sorted(results["regularizer"]) == ["dcor", "kd", "none", "teacher_lr"]
    assert results["test_mAP"].notna().all()
    for name in ("tables.md", "tables.tex"):
        assert "EAsT_Final" in (storage / "tiny" / name).read_text()
    # Every cell's test scores, written before its result.json; the Teacher_LR fit's copy.
    for result in (storage / "tiny" / "cells").glob("*/result.json"):
        scores = result.with_name("test_scores.parquet")
        assert scores.stat().st_mtime_ns <= result.stat().st_mtime_ns
    (lr,) = results.loc[results["regularizer"] == "teacher_lr", "cell_id"]
    lr_scores = storage / "tiny" / "teacher_lr" / lr / "test_scores.parquet"
    copied = lr_scores.stat().st_mtime_ns
    # The tables: the bootstrap CI (one seed) in every cell, and what "[ ]" and "†" mean.
    markdown = (storage / "tiny" / "tables.md").read_text()
    assert "[95% percentile bootstrap CI], test clips and seeds resampled, B = 1000" in markdown
    assert "† differs from the Baseline at this fraction, paired bootstrap" in markdown
    assert "after Holm's correction over the 3 comparisons of its column" in markdown
    first_table = markdown.split("\n\n")[1].splitlines()[2:]  # after the title and header
    assert len(first_table) == 4 and all(row.count(" [0.") == 2 for row in first_table)
    events = list((storage / "tiny" / "cells").glob("*/tb/events.out.tfevents.*"))
    assert len(events) == 3
    # TensorBoard's HParams view shows the study's axes: Tune's own logger, which would
    # add an experiment per trial over Tune's config keys, writes nothing.
    assert not list((storage / "tiny" / "tune").rglob("events.out.tfevents.*"))
    routes = _plugin_routes(storage / "tiny")
    experiment = _post(routes, "/experiment", {"experimentName": ""})
    assert {"system", "teacher", "lam"} <= {i["name"] for i in experiment["hparamInfos"]}
    assert experiment["metricInfos"][0]["name"]["tag"] == "final/test_mAP"
    first = _result_times(storage)

    assert study.main(args) == 0  # finished: nothing runs, tables print again
    captured = capsys.readouterr()
    assert "3 cells already done, 0 to run" in captured.err and "EAsT_Final" in captured.out
    assert _result_times(storage) == first
    assert lr_scores.stat().st_mtime_ns == copied  # the same scores: not copied again

    _write(spec, "0.5, 0.8")  # two more cells (kd and dcor at λ 0.8)
    assert study.main(args) == 0
    assert "3 cells already done, 2 to run" in capsys.readouterr().err
    now = _result_times(storage)
    assert len(now) == 5 and all(now[c] == t for c, t in first.items())

    before = _tree(tmp_path)
    assert study.main([*args, "--tables-only"]) == 0  # read-only: prints, writes nothing
    out = capsys.readouterr().out
    assert "EAsT_Final" in out and "paired bootstrap" in out and " [0." in out
    assert study.main([*args, "--dry-run"]) == 0
    assert _tree(tmp_path) == before

    # A damaged result.json: set aside, the cell re-evaluated from its last checkpoint.
    rows = pd.read_parquet(storage / "tiny" / "results.parquet").set_index("cell_id")
    damaged = next(iter(first))
    result = storage / "tiny" / "cells" / damaged / "result.json"
    result.write_text(result.read_text()[:40])
    assert study.main(args) == 0
    assert "4 cells already done, 1 to run" in capsys.readouterr().err
    assert len(list(result.parent.glob("_result.json.corrupt-*"))) == 1
    again = pd.read_parquet(storage / "tiny" / "results.parquet").set_index("cell_id")
    assert again.loc[damaged, "test_mAP"] == rows.loc[damaged, "test_mAP"]
    assert again.loc[damaged, "epochs"] == rows.loc[damaged, "epochs"]  # no epoch trained

    assert _contents(prepared) == dataset
    _set_writable(prepared, True)
    assert (storage / "tiny" / "teacher_lr_fits" / "handcrafted").is_dir()  # its fits

    spec.write_text(spec.read_text().replace("max_steps = 12", "max_steps = 13"))
    assert study.main(args) == 2
    err = capsys.readouterr().err
    assert "recipe: the results in" in err and "use another --storage folder" in err
    _dashboard_lists_the_runs(storage / "tiny" / "optuna.journal", runs=3, trials=[3, 2, 1])


def _dashboard_lists_the_runs(journal: Path, runs: int, trials: list[int]) -> None:
    """`optuna-dashboard <journal>` (the README's command) serves the study's journal: one
    Optuna study per Tune run, each with its trials."""
    import json
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exe = Path(sys.executable).parent / "optuna-dashboard"
    cmd = [str(exe), str(journal), "--host", "127.0.0.1", "--port", str(port), "--quiet"]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}/api/studies"
        for _ in range(100):
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    studies = json.load(response)["study_summaries"]
                break
            except OSError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                time.sleep(0.1)
        else:
            raise AssertionError(f"optuna-dashboard did not answer on {url}")
        assert len(studies) == runs and all(
            s["study_name"].startswith("tiny-run-") for s in studies
        )
        counts = []
        for s in studies:
            with urllib.request.urlopen(f"{url}/{s['study_id']}", timeout=5) as response:
                listed = json.load(response)["trials"]
            counts.append(len(listed))
            # a trial resumed from its last checkpoint (the damaged result) reports too
            assert [t["state"] for t in listed] == ["Complete"] * len(listed), listed
        assert sorted(counts, reverse=True) == trials
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.slow
def test_tpe_search_tunes_lambda_per_cell_within_budget(
    prepared: Path, tmp_path: Path, ray_local: None, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _write(tmp_path / "tiny.toml", "0.5")
    storage = tmp_path / "results"
    args = [
        str(spec),
        "--data",
        str(prepared),
        "--storage",
        str(storage),
        "--search",
        "tpe",
        "--budget",
        "2",
        "--max-epochs",
        "1",
    ]
    assert study.main(args) == 0
    assert "5 trials to run for 3 cells" in capsys.readouterr().err
    results = pd.read_parquet(storage / "tiny" / "results.parquet")
    runs = results[results["regularizer"] != "teacher_lr"]
    assert sorted(runs["regularizer"]) == ["dcor", "dcor", "kd", "kd", "none"]
    tuned = runs[runs["regularizer"] != "none"]["lam"]
    assert tuned.between(0.05, 0.95).all() and tuned.nunique() == 4
    assert study.main(args) == 0  # budget spent: nothing more runs
    assert "0 trials to run for 0 cells" in capsys.readouterr().err


def test_dataset_prepared_with_other_mel_settings_is_refused(
    prepared: Path, tmp_path: Path, ray_local: None, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _write(tmp_path / "tiny.toml", "0.5")
    spec.write_text(spec.read_text().replace("n_mels = 32", "n_mels = 40"))
    args = [str(spec), "--data", str(prepared), "--storage", str(tmp_path / "results")]
    assert study.main(args) == 2
    err = capsys.readouterr().err
    assert "features: the dataset was prepared with" in err and "'n_mels': 32" in err
    assert "'n_mels': 40" in err


def test_a_demo_dataset_prepared_with_the_old_validation_split_is_refused(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SynthMIC's validation split is now grouped by score: a folder prepared with the
    per-clip split is refused before anything runs, and kept."""
    spec = tmp_path / "tiny.toml"
    spec.write_text(tiny_study("tiny", dataset="synthmic"))
    before = _tree(prepared)
    args = [str(spec), "--data", str(prepared), "--storage", str(tmp_path / "results")]
    assert study.main(args) == 2
    err = capsys.readouterr().err
    assert "valid_split: the dataset was prepared with {'fraction': 0.3, 'rule': 'seeded'" in err
    assert "'by_group': True" in err and f"remove {prepared}" in err
    assert _tree(prepared) == before and not (tmp_path / "results").exists()


def test_a_failed_trial_releases_its_cell_for_the_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trial that fails while building its data (before training) must not keep the
    cell's lock: Tune retries it in the same, reused actor process."""
    from east_ray.config import expand_cells, load_study
    from east_ray.study import tune

    spec = load_study(_write(tmp_path / "tiny.toml", "0.5"))
    cell = expand_cells(spec)[0]
    part = tune.Shared(spec, {cell.cell_id: cell}, str(tmp_path), 20, None, [], {}, {}, None)  # type: ignore[arg-type]
    shared = {spec.name: part}
    config = {"cell_id": tune.trial_key(spec.name, cell.cell_id)}
    attempts: list[int] = []

    def build_then_train(cell_: object, shared_: object, run_dir: Path) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("the object store lost a block")
        (run_dir / "result.json").write_text(f'{{"cell_id": "{run_dir.name}"}}')

    monkeypatch.setattr(tune, "_train_cell", build_then_train)
    with pytest.raises(OSError, match="lost a block"):
        tune.run_trial(config, shared)
    retry = threading.Thread(target=tune.run_trial, args=(config, shared))
    retry.start()
    retry.join(timeout=10)
    assert not retry.is_alive(), "the retry waits for a lock its own process still holds"
    assert len(attempts) == 2
    assert (tmp_path / "cells" / cell.cell_id / "result.json").is_file()


def test_a_result_that_is_not_a_run_result_is_set_aside(tmp_path: Path) -> None:
    from east_ray.study.store import read_result

    run_dir = tmp_path / "cells" / "none-frac1-seed0-0123abcd"
    run_dir.mkdir(parents=True)
    (run_dir / "result.json").write_text(f'{{"cell_id": "{run_dir.name}"}}')  # no metrics
    assert read_result(run_dir) is None
    assert [p.name.split(".corrupt-")[0] for p in run_dir.iterdir()] == ["_result.json"]


def test_an_added_extra_system_joins_a_results_folder_and_a_changed_one_is_refused(
    tmp_path: Path,
) -> None:
    import dataclasses
    import json

    from east_ray.config import SpecError, load_study
    from east_ray.study.store import check_study_dir

    spec = load_study("openmic")
    check_study_dir(dataclasses.replace(spec, systems=()), tmp_path)  # an older folder
    check_study_dir(spec, tmp_path)  # the authors' baseline added: it joins
    stored = json.loads((tmp_path / "spec.json").read_text())
    assert stored["systems"] == {
        "Baseline (authors' config)": {
            "student_options": {"rho": 3},
            "recipe": {"early_stop_patience": 20},
        }
    }
    other = dataclasses.replace(spec.systems[0], recipe={"early_stop_patience": 30})
    with pytest.raises(SpecError, match=r"systems\.Baseline \(authors' config\): the results"):
        check_study_dir(dataclasses.replace(spec, systems=(other,)), tmp_path)


def test_a_results_folder_does_not_record_the_runtime_options(tmp_path: Path) -> None:
    """A folder written before `recipe.compile` existed has no such key, and a study may
    resume with compiling switched on or off: the results mean the same."""
    import dataclasses
    import json

    from east_ray.config import RUNTIME_OPTIONS, load_study
    from east_ray.study.store import check_study_dir

    spec = load_study("openmic")
    check_study_dir(spec, tmp_path)
    stored = json.loads((tmp_path / "spec.json").read_text())
    assert not set(RUNTIME_OPTIONS) & set(stored["recipe"])
    authors = spec.systems[0]
    extra = dataclasses.replace(authors, recipe={**authors.recipe, "compile": "off"})
    changed = dataclasses.replace(
        spec, recipe=dataclasses.replace(spec.recipe, compile="off"), systems=(extra,)
    )
    check_study_dir(changed, tmp_path)  # accepted
    assert json.loads((tmp_path / "spec.json").read_text()) == stored


def test_a_recipe_field_added_later_reads_as_its_default_in_an_older_folder(
    tmp_path: Path,
) -> None:
    """A folder written before `recipe.early_stop` existed trained as its default says:
    it resumes under the default and is refused under another value."""
    import dataclasses
    import json

    from east_ray.config import SpecError, load_study
    from east_ray.study.store import check_study_dir

    spec = load_study("openmic")
    check_study_dir(spec, tmp_path)
    path = tmp_path / "spec.json"
    stored = json.loads(path.read_text())
    del stored["recipe"]["early_stop"]
    path.write_text(json.dumps(stored))
    check_study_dir(spec, tmp_path)  # accepted
    off = dataclasses.replace(spec, recipe=dataclasses.replace(spec.recipe, early_stop="off"))
    with pytest.raises(SpecError, match=r"recipe: the results .* were made with"):
        check_study_dir(off, tmp_path)


@pytest.mark.slow
def test_a_study_of_two_datasets_is_one_tune_run_with_tables_per_dataset(
    prepared: Path, tmp_path: Path, ray_local: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.release_fixtures import prepared_mtat

    data_root = tmp_path / "data"
    data_root.mkdir()
    prepared.rename(data_root / "openmic")
    prepared_mtat(tmp_path / "mtat").rename(data_root / "magnatagatune")
    common = {"recipe": "max_steps = 8", "regularizers": '["none", "dcor"]'}
    (tmp_path / "om.toml").write_text(tiny_study("om", **common))
    # the same student on both, so the fixture's 32 mel bands serve both datasets
    (tmp_path / "tt.toml").write_text(tiny_study("tt", dataset="magnatagatune", **common))
    both = tmp_path / "both.toml"
    both.write_text('name = "both"\nincludes = ["om.toml", "tt.toml"]\n')
    storage = tmp_path / "results"
    args = [str(both), "--data-root", str(data_root), "--storage", str(storage)]

    assert study.main([*args, "--dry-run"]) == 0
    assert "4 cells in study 'both'" in capsys.readouterr().out

    assert study.main(args) == 0
    captured = capsys.readouterr()
    assert "0 cells already done, 4 to run" in captured.err
    runs = list((storage / "both" / "tune").glob("run-*"))
    assert len(runs) == 1, runs  # one Tune run for both datasets
    for part, dataset, metric in (("om", "openmic", "F1"), ("tt", "magnatagatune", "ROC-AUC")):
        results = pd.read_parquet(storage / part / "results.parquet")
        assert set(results["dataset"]) == {dataset}
        assert sorted(results["regularizer"]) == ["dcor", "none", "teacher_lr"]
        assert f"· {metric}" in (storage / part / "tables.md").read_text()
        assert f"{part}: test mAP / {metric}" in captured.out

    assert study.main([*args, "--tables-only"]) == 0
    out = capsys.readouterr().out
    assert "om: test mAP / F1" in out and "tt: test mAP / ROC-AUC" in out
    assert study.main([*args, "--data", str(data_root / "openmic")]) == 2
    assert "--data: study 'both' spans the datasets magnatagatune, openmic" in (
        capsys.readouterr().err
    )
