"""TensorBoard's HParams view of a study, read back through TensorBoard's own HParams plugin
(the HTTP routes its frontend calls): the study's axes are the columns marked as varying,
so the frontend shows them by default; seeds print as integers; Teacher_LR fits are rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from torch.utils.tensorboard import SummaryWriter

from east_ray.config import expand_cells, load_study
from east_ray.study.driver import write_hparams_view
from east_ray.train.result import TeacherLRFit
from east_ray.train.tensorboard import cell_hparams, final_metrics, write_session

TEST = {"mAP": 0.5, "ROC-AUC": 0.7, "F1": 0.3, "F1_pos": 0.2}


def _plugin_routes(logdir: Path) -> dict[str, Any]:
    from tensorboard.backend.event_processing import data_provider
    from tensorboard.backend.event_processing import plugin_event_multiplexer as pem
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import hparams_plugin
    from tensorboard.plugins.scalar import scalars_plugin

    multiplexer = pem.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    context = base_plugin.TBContext(
        logdir=str(logdir), multiplexer=multiplexer, data_provider=provider
    )
    context.plugin_name_to_instance = {"scalars": scalars_plugin.ScalarsPlugin(context)}
    return dict(hparams_plugin.HParamsPlugin(context).get_plugin_apps())


def _post(routes: dict[str, Any], route: str, body: dict[str, Any]) -> Any:
    from werkzeug.test import Client
    from werkzeug.wrappers import Response

    response = Client(routes[route], Response).post(
        route, data=json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return json.loads(response.get_data(as_text=True))


def _fit(teacher: str, seed: int) -> TeacherLRFit:
    return TeacherLRFit(
        teacher=teacher,
        teacher_framing="start",
        fraction=1.0,
        seed=seed,
        recipe={},
        epochs=3,
        steps=30,
        best_epoch=2,
        train_clips=100,
        data="fingerprint",
        logits="logits.parquet",
        test_scores="test_scores.parquet",
        valid={**TEST, "mAP": 0.45},
        test={**TEST, "mAP": 0.4},
    )


@pytest.fixture(scope="module")
def demo_view(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, int]:
    """The demo study's HParams as TensorBoard serves them: its cells' sessions as the
    trainer writes them, the study's experiment summary and its Teacher_LR fits."""
    study_dir = tmp_path_factory.mktemp("demo")
    spec = load_study("demo")
    cells = expand_cells(spec)
    for cell in cells:
        writer = SummaryWriter(str(study_dir / "cells" / cell.cell_id / "tb"))
        writer.add_scalar("loss/total", 1.0, 0)
        write_session(writer, cell_hparams(cell), final_metrics(TEST, 0.55))
        writer.close()
    fits = [_fit("musicnn", seed) for seed in spec.grid.seeds]
    write_hparams_view(study_dir, cells, fits, spec)
    routes = _plugin_routes(study_dir)
    experiment = _post(routes, "/experiment", {"experimentName": ""})
    everything = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
    groups = _post(
        routes,
        "/session_groups",
        {"startIndex": 0, "sliceSize": 1000, "allowedStatuses": everything, "colParams": []},
    )
    return experiment, groups, len(cells) + len(fits)


def test_the_study_axes_are_the_columns_tensorboard_shows(demo_view: Any) -> None:
    experiment, _, _ = demo_view
    infos = experiment["hparamInfos"]
    varying = [i["name"] for i in infos if i.get("differs")]
    # the demo: one teacher, two λ, two fractions; the Baseline has no teacher and λ 0
    assert varying == ["fraction", "lam", "seed", "system", "teacher"]
    # the frontend ticks the first five columns, varying ones first: the constant ones last
    assert [i["name"] for i in infos][len(varying) :] == ["dataset", "student"]
    by_name = {i["name"]: i for i in infos}
    spec = load_study("demo")
    assert by_name["seed"]["domainDiscrete"] == [str(s) for s in spec.grid.seeds]
    systems = {c.system for c in expand_cells(spec)}
    assert set(by_name["system"]["domainDiscrete"]) == systems | {"Teacher_LR"}
    assert {"Baseline", "KD", "EAsT_Final"} <= systems
    assert [m["name"]["tag"] for m in experiment["metricInfos"]][:2] == [
        "final/test_mAP",
        "final/best_val_mAP",
    ]


def test_every_cell_and_teacher_lr_fit_is_a_row(demo_view: Any) -> None:
    _, groups, expected = demo_view
    rows = groups["sessionGroups"]
    assert len(rows) == groups["totalSize"] == expected
    fits = [r for r in rows if r["hparams"]["system"] == "Teacher_LR"]
    assert len(fits) == 3 and all(r["name"].startswith("teacher_lr/") for r in fits)
    assert all("student" not in r["hparams"] for r in fits)
    baseline = [r for r in rows if r["hparams"]["system"] == "Baseline"]
    assert baseline and all(r["hparams"]["teacher"] == "-" for r in baseline)
    for row in rows:
        assert str(int(row["hparams"]["seed"])) == row["hparams"]["seed"]
        values = {m["name"]["tag"]: m["value"] for m in row["metricValues"]}
        expected_map = 0.4 if row in fits else 0.5
        assert values["final/test_mAP"] == pytest.approx(expected_map)


def test_rewriting_the_view_replaces_it(tmp_path: Path) -> None:
    """A rerun (a study extended with new cells) rewrites the experiment summary in place:
    TensorBoard reads the first summary it finds, so there must be exactly one."""
    spec = load_study("demo")
    cells = expand_cells(spec)
    write_hparams_view(tmp_path, cells[:2], [], spec)
    write_hparams_view(tmp_path, cells, [_fit("musicnn", 1)], spec)
    assert len(list(tmp_path.glob("*tfevents*"))) == 1
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind
    experiment = _post(_plugin_routes(tmp_path), "/experiment", {"experimentName": ""})
    systems = {i["name"]: i for i in experiment["hparamInfos"]}["system"]["domainDiscrete"]
    assert "Teacher_LR" in systems and len(systems) > 2
