"""Layers as a teacher axis: a reference `<teacher>@<layer>` is a catalog row of its own,
a spec may name several layers of one teacher, and their extraction runs the network once
per shard for all of them (musicnn's real weights, offline)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from east_ray.analysis.layers import by_layer, layer_of
from east_ray.catalog import TEACHERS, canonical_teacher, get_teacher
from east_ray.config import SpecError, expand_cells, parse_study
from east_ray.data.parquet import read_labels
from east_ray.errors import UnknownNameError
from east_ray.teachers.embeddings import EmbedJob, embed_shard, extract_teacher, extract_teachers
from east_ray.teachers.registry import load_extractor
from east_ray.teachers.stored import load_embeddings
from tests.release_fixtures import prepared_openmic, tiny_study

HAS_MUSICNN = importlib.util.find_spec("musicnn") is not None
LAYERS = ["musicnn", "musicnn@mean_pool", "musicnn@max_pool", "musicnn@taggram"]


@pytest.mark.parametrize("name", sorted(TEACHERS))
def test_every_teacher_states_its_weights_licence_and_its_own_layer(name: str) -> None:
    row = get_teacher(name)
    assert row.licence and row.base == name
    if row.layers:
        assert dict(row.layers)[row.own_layer] == row.dim and row.layer == row.own_layer
        for layer, dim in row.layers:
            ref = get_teacher(f"{name}@{layer}")
            assert (ref.dim, ref.layer, ref.base, ref.hop, ref.framing) == (
                dim,
                layer,
                name,
                row.hop,
                row.framing,
            )
    else:
        assert row.layer is None


def test_a_layer_reference_is_a_row_of_its_own_and_bad_ones_name_the_valid() -> None:
    taggram = get_teacher("musicnn@taggram")
    assert (taggram.name, taggram.dim, taggram.display_name) == (
        "musicnn@taggram",
        50,
        "musicnn@taggram",
    )
    assert taggram.frames(160_000) == get_teacher("musicnn").frames(160_000) == 3
    assert canonical_teacher("musicnn@penultimate") == "musicnn"  # the row's own output
    assert canonical_teacher("musicnn@mean_pool") == "musicnn@mean_pool"
    with pytest.raises(
        UnknownNameError, match="its layers: musicnn@penultimate, musicnn@mean_pool"
    ):
        get_teacher("musicnn@layer9")
    with pytest.raises(UnknownNameError, match="its layers: none: use vggish"):
        get_teacher("vggish@6")
    with pytest.raises(UnknownNameError, match="unknown teacher 'mert'"):
        get_teacher("mert@6")


def _spec(teachers: list[str]) -> str:
    quoted = ", ".join(f'"{t}"' for t in teachers)
    return tiny_study("layers").replace('teachers = ["handcrafted"]', f"teachers = [{quoted}]")


def test_a_spec_names_layers_as_teachers_and_cells_carry_them() -> None:
    import tomllib

    spec = parse_study(tomllib.loads(_spec(["musicnn@penultimate", "musicnn@taggram"])))
    assert spec.grid.teachers == ("musicnn", "musicnn@taggram")  # stored under the bare name
    teachers = {c.teacher for c in expand_cells(spec) if c.teacher}
    assert teachers == {"musicnn", "musicnn@taggram"}
    assert any("musicnn@taggram" in c.cell_id for c in expand_cells(spec))
    for bad, message in (
        (["musicnn", "musicnn@penultimate"], "names one teacher output twice"),
        (["musicnn@layer9"], "grid.teachers[0]: teacher 'musicnn@layer9': musicnn has no layer"),
    ):
        with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]")):
            parse_study(tomllib.loads(_spec(bad)))


def test_one_extractor_serves_several_layers_from_one_pass() -> None:
    torch.manual_seed(0)
    audio = 0.1 * torch.randn(2, 3 * 16_000 * 2, generator=torch.Generator().manual_seed(1))
    both = load_extractor(LAYERS[0], pretrained=False, outputs=tuple(LAYERS))
    out = both.embed_all(audio)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "musicnn": (2, 2, 200),
        "musicnn@mean_pool": (2, 2, 753),
        "musicnn@max_pool": (2, 2, 753),
        "musicnn@taggram": (2, 2, 50),
    }
    assert ((out["musicnn@taggram"] > 0) & (out["musicnn@taggram"] < 1)).all()
    assert (out["musicnn@max_pool"] >= out["musicnn@mean_pool"] - 1e-6).all()
    alone = load_extractor("musicnn@taggram", pretrained=False)
    alone.model.load_state_dict(both.model.state_dict())  # the same random weights
    assert torch.equal(alone(audio), out["musicnn@taggram"])
    with pytest.raises(ValueError, match="call embed_all"):
        both(audio)
    with pytest.raises(UnknownNameError, match="handcrafted has no layers"):
        load_extractor("handcrafted", outputs=("handcrafted", "musicnn@taggram"))


@pytest.fixture
def three_second_clips(tmp_path: Path) -> Path:
    """The test release with every clip 3.5 times as long (4.2 s, prepared at 3.5 s):
    musicnn embeds 3 s patches."""
    return prepared_openmic(tmp_path, n=12, scale=3.5)


@pytest.mark.skipif(not HAS_MUSICNN, reason="the musicnn wheel (its weights) is not installed")
def test_layers_of_musicnn_are_extracted_from_one_pass_per_shard(three_second_clips: Path) -> None:
    passes: list[tuple[str, ...]] = []

    def run(jobs: list[EmbedJob]) -> None:
        extractor = load_extractor(jobs[0].teachers[0], outputs=jobs[0].teachers)
        for job in jobs:
            passes.append(job.teachers)
            embed_shard(job, extractor)

    records = extract_teachers(three_second_clips, LAYERS[1:] + LAYERS[:1], runner=run)
    shards = len(list((three_second_clips / "teachers" / "musicnn").glob("part-*.parquet")))
    assert shards >= 2 and passes == [tuple(LAYERS[1:] + LAYERS[:1])] * shards
    ids = read_labels(three_second_clips).clip_ids
    stored = {name: load_embeddings(three_second_clips, name, ids) for name in LAYERS}
    assert {n: records[n]["dim"] for n in LAYERS} == {n: get_teacher(n).dim for n in LAYERS}
    assert {n: a.shape[:2] for n, a in stored.items()} == {n: (len(ids), 1) for n in LAYERS}
    # the real MSD weights: tag probabilities, and a max over time above the mean
    assert ((stored["musicnn@taggram"] > 0) & (stored["musicnn@taggram"] < 1)).all()
    assert (stored["musicnn@max_pool"] >= stored["musicnn@mean_pool"] - 1e-6).all()
    passes.clear()
    again = extract_teacher(three_second_clips, "musicnn@penultimate", runner=run)
    assert passes == [] and again == records["musicnn"]  # already there: nothing runs
    assert np.isfinite(stored["musicnn@mean_pool"]).all()


def _tidy(teachers: list[str]) -> pd.DataFrame:
    """A `paper_table`-shaped frame: Baseline and EAsT_Final under each teacher, mAP."""
    rows = []
    for i, teacher in enumerate(teachers):
        for system, mean, p in (("Baseline", 0.5, np.nan), ("EAsT_Final", 0.6 + i / 100, 0.01)):
            rows.append((system, teacher, "mAP", mean, mean - 0.02, mean + 0.03, p))
    columns = ["system", "teacher", "metric", "mean", "ci_low", "ci_high", "p_holm"]
    return pd.DataFrame(rows, columns=columns)


def test_the_by_layer_table_has_a_row_per_layer_of_a_teacher_in_its_order() -> None:
    table = by_layer(_tidy(["handcrafted", "musicnn@taggram", "musicnn"]))
    assert list(table.index) == [("musicnn", "penultimate"), ("musicnn", "taggram")]
    assert list(table.columns) == [("Baseline", "mAP"), ("EAsT_Final", "mAP")]
    assert table.loc[("musicnn", "taggram"), ("EAsT_Final", "mAP")] == "0.610 [0.590, 0.640]†"
    assert by_layer(_tidy(["musicnn", "handcrafted"])).empty  # one layer: no such table
    assert [layer_of(t) for t in ("musicnn@taggram", "musicnn", "handcrafted", "-", None)] == [
        "taggram",
        "penultimate",
        None,
        None,
        None,
    ]
