"""east_ray.synthmic: the OpenMIC-2018 layout, exact labels, determinism, atomic output, CLI."""

from __future__ import annotations

import csv
import inspect
import itertools
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from east_ray.data.valid_split import group_split
from east_ray.errors import BadValueError
from east_ray.synthmic import _pipeline, synthesize
from east_ray.synthmic.__main__ import build_parser, main
from east_ray.synthmic._arrange import KIT_RING_S, bass_line, drum_pattern, ring_kit_notes
from east_ray.synthmic._format import CHANNELS, SAMPLE_RATE
from east_ray.synthmic._labels import annotate, present_classes
from east_ray.synthmic._manifest import MANIFEST, OutputExistsError, SynthSummary
from east_ray.synthmic._mix import StemRecord, window_notes
from east_ray.synthmic._release import STEMS_CSV
from east_ray.synthmic._render import SoundFontError, default_soundfont, render_stem, renderer
from east_ray.synthmic._scores import Grid, Note, ScoreData
from east_ray.synthmic._taxonomy import (
    CLASS_RANGES,
    CLASSES,
    DISTRACTOR_PROGRAMS,
    gm_program_class,
    kit_key_class,
)
from east_ray.synthmic._track import ClipRecord, TrackJob, clip_starts

N_CLIPS = 8
SEED = 7


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthSummary]:
    out = tmp_path_factory.mktemp("synthmic") / "synthmic"
    summary = synthesize(out, n_clips=N_CLIPS, seed=SEED, workers=1)
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
    for program in (*DISTRACTOR_PROGRAMS, 41, 43, 48, 127):
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
    assert SAMPLE_RATE == 44_100 and CHANNELS == 2  # like OpenMIC


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
    hits = drum_pattern(grid, 32.0, rng)
    assert hits and all(0 <= h.start < 32.0 for h in hits)
    kicks = {h.start for h in hits if h.pitch == 36}
    assert {1.0, 5.0, 9.0} <= kicks  # beat 1 of every bar after the pickup
    rung = ring_kit_notes(hits)
    assert len(rung) == len(hits)
    assert all(0 < n.end - n.start <= KIT_RING_S for n in rung)
    parts = (
        tuple(Note(float(b), b + 1.0, 72, 80) for b in range(16)),
        tuple(Note(float(b), b + 2.0, 55 if b % 4 else 50, 80) for b in range(0, 16, 2)),
    )
    data = ScoreData(1, "x/y.mxl", "bach", parts, grid, 16.0)
    for style in (0, 1, 2):
        line = bass_line(data, style, rng)
        low, high = CLASS_RANGES["bass"]
        assert line and all(low <= n.pitch <= high for n in line)
        assert {n.pitch % 12 for n in line} <= {55 % 12, 50 % 12}  # the lowest sounding notes


def test_clip_starts_do_not_overlap() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 2, 3):
        starts = clip_starts(n * 10.0 + 3.3, n, rng)
        assert len(starts) == n and starts[0] >= 0
        assert all(b - a >= 10_000 for a, b in itertools.pairwise(starts))
        assert starts[-1] + 10_000 <= (n * 10.0 + 3.3) * 1000
    with pytest.raises(ValueError):
        clip_starts(15.0, 2, rng)


# ----------------------------------------------------------------------------- a rendered set


def test_layout_and_file_names(rendered: tuple[Path, SynthSummary]) -> None:
    root, summary = rendered
    for name in (
        "class-map.json",
        "openmic-2018.npz",
        "openmic-2018-aggregated-labels.csv",
        "openmic-2018-metadata.csv",
        "partitions/split01_train.csv",
        "partitions/split01_test.csv",
        "README.txt",
        STEMS_CSV,
        MANIFEST,
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


def test_npz_dtypes_and_shapes(rendered: tuple[Path, SynthSummary]) -> None:
    z = _npz(rendered[0])
    assert set(z) == {"Y_true", "Y_mask", "sample_key"}  # no VGGish `X` in SynthMIC
    assert z["Y_true"].dtype == np.float64 and z["Y_true"].shape == (N_CLIPS, 20)
    assert z["Y_mask"].dtype == bool and z["Y_mask"].shape == (N_CLIPS, 20)
    assert z["sample_key"].dtype == object and z["sample_key"].shape == (N_CLIPS,)
    assert all(type(k) is str for k in z["sample_key"])
    assert list(z["sample_key"]) == sorted(z["sample_key"])


def test_label_values_and_mask(rendered: tuple[Path, SynthSummary]) -> None:
    z = _npz(rendered[0])
    assert set(np.unique(z["Y_true"])) <= {0.0, 0.5, 1.0}
    assert np.array_equal(z["Y_true"] == 0.5, ~z["Y_mask"])
    assert z["Y_mask"].any(axis=1).all()
    i_mandolin, i_ukulele = CLASSES.index("mandolin"), CLASSES.index("ukulele")
    assert not (z["Y_true"][:, [i_mandolin, i_ukulele]] > 0.5).any()


def test_aggregated_csv_agrees_with_npz(rendered: tuple[Path, SynthSummary]) -> None:
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


def test_labels_match_construction(rendered: tuple[Path, SynthSummary]) -> None:
    root, summary = rendered
    z = _npz(root)
    stems = _read_csv(root / STEMS_CSV)
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
    rendered: tuple[Path, SynthSummary],
) -> None:
    # At 10% per present class, a handful of clips with 2-6 instruments each has one.
    assert rendered[1].hidden_positives >= 1


def test_partitions_cover_keys_once_and_are_group_disjoint(
    rendered: tuple[Path, SynthSummary],
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


def test_every_clip_decodes_to_ten_seconds(rendered: tuple[Path, SynthSummary]) -> None:
    root = rendered[0]
    for key in _npz(root)["sample_key"]:
        audio, sr = sf.read(root / "audio" / key[:3] / f"{key}.ogg", always_2d=True)
        assert sr == SAMPLE_RATE and audio.shape[1] == CHANNELS
        assert abs(audio.shape[0] - 10 * sr) <= 1
        peak = np.abs(audio).max()
        assert 0.3 < peak < 1.0  # normalised, not clipped
        assert np.sqrt(np.mean(audio**2)) > 0.01  # music, not silence


def test_same_seed_same_keys_labels_and_audio_with_a_process_pool(
    rendered: tuple[Path, SynthSummary], tmp_path: Path
) -> None:
    first = rendered[0]
    again = tmp_path / "again"
    again.mkdir()  # an existing empty folder is fine
    summary = synthesize(again, n_clips=N_CLIPS, seed=SEED, workers=2)
    assert not summary.reused
    a, b = _npz(first), _npz(again)
    for name in ("sample_key", "Y_true", "Y_mask"):
        assert np.array_equal(a[name], b[name]), name
    assert _partitions(first) == _partitions(again)
    for name in (STEMS_CSV, "openmic-2018-metadata.csv"):
        assert (first / name).read_bytes() == (again / name).read_bytes()
    for key in a["sample_key"][:3]:  # decoded samples are identical (Ogg serials differ)
        x, _ = sf.read(first / "audio" / key[:3] / f"{key}.ogg")
        y, _ = sf.read(again / "audio" / key[:3] / f"{key}.ogg")
        assert np.array_equal(x, y)


def test_other_seed_differs_and_renders_without_a_bar_off_a_terminal(
    tmp_path: Path,
    rendered: tuple[Path, SynthSummary],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="east_ray.synthmic"):
        other = synthesize(tmp_path / "o", n_clips=2, seed=SEED + 1, workers=1)
    assert set(_npz(other.out)["sample_key"]).isdisjoint(_npz(rendered[0])["sample_key"])
    assert capsys.readouterr().err == ""  # tqdm shows its bar on a terminal only
    assert [r.getMessage() for r in caplog.records] == [
        f"SynthMIC: rendering 2 clips of {other.n_tracks} tracks into {tmp_path / 'o'}"
    ]


def test_rerun_with_same_parameters_reuses(rendered: tuple[Path, SynthSummary]) -> None:
    root, summary = rendered
    before = (root / "openmic-2018.npz").stat().st_mtime_ns
    again = synthesize(root, n_clips=N_CLIPS, seed=SEED, workers=1)
    assert again.reused and (root / "openmic-2018.npz").stat().st_mtime_ns == before
    assert again.present == summary.present and again.n_test == summary.n_test


def test_refuses_to_overwrite(tmp_path: Path, rendered: tuple[Path, SynthSummary]) -> None:
    with pytest.raises(OutputExistsError, match="other parameters"):
        synthesize(rendered[0], n_clips=N_CLIPS + 1, seed=SEED)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not a complete SynthMIC"):
        synthesize(foreign, n_clips=2)
    assert (foreign / "notes.txt").read_text() == "mine"
    with pytest.raises(OutputExistsError, match="not a folder"):
        synthesize(foreign / "notes.txt", n_clips=2)
    assert issubclass(OutputExistsError, FileExistsError)


def test_interrupted_run_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fail(job: TrackJob) -> tuple[ClipRecord, ...]:
        calls.append(job.track_id)
        raise KeyboardInterrupt

    monkeypatch.setattr(_pipeline, "render_track", fail)
    with pytest.raises(KeyboardInterrupt):
        synthesize(tmp_path / "out", n_clips=3, workers=1)
    assert calls and not list(tmp_path.iterdir())


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(BadValueError, match=r"n_clips \(--clips\): must be >= 1, got 0"):
        synthesize(tmp_path / "x", n_clips=0)
    with pytest.raises(BadValueError, match=r"--seed"):
        synthesize(tmp_path / "x", seed=-1)
    with pytest.raises(BadValueError, match=r"--workers"):
        synthesize(tmp_path / "x", workers=0)
    with pytest.raises(FileNotFoundError) as missing:
        synthesize(tmp_path / "x", soundfont=tmp_path / "none.sf2")
    assert missing.value.filename == str(tmp_path / "none.sf2")
    junk = tmp_path / "junk.sf2"
    junk.write_bytes(b"not a SoundFont")
    with pytest.raises(SoundFontError, match="not a readable SoundFont"):
        synthesize(tmp_path / "x", n_clips=2, soundfont=junk, workers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.sf2"]


def test_a_reused_renderer_renders_a_stem_identically() -> None:
    # Each process keeps one synthesiser for all its tracks; every stem must start afresh.
    r = renderer(str(default_soundfont()))
    assert renderer(str(default_soundfont())) is r
    notes = (Note(0.0, 0.5, 60, 100), Note(0.25, 1.0, 67, 90))
    first = render_stem(r, notes, program=0, is_drum=False, n_frames=SAMPLE_RATE, pan=40)
    held = (Note(0.0, 5.0, 36, 127), Note(0.5, 5.0, 49, 127))  # still sounding at the end
    render_stem(r, held, program=0, is_drum=True, n_frames=SAMPLE_RATE)
    render_stem(r, held, program=48, is_drum=False, n_frames=SAMPLE_RATE, pan=100)
    again = render_stem(r, notes, program=0, is_drum=False, n_frames=SAMPLE_RATE, pan=40)
    assert first.shape == (SAMPLE_RATE, 2) and np.abs(first).max() > 0.01
    assert np.array_equal(first, again)


def test_cli(
    rendered: tuple[Path, SynthSummary],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    defaults = build_parser().parse_args([])
    assert (defaults.out, defaults.seed) == ("data/raw/synthmic", 0)
    # the CLI renders what the demo renders (synthesize's defaults) into the demo's folder
    assert defaults.clips == inspect.signature(synthesize).parameters["n_clips"].default
    assert defaults.soundfont is None and defaults.workers is None
    assert not defaults.verbose and not defaults.quiet
    reuse = ["--out", str(rendered[0]), "--clips", str(N_CLIPS), "--seed", str(SEED)]
    assert main(reuse) == 0
    out, err = capsys.readouterr()
    assert f"SynthMIC {rendered[0]}: {N_CLIPS} clips" in out and "already complete" in out
    assert "already complete with these parameters" in err  # the log line
    assert main([*reuse, "-q"]) == 0
    assert capsys.readouterr().err == ""
    (tmp_path / "junk").write_text("x")
    assert main(["--out", str(tmp_path), "--clips", "2", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out ") and "not a complete SynthMIC" in err
    assert err.count("\n") == 1  # one line, no traceback
    assert main(["--out", str(tmp_path / "new"), "--clips", "0"]) == 2
    assert capsys.readouterr().err == "error: n_clips (--clips): must be >= 1, got 0\n"
    missing = tmp_path / "none.sf2"
    assert main(["--out", str(tmp_path / "new"), "--soundfont", str(missing)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {missing}: SoundFont not found")
    assert not (tmp_path / "new").exists()
