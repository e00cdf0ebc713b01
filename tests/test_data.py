"""Release readers, log-mel preparation to Parquet, skips, idempotence, subsets."""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import os
import pickle
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from east_ray.data.audio import AudioError, decode, fit_length, logmel, resample
from east_ray.data.magnatagatune import FOLDER_SPLIT, KNOWN_BAD, TOP50, read_magnatagatune
from east_ray.data.openmic import read_openmic
from east_ray.data.parquet import column_numpy, read_labels, read_meta
from east_ray.data.prepare import ShardJob, build_shard, prepare
from east_ray.data.subsets import training_subset
from east_ray.data.valid_split import (
    AUTHORS_CLIPS,
    AUTHORS_MD5,
    AUTHORS_SIZE,
    RULES,
    SeededSplit,
    read_valid_list,
)
from east_ray.errors import BadValueError
from tests.release_fixtures import (
    OPENMIC_CLASSES,
    TEST_FEATURES,
    prepared_openmic,
    write_mtat,
    write_mtat_audio,
    write_openmic,
)

SEEDED = SeededSplit()


def _in_process(jobs: list[ShardJob]) -> None:
    for job in jobs:
        build_shard(job)


# --- OpenMIC reader -----------------------------------------------------------------------


def test_every_dataset_a_spec_may_name_has_a_reader_and_tables() -> None:
    from east_ray.catalog import DATASETS, get_dataset
    from east_ray.catalog.resolve import resolve
    from east_ray.config import load_study
    from east_ray.data.datasets import published_counts
    from east_ray.data.magnatagatune import TOP50
    from east_ray.errors import UnknownNameError
    from east_ray.synthmic._taxonomy import CLASSES as SYNTHMIC_CLASSES

    for row in DATASETS.values():
        assert load_study(row.default_study).dataset == row.name
        assert callable(resolve(row.reader))
        assert set(row.valid_splits) <= set(RULES)
        counts = published_counts(row)
        assert not counts or set(counts) == {"train", "valid", "test"}
    # the rows' class counts are the readers' (OpenMIC's 20 instruments are SynthMIC's)
    assert DATASETS["magnatagatune"].classes == len(TOP50)
    assert DATASETS["openmic"].classes == DATASETS["synthmic"].classes == len(SYNTHMIC_CLASSES)
    with pytest.raises(UnknownNameError, match="expected one of openmic, magnatagatune"):
        get_dataset("gtzan")


def test_synthmic_release_reads_with_the_openmic_reader(tmp_path: Path) -> None:
    from east_ray.data.datasets import read_release

    fx = write_openmic(tmp_path / "release")
    index = read_release("synthmic", fx.root)
    assert index.dataset == "synthmic"
    assert sorted(index.clips["clip_id"]) == sorted(fx.keys)  # audio is checked at prepare


def test_openmic_labels_and_mask_cell_by_cell(tmp_path: Path) -> None:
    fx = write_openmic(tmp_path / "openmic-2018")
    index = read_openmic(fx.root, SeededSplit(0.25, 3))
    assert index.classes == OPENMIC_CLASSES
    assert sorted(index.clips["clip_id"]) == sorted(fx.keys)
    for _, row in index.clips.iterrows():
        i = fx.keys.index(row["clip_id"])
        for k in range(len(OPENMIC_CLASSES)):
            y, observed = fx.y_true[i, k], fx.y_mask[i, k]
            assert row["label_mask"][k] == observed
            if observed:
                assert row["labels"][k] == (1.0 if y > 0.5 else 0.0)
            else:
                assert y == 0.5 and row["labels"][k] == 0.0  # an unobserved 0.5 is never positive


def test_openmic_splits_and_groups(tmp_path: Path) -> None:
    fx = write_openmic(tmp_path / "openmic-2018")
    index = read_openmic(fx.root, SeededSplit(0.25, 3))
    split = dict(zip(index.clips["clip_id"], index.clips["split"], strict=True))
    assert {k for k, s in split.items() if s == "test"} == set(fx.test)
    valid = {k for k, s in split.items() if s == "valid"}
    assert len(valid) == round(0.25 * len(fx.train)) and valid <= set(fx.train)
    again = read_openmic(fx.root, SeededSplit(0.25, 3))
    assert again.clips["split"].tolist() == index.clips["split"].tolist()
    other = read_openmic(fx.root, SeededSplit(0.25, 4))
    assert other.clips["split"].tolist() != index.clips["split"].tolist()
    group = dict(zip(index.clips["clip_id"], index.clips["group"], strict=True))
    assert group[fx.keys[0]] == group[fx.keys[2]] == "artist0"


def test_a_grouped_seeded_split_keeps_each_group_on_one_side(tmp_path: Path) -> None:
    """SynthMIC's rule: whole groups (artists here) go to validation, about the fraction of
    the training clips, the same ones on every read; the per-clip rule splits groups."""
    fx = write_openmic(tmp_path / "openmic-2018")

    def sides(split: SeededSplit) -> tuple[set[str], set[str]]:
        clips = read_openmic(fx.root, split).clips
        groups = {s: set(clips.loc[clips["split"] == s, "group"]) for s in ("train", "valid")}
        return groups["train"], groups["valid"]

    grouped = SeededSplit(0.25, 3, by_group=True)
    train, valid = sides(grouped)
    assert valid and train and not train & valid
    assert sides(grouped) == (train, valid)
    per_clip = [sides(SeededSplit(0.25, seed)) for seed in range(10)]
    assert any(t & v for t, v in per_clip)  # what the grouped rule prevents
    assert grouped.describe() == {"rule": "seeded", "fraction": 0.25, "seed": 3, "by_group": True}
    assert "by_group" not in SeededSplit().describe()  # prepared OpenMIC folders keep their id


def test_openmic_partition_key_without_label_row_is_skipped(tmp_path: Path) -> None:
    fx = write_openmic(tmp_path / "openmic-2018")
    with (fx.root / "partitions" / "split01_test.csv").open("a") as fh:
        fh.write("999999_0\n")
    index = read_openmic(fx.root, SEEDED)
    assert [(s.clip_id, s.reason.split(" but")[0]) for s in index.skipped] == [
        ("999999_0", "in partition test")
    ]


def test_openmic_refuses_a_pickle_that_would_run_code(tmp_path: Path) -> None:
    fx = write_openmic(tmp_path / "openmic-2018")
    npz = fx.root / "openmic-2018.npz"
    with zipfile.ZipFile(npz) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|O", "fortran_order": False, "shape": (1,)}
    )
    evil = pickle.dumps(os.system)  # loading this would hand out a callable
    members["sample_key.npy"] = header.getvalue() + evil
    with zipfile.ZipFile(npz, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        read_openmic(fx.root, SEEDED)


def test_wrong_root_and_missing_files_are_named(tmp_path: Path) -> None:
    fx = write_openmic(tmp_path / "openmic-2018")
    with pytest.raises(FileNotFoundError, match=r"no class-map.json here.*did you mean"):
        read_openmic(tmp_path, SEEDED)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        read_openmic(tmp_path / "nowhere", SEEDED)
    (fx.root / "partitions" / "split01_test.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"split01_test.csv: missing; expected the Open"):
        read_openmic(fx.root, SEEDED)


# --- OpenMIC validation split -------------------------------------------------------------


def test_seeded_split_is_the_one_read_openmic_always_took(tmp_path: Path) -> None:
    fx = write_openmic(tmp_path / "openmic-2018")
    index = read_openmic(fx.root, SeededSplit())  # 15%, seed 1223: pinned from before the rules
    valid = index.clips.loc[index.clips["split"] == "valid", "clip_id"].tolist()
    assert valid == ["000107_1000", "000114_2000", "000191_1000"]
    assert index.valid_split == {"rule": "seeded", "fraction": 0.15, "seed": 1223}
    with pytest.raises(BadValueError, match=r"valid fraction: got 1.0, expected a number in"):
        SeededSplit(1.0)


def _authors_style(keys: list[str]) -> str:
    """Lines shaped like the authors' openmic_valid.json (the reader needs only sample_key)."""
    return "".join(json.dumps({"sample_key": k, "label": [0] * 20}) + "\n" for k in keys)


@pytest.mark.parametrize(
    "write",
    [_authors_style, json.dumps, lambda keys: "\n".join(keys) + "\n"],
    ids=["json-lines", "json-array", "one-key-per-line"],
)
def test_valid_list_file_decides_the_validation_clips(
    tmp_path: Path, write: Callable[[list[str]], str]
) -> None:
    fx = write_openmic(tmp_path / "openmic-2018")
    chosen = [fx.train[5], fx.train[0], fx.train[9]]
    list_file = tmp_path / "valid.json"
    list_file.write_text(write(chosen))
    split = read_valid_list(list_file)
    assert split.keys == tuple(sorted(chosen))
    index = read_openmic(fx.root, split)
    by_split = index.clips.groupby("split")["clip_id"].apply(set).to_dict()
    assert by_split == {
        "valid": set(chosen),
        "train": set(fx.train) - set(chosen),
        "test": set(fx.test),
    }
    assert index.valid_split == {
        "rule": "list",  # not the authors' file (md5)
        "source": str(list_file),
        "md5": hashlib.md5(list_file.read_bytes()).hexdigest(),
        "clips": 3,
    }


def test_valid_list_key_outside_the_training_partition_is_refused(tmp_path: Path) -> None:
    fx = write_openmic(tmp_path / "openmic-2018")
    list_file = tmp_path / "valid.json"
    list_file.write_text(_authors_style([fx.train[0], fx.test[1], "999999_0"]))
    with pytest.raises(BadValueError) as caught:
        read_openmic(fx.root, read_valid_list(list_file))
    message = str(caught.value)
    assert message.startswith(f"{list_file}: 2 of its 3 validation keys are not in the training")
    assert str(fx.root / "partitions" / "split01_train.csv") in message
    assert repr(sorted([fx.test[1], "999999_0"])) in message
    assert "--valid-list FILE" in message and "--valid-split seeded" in message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_authors_style(["000100_0", "000107_1000", "000100_0"]), r"1 sample keys appear more"),
        ("", "holds no sample keys"),
        ('{"sample_key": "000100_0"}\n{"key": 1}\n', "line 2 has no string 'sample_key'"),
        ('{"sample_key": "000100_0"}\n{oops\n', "line 2 is not JSON"),
        ('["000100_0", 7]', "expected a JSON array of sample-key strings"),
    ],
    ids=["duplicates", "empty", "no-sample-key", "bad-json-line", "array-of-non-strings"],
)
def test_malformed_valid_list_is_refused_naming_the_file(
    tmp_path: Path, text: str, message: str
) -> None:
    list_file = tmp_path / "valid.json"
    list_file.write_text(text)
    with pytest.raises(BadValueError, match=message) as caught:
        read_valid_list(list_file)
    assert str(caught.value).startswith(f"{list_file}: ")
    with pytest.raises(FileNotFoundError, match="missing; expected a validation list"):
        read_valid_list(tmp_path / "nowhere.json")


def test_dataset_registry_applies_each_dataset_s_validation_rules(tmp_path: Path) -> None:
    from east_ray.data.datasets import ReadOptions, only_valid_split, read_release

    fx = write_openmic(tmp_path / "openmic-2018")
    list_file = tmp_path / "valid.txt"
    list_file.write_text(f"{fx.train[1]}\n")
    listed = read_release("openmic", fx.root, ReadOptions(valid_list=list_file))  # authors'
    assert listed.valid_split["rule"] == "list" and listed.valid_split["clips"] == 1
    assert listed.published_counts == {"train": 12_692, "valid": 2_223, "test": 5_085}
    seeded = read_release("openmic", fx.root, ReadOptions(valid_split="seeded"))
    assert seeded.valid_split == SeededSplit().describe()
    synthmic = read_release("synthmic", fx.root)
    assert synthmic.valid_split == SeededSplit(by_group=True).describe()
    assert synthmic.published_counts == {}
    assert only_valid_split("synthmic") == SeededSplit(by_group=True)
    assert only_valid_split("openmic") is None
    refusals = [
        ("synthmic", ReadOptions(valid_split="authors"), "got 'authors' for synthmic, whose rules"),
        ("synthmic", ReadOptions(valid_list=list_file), "only used by --valid-split authors"),
        ("openmic", ReadOptions(None, "seeded", list_file), "only used by --valid-split authors"),
        ("magnatagatune", ReadOptions(valid_split="seeded"), "its splits are fixed"),
        ("openmic", ReadOptions(split_scheme="won"), "got 'won' for openmic, whose schemes"),
    ]
    for name, options, message in refusals:
        with pytest.raises(BadValueError, match=message):
            read_release(name, fx.root, options)


def test_authors_list_from_shared_data_is_the_pinned_file(shared_data: Path) -> None:
    path = shared_data / "openmic_valid.json"
    split = read_valid_list(path)  # refuses duplicates
    raw = [json.loads(line)["sample_key"] for line in path.read_text().splitlines()]
    assert len(raw) == len(set(raw)) == AUTHORS_CLIPS == 2_223 and raw == sorted(raw)
    assert split.keys == tuple(raw)
    assert (split.md5, path.stat().st_size) == (AUTHORS_MD5, AUTHORS_SIZE)
    assert split.describe()["rule"] == "authors"
    assert all(re.fullmatch(r"\d{6}_\d+", k) for k in raw)  # OpenMIC sample keys


# --- MagnaTagATune reader -----------------------------------------------------------------

MTAT_ROWS = [
    ("2", "f/artist_a-album-01-song-30-59.mp3", ["classical", "violin"]),
    ("6", "0/artist_b-album-02-song-0-29.mp3", ["rock"]),
    ("10", "c/artist_c-album-03-song-0-29.mp3", ["choral", "male voice"]),
    ("12", "3/artist_b-album-02-song-30-59.mp3", []),  # no top-50 tag
    ("35644", "6/norine_braun-now_and_zen-08-gently-117-146.mp3", ["guitar"]),
    ("40", "b/artist_d-album-04-song-0-29.mp3", ["tag3"]),  # only a non-top-50 tag
]


def test_mtat_reads_quoted_tab_crlf_and_top50_order(tmp_path: Path) -> None:
    write_mtat(tmp_path, MTAT_ROWS)
    raw = (tmp_path / "annotations_final.csv").read_bytes()
    assert raw.count(b"\r\n") == len(MTAT_ROWS) + 1 and raw.startswith(b'"clip_id"\t')
    index = read_magnatagatune(tmp_path, "won")
    assert index.classes == TOP50 and len(TOP50) == 50
    assert index.clips["clip_id"].tolist() == ["2", "6", "10"]
    by_id = index.clips.set_index("clip_id")
    assert by_id.loc["2", "split"] == "test" and by_id.loc["10", "split"] == "valid"
    assert by_id.loc["6", "split"] == "train" and by_id.loc["6", "group"] == "artist_b"
    labels = by_id.loc["10", "labels"]
    assert [TOP50[i] for i in np.flatnonzero(labels)] == ["male voice", "choral"]
    assert all(m.all() for m in index.clips["label_mask"])  # MTAT is fully labelled
    assert [s.clip_id for s in index.skipped] == ["35644"]


def test_mtat_pons_keeps_untagged_clips(tmp_path: Path) -> None:
    write_mtat(tmp_path, MTAT_ROWS)
    index = read_magnatagatune(tmp_path, "pons")
    assert sorted(index.clips["clip_id"], key=int) == ["2", "6", "10", "12", "40"]
    assert index.published_counts == {"train": 18_706, "valid": 1_825, "test": 5_329}


def test_mtat_bad_annotation_value_is_located(tmp_path: Path) -> None:
    write_mtat(tmp_path, MTAT_ROWS)
    path = tmp_path / "annotations_final.csv"
    path.write_bytes(path.read_bytes().replace(b'"2"\t"0"', b'"2"\t"x"', 1))
    with pytest.raises(ValueError, match=r"row 2, tag 'guitar': got 'x', expected \"0\" or \"1\""):
        read_magnatagatune(tmp_path)


def test_mtat_folder_rule_matches_pons_column(shared_data: Path, tmp_path: Path) -> None:
    with (shared_data / "mtat_splits.csv").open(newline="") as fh:
        reference = list(csv.DictReader(fh))
    assert len(reference) == 25_863
    write_mtat(tmp_path, [(r["clip_id"], r["mp3_path"], []) for r in reference])
    index = read_magnatagatune(tmp_path, "pons")
    ours = dict(zip(index.clips["clip_id"], index.clips["split"], strict=True))
    for r in reference:
        expected = r["pons_split"]
        assert ours.get(r["clip_id"], "excluded") == expected, r
    assert index.split_counts() == index.published_counts
    for r in reference:  # the "won" clips are a subset with the same folder rule
        if r["won_lee_split"] != "none":
            assert FOLDER_SPLIT[r["mp3_path"][0]] == r["won_lee_split"]
    assert {s.clip_id for s in index.skipped} == set(KNOWN_BAD)


# --- audio and log-mel --------------------------------------------------------------------


def test_logmel_shape_hop_and_errors(tmp_path: Path) -> None:
    f = TEST_FEATURES
    wave = torch.randn(3, round(f.clip_seconds * f.sample_rate))
    out = logmel(wave, f)
    assert out.shape == (3, f.n_mels, f.frames) == (3, 32, 50)
    assert f.hop_seconds == pytest.approx(0.02)
    # a tone concentrates its energy in the mel bands around its frequency
    t = torch.arange(16000) / 16000
    peak = logmel(torch.sin(2 * torch.pi * 1000 * t)[None], f)[0].mean(1).argmax().item()
    mel = lambda hz: 1127 * np.log(1 + hz / 700)  # noqa: E731 (Kaldi's mel scale)
    centres = mel(0) + (np.arange(1, 33)) * (mel(8000) - mel(0)) / 33
    assert abs(peak - np.abs(centres - mel(1000)).argmin()) <= 1
    with pytest.raises(AudioError, match="too short"):
        fit_length(torch.zeros(100), 1000, 0.9)
    fitted, padded = fit_length(torch.arange(950.0), 1000, 0.9)
    assert padded and fitted.shape == (1000,) and fitted[950] == 948.0  # reflected, not zeros


def test_real_audio_decodes_to_mono_and_logmel(shared_data: Path) -> None:
    audio, rate = decode(shared_data / "real-audio" / "000046_3840.ogg")
    assert rate == 44100 and audio.shape == (441000,)
    files = sorted((shared_data / "real-audio" / "mirdata").iterdir())
    assert files
    for path in files:
        samples, rate = decode(path)
        x = resample(samples, rate, 16000)
        assert x.ndim == 1 and torch.isfinite(x).all(), path
        assert abs(len(x) - len(samples) * 16000 / rate) <= 1


# --- prepare: Parquet, skips, idempotence -------------------------------------------------


def test_prepare_writes_parquet_meta_and_skip_report(tmp_path: Path) -> None:
    fx = write_openmic(tmp_path / "openmic-2018")
    out = tmp_path / "prepared"
    meta = prepare(
        read_openmic(fx.root, SEEDED), TEST_FEATURES, out, shard_size=5, runner=_in_process
    )
    assert meta["complete"] and meta["classes"] == list(OPENMIC_CLASSES)
    assert meta["logmel"] == {**meta["logmel"], "shape": [32, 50], "hop_seconds": 0.02}
    skipped = {s["clip_id"]: s["reason"] for s in meta["skipped"]}
    assert set(skipped) == set(fx.bad)
    for key, prefix in fx.bad.items():
        assert skipped[key].startswith(prefix), (key, skipped[key])
    assert meta["padded_clips"] == 1  # the 0.97 s clip
    table = pq.read_table(out / "clips")
    assert sorted(table["clip_id"].to_pylist()) == sorted(set(fx.keys) - set(fx.bad))
    mels = column_numpy(table["logmel"])
    assert mels.shape == (len(fx.keys) - 4, 32, 50) and mels.dtype == np.float16
    assert np.isfinite(mels).all() and mels.std() > 0.1
    assert sum(meta["counts"].values()) == table.num_rows
    labels, mask = column_numpy(table["labels"]), column_numpy(table["label_mask"])
    assert labels.shape == mask.shape == (table.num_rows, 20) and mask.dtype == bool
    assert read_meta(out) == meta
    assert meta["valid_split"] == {"rule": "seeded", "fraction": 0.15, "seed": 1223}


def test_prepare_is_idempotent_and_resumes_partial_output(tmp_path: Path) -> None:
    fx = write_openmic(tmp_path / "openmic-2018")
    out = tmp_path / "prepared"
    index = read_openmic(fx.root, SEEDED)
    prepare(index, TEST_FEATURES, out, shard_size=5, runner=_in_process)
    built: list[int] = []

    def counting(jobs: list[ShardJob]) -> None:
        built.extend(j.shard for j in jobs)
        _in_process(jobs)

    prepare(index, TEST_FEATURES, out, shard_size=5, runner=counting)
    assert built == []  # complete output: nothing rebuilt
    # Simulate a crash: meta never written, one shard lost its status (so it is partial).
    (out / "meta.json").unlink()
    (out / "status" / "part-00002.json").unlink()
    meta = prepare(index, TEST_FEATURES, out, shard_size=5, runner=counting)
    assert built == [2] and meta["complete"]
    other = TEST_FEATURES.__class__(**{**TEST_FEATURES.__dict__, "n_mels": 16})
    with pytest.raises(FileExistsError, match="prepared from other data or settings"):
        prepare(index, other, out, shard_size=5, runner=counting)


def test_validation_rule_is_recorded_and_part_of_the_fingerprint(tmp_path: Path) -> None:
    fx = write_openmic(tmp_path / "openmic-2018", n=8)
    here, there = tmp_path / "valid.json", tmp_path / "elsewhere" / "valid.json"
    here.write_text(_authors_style(fx.train[:2]))
    there.parent.mkdir()
    there.write_bytes(here.read_bytes())
    out = tmp_path / "prepared"
    meta = prepare(
        read_openmic(fx.root, read_valid_list(here)), TEST_FEATURES, out, runner=_in_process
    )
    assert meta["valid_split"]["rule"] == "list" and meta["valid_split"]["source"] == str(here)
    assert meta["valid_split"]["md5"] == hashlib.md5(here.read_bytes()).hexdigest()
    built: list[ShardJob] = []
    same_list = read_openmic(fx.root, read_valid_list(there))
    assert prepare(same_list, TEST_FEATURES, out, runner=built.extend) == meta  # reused
    assert built == []
    seeded = read_openmic(fx.root, SeededSplit(0.3))
    with pytest.raises(FileExistsError, match="validation rule list, now seeded"):
        prepare(seeded, TEST_FEATURES, out, runner=built.extend)
    before = {k: v for k, v in meta.items() if k != "valid_split"} | {"version": 1}
    (out / "meta.json").write_text(json.dumps(before))  # prepared before the rule was recorded
    with pytest.raises(BadValueError, match="version 1, expected 2; prepare the dataset again"):
        read_meta(out)


def test_prepare_runs_on_ray(tmp_path: Path, ray_local: None) -> None:
    fx = write_openmic(tmp_path / "openmic-2018", n=12)
    meta = prepare(read_openmic(fx.root, SEEDED), TEST_FEATURES, tmp_path / "out", shard_size=4)
    n_ok = len(fx.keys) - len([k for k in fx.bad if k in fx.keys])
    assert sum(meta["counts"].values()) == n_ok
    assert len(list((tmp_path / "out" / "clips").glob("part-*.parquet"))) == 3


def test_prepare_mtat_mp3(tmp_path: Path) -> None:
    write_mtat(tmp_path / "mtat", MTAT_ROWS)
    for i, (_, path, _) in enumerate(MTAT_ROWS[:3]):
        write_mtat_audio(tmp_path / "mtat", path, 1.0, i)
    meta = prepare(
        read_magnatagatune(tmp_path / "mtat"), TEST_FEATURES, tmp_path / "out", runner=_in_process
    )
    assert meta["counts"] == {"train": 1, "valid": 1, "test": 1}
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["dataset"] == "magnatagatune"


def test_prepare_mtat_keeps_the_release_numeric_order(tmp_path: Path) -> None:
    ids = ["2", "14", "1009", "10009", "35640", "57880"]  # release rows: ascending numbers
    rows = [(c, f"c/artist-album-{i:02d}-song-0-29.mp3", ["rock"]) for i, c in enumerate(ids)]
    write_mtat(tmp_path / "mtat", rows)
    for i, (_, path, _) in enumerate(rows):
        write_mtat_audio(tmp_path / "mtat", path, 1.0, i)
    out = tmp_path / "out"
    meta = prepare(read_magnatagatune(tmp_path / "mtat"), TEST_FEATURES, out, runner=_in_process)
    assert meta["clip_order"] == "numeric"
    assert read_labels(out).clip_ids == ids  # strings would give 10009, 1009, 14, 2, ...
    # a folder prepared before (no clip_order, string-sorted) is refused, and kept
    stale = {k: v for k, v in meta.items() if k != "clip_order"}
    (out / "meta.json").write_text(json.dumps(stale))
    with pytest.raises(BadValueError, match="prepare magnatagatune --root .* --out NEW_FOLDER"):
        read_meta(out)
    assert len(list((out / "clips").glob("part-*.parquet"))) == 1
    # a rerun of prepare into it is refused the same way, nothing removed
    with pytest.raises(BadValueError, match="--out NEW_FOLDER"):
        prepare(read_magnatagatune(tmp_path / "mtat"), TEST_FEATURES, out, runner=_in_process)
    assert (out / "clips").is_dir()


def test_string_ids_keep_their_order(tmp_path: Path) -> None:
    out = prepared_openmic(tmp_path)
    meta = read_meta(out)
    assert meta["clip_order"] == "string"
    ids = read_labels(out).clip_ids
    assert ids == sorted(ids)
    # an OpenMIC folder from before clip_order was recorded still opens
    (out / "meta.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "clip_order"}))
    assert read_meta(out)["dataset"] == "openmic"


# --- training subsets ---------------------------------------------------------------------


def _train_set(n: int = 400, c: int = 6, seed: int = 0) -> tuple[list[str], np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    ids = [f"clip{i:04d}" for i in range(n)]
    labels = (rng.random((n, c)) < np.linspace(0.3, 0.004, c)).astype(np.float32)
    mask = rng.random((n, c)) < 0.8
    groups = [f"artist{i // 4}" for i in range(n)]
    return ids, labels, mask, groups  # type: ignore[return-value]


def test_subsets_nested_reproducible_and_order_free() -> None:
    ids, labels, mask, groups = _train_set()
    fractions = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0]
    subsets = [
        training_subset(ids, labels, mask, fraction=f, seed=7, groups=groups) for f in fractions
    ]
    for small, big in itertools.pairwise(subsets):
        assert (small <= big).all()
    for f, s in zip(fractions[2:], subsets[2:], strict=True):
        assert abs(s.sum() - f * len(ids)) <= 4 + 1  # whole groups of 4, plus strata
    perm = np.random.default_rng(1).permutation(len(ids))
    shuffled = training_subset(
        [ids[i] for i in perm],
        labels[perm],
        mask[perm],
        fraction=0.1,
        seed=7,
        groups=[groups[i] for i in perm],
    )
    assert (shuffled == subsets[2][perm]).all()
    other_seed = training_subset(ids, labels, mask, fraction=0.1, seed=8, groups=groups)
    assert not (other_seed == subsets[2]).all()


def test_subsets_keep_positives_and_whole_groups() -> None:
    ids, labels, mask, groups = _train_set()
    positive = (labels > 0.5) & mask
    chosen = training_subset(ids, labels, mask, fraction=0.01, seed=3, groups=groups)
    assert (positive[chosen].any(0) == positive.any(0)).all()
    g = np.array(groups)
    for name in set(g[chosen]):
        assert chosen[g == name].all()  # a group is in or out as a whole
    with pytest.raises(ValueError, match=r"fraction: got 0.0, expected a number in \(0, 1\]"):
        training_subset(ids, labels, mask, fraction=0.0, seed=3)
