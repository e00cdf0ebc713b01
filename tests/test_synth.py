"""SynthMIC: the OpenMIC-2018 layout, exact labels by construction, determinism, atomic output."""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from east_ray.data import synth
from east_ray.data.synth import (
    CLASSES,
    Grid,
    Note,
    StemRecord,
    annotate,
    gm_program_class,
    group_split,
    kit_key_class,
    present_classes,
    synthesize,
    window_notes,
)

N_CLIPS = 8
SEED = 7


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, synth.SynthSummary]:
    out = tmp_path_factory.mktemp("synthmic") / "synthmic"
    summary = synthesize(out, n_clips=N_CLIPS, seed=SEED, workers=1, progress=False)
    return out, summary


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _npz(root: Path) -> dict[str, np.ndarray]:
    with np.load(root / "openmic-2018.npz", allow_pickle=True) as z:  # our own file
        return {name: z[name] for name in z.files}


def _partitions(root: Path) -> tuple[list[str], list[str]]:
    train = (root / "partitions" / "split01_train.csv").read_text().split()
    test = (root / "partitions" / "split01_test.csv").read_text().split()
    return train, test


# ----------------------------------------------------------------------------- pure functions


def test_gm_programs_map_to_the_openmic_classes() -> None:
    expected = {
        0: "piano",
        7: "piano",
        8: "mallet_percussion",
        15: "mallet_percussion",
        16: "organ",
        20: "organ",
        21: "accordion",
        23: "accordion",
        24: "guitar",
        31: "guitar",
        32: "bass",
        39: "bass",
        40: "violin",
        42: "cello",
        52: "voice",
        54: "voice",
        56: "trumpet",
        57: "trombone",
        64: "saxophone",
        67: "saxophone",
        71: "clarinet",
        73: "flute",
        80: "synthesizer",
        95: "synthesizer",
        105: "banjo",
    }
    for program, cls in expected.items():
        assert gm_program_class(program) == cls, program
    for program in (*synth.DISTRACTOR_PROGRAMS, 41, 43, 48, 127):
        assert gm_program_class(program) is None
    mapped = {gm_program_class(p) for p in range(128)} - {None}
    assert mapped == set(CLASSES) - {"cymbals", "drums", "mandolin", "ukulele"}
    with pytest.raises(ValueError):
        gm_program_class(128)


def test_kit_keys_split_into_cymbals_and_drums() -> None:
    for key in (49, 51, 52, 53, 55, 57, 59):  # crash, ride, china, ride bell, splash
        assert kit_key_class(key) == "cymbals"
    for key in (35, 36, 38, 40, 42, 44, 46, 41, 43, 45, 47, 48, 50):  # kicks, snares, hats, toms
        assert kit_key_class(key) == "drums"


def test_class_list_and_constants() -> None:
    assert list(CLASSES) == sorted(CLASSES) and len(CLASSES) == 20
    assert synth.SAMPLE_RATE >= 16_000 and synth.CHANNELS in (1, 2)


def test_window_notes_keeps_only_what_sounds_in_the_window() -> None:
    notes = [
        Note(0.0, 4.95, 60, 90),  # ends 0.05 s into the window: too short, dropped
        Note(4.0, 6.0, 62, 90),  # held into the window: clipped to [0, 1)
        Note(7.0, 8.0, 64, 90),  # inside
        Note(14.95, 16.0, 65, 90),  # starts 0.05 s before the end: dropped
        Note(20.0, 21.0, 67, 90),  # after
    ]
    got = window_notes(notes, 5.0, 10.0)
    assert [(n.start, n.end, n.pitch) for n in got] == [(0.0, 1.0, 62), (2.0, 3.0, 64)]
    hits = [Note(4.9, 6.0, 49, 100), Note(5.0, 5.5, 36, 100), Note(14.95, 16, 38, 100)]
    assert [n.pitch for n in window_notes(hits, 5.0, 10.0, onsets_only=True)] == [36]


def test_present_classes_need_notes_and_audibility() -> None:
    stems = [
        StemRecord("part1", 40, False, "violin", 0.0, 12, True),
        StemRecord("part2", 73, False, "flute", 0.0, 0, False),  # rests the whole window
        StemRecord("part3", 68, False, None, 0.0, 9, True),  # oboe: no class
        StemRecord("part4", 42, False, "cello", 0.0, 5, False),  # renders silent
        StemRecord("drums", 0, True, "drums", -3.0, 30, True),
        StemRecord("cymbals", 0, True, "cymbals", -3.0, 0, False),
    ]
    assert present_classes(stems) == {"violin", "drums"}


def test_annotate_is_exact_and_leaves_some_present_classes_unobserved() -> None:
    present = frozenset({"bass", "drums", "piano", "violin"})
    rng = np.random.default_rng(0)
    hidden = 0
    for _ in range(300):
        y, mask = annotate(present, rng)
        assert y.dtype == np.float64 and mask.dtype == bool and y.shape == mask.shape == (20,)
        assert set(np.unique(y)) <= {0.0, 0.5, 1.0}
        assert np.array_equal(y == 0.5, ~mask)
        assert mask.any()
        for i, cls in enumerate(CLASSES):
            if mask[i]:
                assert (y[i] > 0.5) == (cls in present)
        hidden += sum(1 for i, c in enumerate(CLASSES) if c in present and not mask[i])
    assert 0.05 * 1200 < hidden < 0.15 * 1200  # P_HIDE_POSITIVE = 0.1 of 4 x 300
    y, mask = annotate(present, rng, p_negative=0.0, p_hide=1.0)
    assert mask.sum() == 1  # nothing annotated otherwise, so one class is, truthfully
    with pytest.raises(ValueError, match="unknown"):
        annotate(frozenset({"kazoo"}), rng)


def test_group_split_is_group_disjoint_and_about_a_quarter() -> None:
    groups = [g for g in range(40) for _ in range(1 + g % 3)]
    keys = [f"{i:06d}_0" for i in range(len(groups))]
    train, test = group_split(keys, groups, np.random.default_rng(1), 0.25)
    assert train | test == set(keys) and not train & test
    key_group = dict(zip(keys, groups, strict=True))
    assert not {key_group[k] for k in train} & {key_group[k] for k in test}
    assert 0.2 <= len(test) / len(keys) <= 0.32
    two = group_split(["a", "b"], [1, 2], np.random.default_rng(0), 0.25)
    assert len(two[0]) == len(two[1]) == 1


def test_drum_pattern_and_bass_line_are_musical() -> None:
    rng = np.random.default_rng(3)
    grid = Grid(bar=4.0, beat=1.0, beats_per_bar=4, origin=1.0)  # with a one-beat pickup
    hits = synth.drum_pattern(grid, 32.0, rng)
    assert hits and all(0 <= h.start < 32.0 for h in hits)
    kicks = {h.start for h in hits if h.pitch == 36}
    assert {1.0, 5.0, 9.0} <= kicks  # beat 1 of every bar after the pickup
    rung = synth.ring_kit_notes(hits)
    assert len(rung) == len(hits)
    assert all(0 < n.end - n.start <= synth.KIT_RING_S for n in rung)
    parts = (
        tuple(Note(float(b), b + 1.0, 72, 80) for b in range(16)),
        tuple(Note(float(b), b + 2.0, 55 if b % 4 else 50, 80) for b in range(0, 16, 2)),
    )
    data = synth.ScoreData(1, "x/y.mxl", "bach", parts, grid, 16.0)
    for style in (0, 1, 2):
        line = synth.bass_line(data, style, rng)
        low, high = synth.CLASS_RANGES["bass"]
        assert line and all(low <= n.pitch <= high for n in line)
        assert {n.pitch % 12 for n in line} <= {55 % 12, 50 % 12}  # the lowest sounding notes


def test_clip_starts_do_not_overlap() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 2, 3):
        starts = synth.clip_starts(n * 10.0 + 3.3, n, rng)
        assert len(starts) == n and starts[0] >= 0
        assert all(b - a >= 10_000 for a, b in itertools.pairwise(starts))
        assert starts[-1] + 10_000 <= (n * 10.0 + 3.3) * 1000
    with pytest.raises(ValueError):
        synth.clip_starts(15.0, 2, rng)


# ----------------------------------------------------------------------------- a rendered set


def test_layout_and_file_names(rendered: tuple[Path, synth.SynthSummary]) -> None:
    root, summary = rendered
    for name in (
        "class-map.json",
        "openmic-2018.npz",
        "openmic-2018-aggregated-labels.csv",
        "openmic-2018-metadata.csv",
        "partitions/split01_train.csv",
        "partitions/split01_test.csv",
        "README.txt",
        synth.STEMS_CSV,
        synth.MANIFEST,
    ):
        assert (root / name).is_file(), name
    assert not (root / "vggish").exists()
    assert "NO `X`" in (root / "README.txt").read_text()
    assert json.loads((root / "class-map.json").read_text()) == {
        c: i for i, c in enumerate(CLASSES)
    }
    keys = list(_npz(root)["sample_key"])
    assert len(keys) == len(set(keys)) == N_CLIPS == summary.n_clips
    assert all(re.fullmatch(r"\d{6}_\d+", k) for k in keys)
    oggs = sorted(p.relative_to(root).as_posix() for p in (root / "audio").rglob("*"))
    dirs = sorted({f"audio/{k[:3]}" for k in keys})
    assert oggs == sorted(dirs + [f"audio/{k[:3]}/{k}.ogg" for k in keys])
    assert not list(root.parent.glob("*.tmp-*"))


def test_npz_dtypes_and_shapes(rendered: tuple[Path, synth.SynthSummary]) -> None:
    z = _npz(rendered[0])
    assert set(z) == {"Y_true", "Y_mask", "sample_key"}  # no VGGish `X` in SynthMIC
    assert z["Y_true"].dtype == np.float64 and z["Y_true"].shape == (N_CLIPS, 20)
    assert z["Y_mask"].dtype == bool and z["Y_mask"].shape == (N_CLIPS, 20)
    assert z["sample_key"].dtype == object and z["sample_key"].shape == (N_CLIPS,)
    assert all(type(k) is str for k in z["sample_key"])
    assert list(z["sample_key"]) == sorted(z["sample_key"])


def test_label_values_and_mask(rendered: tuple[Path, synth.SynthSummary]) -> None:
    z = _npz(rendered[0])
    assert set(np.unique(z["Y_true"])) <= {0.0, 0.5, 1.0}
    assert np.array_equal(z["Y_true"] == 0.5, ~z["Y_mask"])
    assert z["Y_mask"].any(axis=1).all()
    i_mandolin, i_ukulele = CLASSES.index("mandolin"), CLASSES.index("ukulele")
    assert not (z["Y_true"][:, [i_mandolin, i_ukulele]] > 0.5).any()


def test_aggregated_csv_agrees_with_npz(rendered: tuple[Path, synth.SynthSummary]) -> None:
    root = rendered[0]
    z = _npz(root)
    with (root / "openmic-2018-aggregated-labels.csv").open() as f:
        assert f.readline().strip() == "sample_key,instrument,relevance,num_responses"
    rows = _read_csv(root / "openmic-2018-aggregated-labels.csv")
    from_csv = {(r["sample_key"], r["instrument"]): float(r["relevance"]) for r in rows}
    assert len(from_csv) == len(rows) == int(z["Y_mask"].sum())
    assert all(r["num_responses"] == "1" for r in rows)
    index = {k: i for i, k in enumerate(z["sample_key"])}
    for (key, cls), relevance in from_csv.items():
        i, j = index[key], CLASSES.index(cls)
        assert z["Y_mask"][i, j] and z["Y_true"][i, j] == relevance


def test_labels_match_construction(rendered: tuple[Path, synth.SynthSummary]) -> None:
    root, summary = rendered
    z = _npz(root)
    stems = _read_csv(root / synth.STEMS_CSV)
    present: dict[str, set[str]] = {k: set() for k in z["sample_key"]}
    for s in stems:
        program, is_drum = int(s["gm_program"]), s["is_drum"] == "1"
        if is_drum:
            assert s["instrument"] in ("drums", "cymbals")
        else:
            assert s["instrument"] == (gm_program_class(program) or "")
        sounding = s["instrument"] != "" and int(s["notes"]) > 0 and s["audible"] == "1"
        assert (s["present"] == "1") == sounding
        if sounding:
            present[s["sample_key"]].add(s["instrument"])
    hidden = 0
    for i, key in enumerate(z["sample_key"]):
        for j, cls in enumerate(CLASSES):
            if z["Y_mask"][i, j]:
                assert (z["Y_true"][i, j] == 1.0) == (cls in present[key]), (key, cls)
            elif cls in present[key]:
                hidden += 1
    assert hidden == summary.hidden_positives
    got = tuple(sum(CLASSES[j] in p for p in present.values()) for j in range(20))
    assert got == summary.present


def test_present_but_unannotated_instrument_occurs(
    rendered: tuple[Path, synth.SynthSummary],
) -> None:
    # At 10% per present class, a handful of clips with 2-6 instruments each has one.
    assert rendered[1].hidden_positives >= 1


def test_partitions_cover_keys_once_and_are_group_disjoint(
    rendered: tuple[Path, synth.SynthSummary],
) -> None:
    root, summary = rendered
    keys = set(_npz(root)["sample_key"])
    train, test = _partitions(root)
    assert sorted(train + test) == sorted(keys) and len(train) + len(test) == len(keys)
    assert train and test and (len(train), len(test)) == (summary.n_train, summary.n_test)
    meta = {r["sample_key"]: r for r in _read_csv(root / "openmic-2018-metadata.csv")}
    assert set(meta) == keys
    assert not {meta[k]["artist_id"] for k in train} & {meta[k]["artist_id"] for k in test}
    for key, row in meta.items():
        assert key == f"{int(row['track_id']):06d}_{row['start_ms']}"
        assert row["artist_name"] and row["track_title"] and row["source"].startswith("music21:")


def test_every_clip_decodes_to_ten_seconds(rendered: tuple[Path, synth.SynthSummary]) -> None:
    root = rendered[0]
    for key in _npz(root)["sample_key"]:
        audio, sr = sf.read(root / "audio" / key[:3] / f"{key}.ogg", always_2d=True)
        assert sr == synth.SAMPLE_RATE and audio.shape[1] == synth.CHANNELS
        assert abs(audio.shape[0] - 10 * sr) <= 1
        peak = np.abs(audio).max()
        assert 0.3 < peak < 1.0  # normalised, not clipped
        assert np.sqrt(np.mean(audio**2)) > 0.01  # music, not silence


def test_same_seed_same_keys_labels_and_audio_with_a_process_pool(
    rendered: tuple[Path, synth.SynthSummary], tmp_path: Path
) -> None:
    first = rendered[0]
    again = tmp_path / "again"
    again.mkdir()  # an existing empty folder is fine
    summary = synthesize(again, n_clips=N_CLIPS, seed=SEED, workers=2, progress=False)
    assert not summary.reused
    a, b = _npz(first), _npz(again)
    for name in ("sample_key", "Y_true", "Y_mask"):
        assert np.array_equal(a[name], b[name]), name
    assert _partitions(first) == _partitions(again)
    for name in (synth.STEMS_CSV, "openmic-2018-metadata.csv"):
        assert (first / name).read_bytes() == (again / name).read_bytes()
    for key in a["sample_key"][:3]:  # decoded samples are identical (Ogg serials differ)
        x, _ = sf.read(first / "audio" / key[:3] / f"{key}.ogg")
        y, _ = sf.read(again / "audio" / key[:3] / f"{key}.ogg")
        assert np.array_equal(x, y)


def test_other_seed_differs(tmp_path: Path, rendered: tuple[Path, synth.SynthSummary]) -> None:
    other = synthesize(tmp_path / "o", n_clips=2, seed=SEED + 1, workers=1, progress=False)
    assert set(_npz(other.out)["sample_key"]).isdisjoint(_npz(rendered[0])["sample_key"])


def test_rerun_with_same_parameters_reuses(rendered: tuple[Path, synth.SynthSummary]) -> None:
    root, summary = rendered
    before = (root / "openmic-2018.npz").stat().st_mtime_ns
    again = synthesize(root, n_clips=N_CLIPS, seed=SEED, workers=1, progress=False)
    assert again.reused and (root / "openmic-2018.npz").stat().st_mtime_ns == before
    assert again.present == summary.present and again.n_test == summary.n_test


def test_refuses_to_overwrite(tmp_path: Path, rendered: tuple[Path, synth.SynthSummary]) -> None:
    with pytest.raises(FileExistsError, match="other parameters"):
        synthesize(rendered[0], n_clips=N_CLIPS + 1, seed=SEED, progress=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a complete SynthMIC"):
        synthesize(foreign, n_clips=2, progress=False)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_interrupted_run_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fail(job: synth.TrackJob) -> tuple[synth.ClipRecord, ...]:
        calls.append(job.track_id)
        raise KeyboardInterrupt

    monkeypatch.setattr(synth, "render_track", fail)
    with pytest.raises(KeyboardInterrupt):
        synthesize(tmp_path / "out", n_clips=3, workers=1, progress=False)
    assert calls and not list(tmp_path.iterdir())


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        synthesize(tmp_path / "x", n_clips=0, progress=False)
    with pytest.raises(ValueError):
        synthesize(tmp_path / "x", workers=0, progress=False)
    with pytest.raises(FileNotFoundError):
        synthesize(tmp_path / "x", soundfont=tmp_path / "none.sf2", progress=False)
    assert not (tmp_path / "x").exists()


def test_cli(
    rendered: tuple[Path, synth.SynthSummary],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = argparse.ArgumentParser()
    synth.add_cli(parser.add_subparsers(dest="command"))
    defaults = parser.parse_args(["synth"])
    assert (defaults.out, defaults.clips, defaults.seed) == ("data/raw/synthmic", 400, 0)
    assert defaults.soundfont is None and defaults.workers is None
    args = parser.parse_args(
        ["synth", "--out", str(rendered[0]), "--clips", str(N_CLIPS), "--seed", str(SEED)]
    )
    assert args.func(args) == 0
    assert "already complete" in capsys.readouterr().out
    (tmp_path / "junk").write_text("x")
    args = parser.parse_args(["synth", "--out", str(tmp_path), "--clips", "2", "--workers", "1"])
    assert args.func(args) == 2
    assert "not a complete SynthMIC" in capsys.readouterr().err


def test_progress_reports_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    report = synth.stderr_progress()
    for done in range(1, 21):
        report(done, 20)
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == "synth: 20/20 clips" and 5 <= len(err) <= 11
