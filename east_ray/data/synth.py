"""SynthMIC: render a small, exactly labelled demo set in the OpenMIC-2018 release layout.

One job: write a synthetic but musically real dataset that the OpenMIC reader reads exactly
as it reads the real release (DESIGN §2), so the demo study exercises the same code path.

How a clip is made. A *track* is one rendering of a real score from music21's bundled
corpus (Bach chorales, Monteverdi madrigals, Palestrina mass sections, Trecento pieces,
Haydn/Mozart/Beethoven quartet movements; a fixed, seeded draw). Each track keeps 1-4 of the
score's parts, gives every kept part a General-MIDI program drawn from the instrument pool
(octave-shifted into that instrument's range), and may add a bass line that follows the
lowest sounding note of the score on every beat and a generated drum pattern on the GM
percussion kit. Every stem is rendered on its own with tinysoundfont (pretty_midi's
``TimGM6mb.sf2`` by default, any .sf2 by option); the stems are mixed with seeded gains
(-12..0 dB) and the mix is peak-normalised to -3 dBFS (Vorbis overshoots a little). 1-3
clips of exactly 10.0 s are cut from each track at non-overlapping offsets;
``sample_key = f"{track_id:06d}_{start_ms}"``.

Audio is **44.1 kHz stereo** OGG Vorbis, like OpenMIC, so the demo also exercises the
readers' downmix and resampling; parts get a seeded MIDI pan. That is fast enough: 400
clips took 41 s in `synthesize` (44 s wall for ``python -m east_ray.data synth --workers 2``)
on a 2-core machine shared with other jobs. Of the CPU time, about 40% is Vorbis encoding,
35% music21 parsing and 20% synthesis; 32 kHz mono would cut the encoding roughly by half.

Labels are exact by construction. Only the notes that overlap the 10 s window (by at least
``MIN_NOTE_OVERLAP_S``; drum hits: onsets inside the window) are rendered, so nothing outside
the window leaks in. A class is *present* iff one of its stems has such notes and is audible
(its peak is within ``AUDIBLE_DB`` of the loudest stem; a stem that renders silent is left out
of the mix). GM programs map to the 20 OpenMIC classes with :func:`gm_program_class`; the kit's
crash/ride/splash/china notes are ``cymbals``, its other notes ``drums``. Mandolin and
ukulele have no GM program and are never present; a few parts get programs outside the
taxonomy (harp, oboe, horn, ...), which are present in the audio but are no class. Like
OpenMIC, not every class is annotated: present classes are annotated positive (relevance 1.0)
except a seeded ``P_HIDE_POSITIVE`` of them, absent classes are annotated negative (0.0) with
probability ``P_NEGATIVE``, and the rest stay unobserved (exactly 0.5, ``Y_mask`` False).

Files (names as in the OpenMIC release): ``class-map.json``, ``openmic-2018.npz``
(``Y_true``, ``Y_mask``, ``sample_key``), ``openmic-2018-aggregated-labels.csv``,
``openmic-2018-metadata.csv``, ``partitions/split01_{train,test}.csv`` (group-disjoint by
source score, about 75/25), ``audio/<key[:3]>/<key>.ogg``. SynthMIC has no VGGish model, so
the npz has **no** ``X`` and there is **no** ``vggish/`` folder. Extra files:
``README.txt``, ``synthmic-stems.csv`` (the full construction truth, one row per stem and clip,
including present-but-unannotated classes) and ``synthmic.json`` (parameters and summary,
written last: its presence marks a complete set).

Determinism: the same ``n_clips``, ``seed``, SoundFont and music21 version give the same keys,
labels, splits and decoded audio whatever ``workers`` is. The OGG *bytes* differ between runs
because libsndfile draws a random Ogg stream serial number; the decoded samples do not.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.metadata
import importlib.util
import json
import math
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

FORMAT_NAME = "SynthMIC"
FORMAT_VERSION = 1
MANIFEST = "synthmic.json"
STEMS_CSV = "synthmic-stems.csv"

CLASSES: tuple[str, ...] = (
    "accordion",
    "banjo",
    "bass",
    "cello",
    "clarinet",
    "cymbals",
    "drums",
    "flute",
    "guitar",
    "mallet_percussion",
    "mandolin",
    "organ",
    "piano",
    "saxophone",
    "synthesizer",
    "trombone",
    "trumpet",
    "ukulele",
    "violin",
    "voice",
)

CLIP_SECONDS = 10.0
SAMPLE_RATE = 44_100
CHANNELS = 2
MIN_NOTE_OVERLAP_S = 0.1  # a held note must sound this long inside the window to be rendered
AUDIBLE_DB = -40.0  # a stem quieter than this relative to the loudest stem counts as absent
STEM_GAIN_DB = (-12.0, 0.0)
PEAK_DBFS = -3.0  # headroom: Vorbis overshoots the peak by up to ~1 dB
P_NEGATIVE = 0.5  # chance that an absent class is annotated negative
P_HIDE_POSITIVE = 0.1  # chance that a present class is left unannotated
TEST_FRACTION = 0.25
KIT_RING_S = 2.0  # kit hits ring until the next hit of the same key, at most this long
DRUM_CHANNEL = 9
MELODIC_CHANNEL = 0
_FLUSH_FRAMES = 2048  # rendered and discarded after `sounds_off`, so every stem starts silent

# GM programs (0-based) of each OpenMIC class. Harmonica (22) is a free reed but no accordion.
CLASS_PROGRAMS: Mapping[str, tuple[int, ...]] = {
    "accordion": (21, 23),
    "banjo": (105,),
    "bass": tuple(range(32, 40)),
    "cello": (42,),
    "clarinet": (71,),
    "flute": (73,),
    "guitar": tuple(range(24, 32)),
    "mallet_percussion": tuple(range(8, 16)),
    "organ": tuple(range(16, 21)),
    "piano": tuple(range(0, 8)),
    "saxophone": tuple(range(64, 68)),
    "synthesizer": tuple(range(80, 96)),
    "trombone": (57,),
    "trumpet": (56,),
    "violin": (40,),
    "voice": (52, 53, 54),
}
# Programs that clearly belong to no OpenMIC class: harmonica, harp, tuba, horn, oboe, bassoon.
DISTRACTOR_PROGRAMS: tuple[int, ...] = (22, 46, 58, 60, 68, 70)
P_DISTRACTOR = 0.1
# GM percussion keys that are cymbals: crash 1, ride 1, china, ride bell, splash, crash 2, ride 2.
CYMBAL_KEYS = frozenset({49, 51, 52, 53, 55, 57, 59})
# GM drum kits (bank 128): standard, room, power, electronic, TR-808, jazz, brush.
KITS: tuple[int, ...] = (0, 8, 16, 24, 25, 32, 40)
P_BASS = 0.45
P_DRUMS = 0.45

# Playing range (MIDI keys) used to place a part in the register of its instrument.
CLASS_RANGES: Mapping[str, tuple[int, int]] = {
    "accordion": (53, 89),
    "banjo": (48, 84),
    "bass": (28, 55),
    "cello": (36, 76),
    "clarinet": (50, 91),
    "flute": (60, 96),
    "guitar": (40, 84),
    "mallet_percussion": (60, 96),
    "organ": (36, 96),
    "piano": (28, 100),
    "saxophone": (49, 81),
    "synthesizer": (36, 96),
    "trombone": (40, 72),
    "trumpet": (55, 82),
    "violin": (55, 100),
    "voice": (48, 81),
}
DISTRACTOR_RANGES: Mapping[int, tuple[int, int]] = {
    22: (60, 96),
    46: (36, 96),
    58: (28, 58),
    60: (41, 77),
    68: (58, 91),
    70: (34, 75),
}

# Corpus collections: (file suffix, largest file in bytes, draw weight, composer).
COLLECTIONS: Mapping[str, tuple[str, int, float, str]] = {
    "bach": (".mxl", 12_000, 0.40, "Johann Sebastian Bach"),
    "palestrina": (".krn", 6_000, 0.20, "Giovanni Pierluigi da Palestrina"),
    "monteverdi": (".mxl", 40_000, 0.15, "Claudio Monteverdi"),
    "trecento": (".xml", 400_000, 0.15, "Trecento (PMFC)"),
    "haydn": (".mxl", 20_000, 0.03, "Joseph Haydn"),
    "mozart": (".mxl", 20_000, 0.06, "Wolfgang Amadeus Mozart"),
    "beethoven": (".mxl", 20_000, 0.01, "Ludwig van Beethoven"),
}
_CANDIDATES_PER_TRACK = 4
METADATA_COLUMNS = (
    "sample_key",
    "track_id",
    "artist_id",
    "artist_name",
    "track_title",
    "source",
    "start_ms",
    "tempo_bpm",
)
STEMS_COLUMNS = (
    "sample_key",
    "stem",
    "instrument",
    "gm_program",
    "is_drum",
    "gain_db",
    "notes",
    "audible",
    "present",
)
# Seed-sequence streams, so that plan, tracks, labels and splits draw independently.
_PLAN, _TRACK, _LABEL, _SPLIT = 1, 2, 3, 4


# ----------------------------------------------------------------------------- GM mapping


_PROGRAM_CLASS: dict[int, str] = {p: c for c, ps in CLASS_PROGRAMS.items() for p in ps}


def gm_program_class(program: int) -> str | None:
    """OpenMIC class of a (0-based) General-MIDI program, or None when it has none."""
    if not 0 <= program <= 127:
        raise ValueError(f"GM program must be in 0..127, got {program}")
    return _PROGRAM_CLASS.get(program)


def kit_key_class(key: int) -> str:
    """OpenMIC class of a GM percussion-kit key: ``cymbals`` or ``drums``."""
    if not 0 <= key <= 127:
        raise ValueError(f"MIDI key must be in 0..127, got {key}")
    return "cymbals" if key in CYMBAL_KEYS else "drums"


def program_range(program: int) -> tuple[int, int]:
    """Playing range (lowest, highest MIDI key) used to place a part for this program."""
    cls = gm_program_class(program)
    if cls is not None:
        return CLASS_RANGES[cls]
    return DISTRACTOR_RANGES.get(program, (36, 96))


# ----------------------------------------------------------------------------- notes


@dataclass(frozen=True)
class Note:
    """One note; times in quarter lengths or seconds depending on context."""

    start: float
    end: float
    pitch: int
    velocity: int


@dataclass(frozen=True)
class Grid:
    """The score's metre: bar and beat length in quarter lengths; bar 1 starts at `origin`."""

    bar: float
    beat: float
    beats_per_bar: int
    origin: float


@dataclass(frozen=True)
class ScoreData:
    """The notes of a parsed score, one tuple per part, in quarter lengths."""

    score_id: int
    path: str
    collection: str
    parts: tuple[tuple[Note, ...], ...]
    grid: Grid
    length: float


@dataclass(frozen=True)
class Stem:
    """One rendered part of a track: notes in seconds and how it is mixed."""

    name: str
    program: int
    is_drum: bool
    label: str | None
    gain_db: float
    pan: int
    notes: tuple[Note, ...]


@dataclass(frozen=True)
class StemRecord:
    """What one stem contributed to one clip (the construction truth)."""

    name: str
    program: int
    is_drum: bool
    label: str | None
    gain_db: float
    n_notes: int
    audible: bool


@dataclass(frozen=True)
class ClipRecord:
    """One rendered clip and where it came from."""

    sample_key: str
    track_id: int
    start_ms: int
    score_id: int
    score_path: str
    composer: str
    title: str
    tempo_bpm: float
    stems: tuple[StemRecord, ...]


@dataclass(frozen=True)
class TrackJob:
    """Everything a worker needs to render one track: pure data, picklable."""

    track_id: int
    candidates: tuple[tuple[int, str], ...]  # (score_id, corpus-relative path), first that parses
    n_clips: int
    seed: int
    programs: tuple[int, ...]  # melodic programs the SoundFont has
    kits: tuple[int, ...]  # drum kits the SoundFont has
    audio_dir: str


@dataclass(frozen=True)
class SynthSummary:
    """What `synthesize` wrote (or found already written)."""

    out: Path
    n_clips: int
    n_tracks: int
    n_scores: int
    n_train: int
    n_test: int
    sample_rate: int
    channels: int
    seed: int
    soundfont: str
    present: tuple[int, ...]  # clips with the class present, per class (construction truth)
    annotated_positive: tuple[int, ...]
    annotated_negative: tuple[int, ...]
    annotated_fraction: float
    hidden_positives: int  # present but unannotated (clip, class) pairs
    seconds: float
    reused: bool


def window_notes(
    notes: Iterable[Note], start: float, duration: float, *, onsets_only: bool = False
) -> tuple[Note, ...]:
    """The notes that sound in ``[start, start + duration)``, shifted to the window and clipped.

    A held note counts when it overlaps the window by at least ``MIN_NOTE_OVERLAP_S``; with
    ``onsets_only`` (kit hits) a note counts when it starts inside the window, at least that
    long before its end. Only these notes are rendered, so the labels follow from them exactly.
    """
    end = start + duration
    kept: list[Note] = []
    for n in notes:
        if onsets_only:
            if not start <= n.start <= end - MIN_NOTE_OVERLAP_S:
                continue
        elif min(n.end, end) - max(n.start, start) < MIN_NOTE_OVERLAP_S:
            continue
        kept.append(Note(max(n.start, start) - start, min(n.end, end) - start, n.pitch, n.velocity))
    return tuple(kept)


def present_classes(stems: Iterable[StemRecord]) -> frozenset[str]:
    """Classes present in a clip: those of stems that have notes in it and are audible."""
    return frozenset(s.label for s in stems if s.label is not None and s.n_notes > 0 and s.audible)


def annotate(
    present: frozenset[str],
    rng: np.random.Generator,
    *,
    p_negative: float = P_NEGATIVE,
    p_hide: float = P_HIDE_POSITIVE,
) -> tuple[np.ndarray, np.ndarray]:
    """One clip's ``(Y_true, Y_mask)`` rows: float64 and bool, both of length 20.

    Present classes are positive (1.0) unless hidden with probability ``p_hide``; absent ones
    are negative (0.0) with probability ``p_negative``; everything else is unobserved: exactly
    0.5 and unmasked. At least one class is always annotated (truthfully).
    """
    unknown = present - set(CLASSES)
    if unknown:
        raise ValueError(f"unknown classes: {sorted(unknown)}")
    y = np.full(len(CLASSES), 0.5, dtype=np.float64)
    mask = np.zeros(len(CLASSES), dtype=bool)
    draws = rng.random(len(CLASSES))
    for i, cls in enumerate(CLASSES):
        if cls in present:
            if draws[i] >= p_hide:
                y[i], mask[i] = 1.0, True
        elif draws[i] < p_negative:
            y[i], mask[i] = 0.0, True
    if not mask.any():
        i = int(rng.integers(len(CLASSES)))
        y[i], mask[i] = (1.0 if CLASSES[i] in present else 0.0), True
    return y, mask


def group_split(
    keys: Sequence[str], groups: Sequence[int], rng: np.random.Generator, test_fraction: float
) -> tuple[frozenset[str], frozenset[str]]:
    """(train, test) keys, disjoint by group; whole groups go to test until it holds its share.

    With at least two groups, both sides are non-empty.
    """
    if len(keys) != len(groups):
        raise ValueError("keys and groups differ in length")
    unique = sorted(set(groups))
    order = [unique[i] for i in rng.permutation(len(unique))]
    count = {g: 0 for g in unique}
    for g in groups:
        count[g] += 1
    target = round(test_fraction * len(keys))
    test_groups: set[int] = set()
    n_test = 0
    for g in order[:-1]:  # the last group always stays in train
        if n_test >= max(target, 1):
            break
        test_groups.add(g)
        n_test += count[g]
    test = frozenset(k for k, g in zip(keys, groups, strict=True) if g in test_groups)
    return frozenset(keys) - test, test


# ----------------------------------------------------------------------------- scores


def _corpus_root() -> Path:
    from music21 import common

    return Path(common.getCorpusFilePath())


def score_catalogue() -> tuple[tuple[int, str, str], ...]:
    """Eligible corpus scores as ``(score_id, relative path, collection)``, sorted by path.

    `score_id` is the position in this list: stable for a given music21 version.
    """
    from music21 import corpus

    root = _corpus_root()
    found: list[tuple[str, str]] = []
    for p in corpus.getPaths():
        rel = Path(p).relative_to(root).as_posix()
        coll = rel.split("/", 1)[0]
        rule = COLLECTIONS.get(coll)
        if rule is None or not rel.endswith(rule[0]):
            continue
        if (root / rel).stat().st_size <= rule[1]:
            found.append((rel, coll))
    found.sort()
    return tuple((i, rel, coll) for i, (rel, coll) in enumerate(found))


def _score_title(path: str) -> str:
    rel = path.split("/", 1)[1] if "/" in path else path
    return rel.rsplit(".", 1)[0]


def _part_notes(part: Any) -> tuple[Note, ...]:
    """A music21 part's notes (chords split), tied notes merged into one; quarter lengths.

    Merges ties itself: music21's `stripTies` deep-copies the part, which cost most of the
    parse time.
    """
    notes: list[Note] = []
    open_ties: dict[int, int] = {}  # MIDI key -> index of the note a tie continues
    for el in part.flatten().notes:
        ql = float(el.quarterLength)
        if ql <= 0:  # grace notes
            continue
        start = float(el.offset)
        vel = getattr(el.volume, "velocity", None)
        members = el.notes if el.isChord else (el,)
        for member in members:
            pitch = getattr(member, "pitch", None)
            if pitch is None:  # unpitched percussion
                continue
            key = int(pitch.midi)
            tie = member.tie.type if member.tie is not None else None
            held = open_ties.get(key)
            if held is not None and tie in ("stop", "continue"):
                prev = notes[held]
                if abs(prev.end - start) < 1e-6:
                    notes[held] = Note(prev.start, start + ql, key, prev.velocity)
                    if tie == "stop":
                        del open_ties[key]
                    continue
            notes.append(Note(start, start + ql, key, int(vel or 0)))
            if tie in ("start", "continue"):
                open_ties[key] = len(notes) - 1
            else:
                open_ties.pop(key, None)
    return tuple(sorted(notes, key=lambda n: (n.start, n.pitch)))


def load_score(score_id: int, path: str) -> ScoreData | None:
    """Parse a corpus score into parts of notes (ties merged); None if it has < 2 usable parts."""
    from music21 import corpus, meter, stream

    collection = path.split("/", 1)[0]
    score = corpus.parse(_corpus_root() / path, forceSource=True)
    parts: list[tuple[Note, ...]] = []
    for part in score.parts:
        notes = _part_notes(part)
        if len(notes) >= 4:
            parts.append(notes)
    if len(parts) < 2:
        return None
    first = score.parts[0]
    ts = first.recurse().getElementsByClass(meter.TimeSignature).first()
    if ts is None:
        ts = meter.TimeSignature("4/4")
    bar = float(ts.barDuration.quarterLength)
    beat = float(ts.beatDuration.quarterLength)
    beats = max(1, round(bar / beat))
    measures = list(first.getElementsByClass(stream.Measure))
    origin = 0.0
    if len(measures) > 1 and float(measures[0].duration.quarterLength) < bar:
        origin = float(measures[1].offset)  # a pickup bar
    length = max(n.end for p in parts for n in p)
    return ScoreData(
        score_id, path, collection, tuple(parts), Grid(bar, beat, beats, origin), length
    )


def loop_score(data: ScoreData, min_length: float) -> ScoreData:
    """The score repeated (da capo) until it lasts at least `min_length` quarter lengths."""
    if data.length >= min_length:
        return data
    times = math.ceil(min_length / data.length)
    parts = tuple(
        tuple(
            Note(n.start + k * data.length, n.end + k * data.length, n.pitch, n.velocity)
            for k in range(times)
            for n in part
        )
        for part in data.parts
    )
    return ScoreData(
        data.score_id, data.path, data.collection, parts, data.grid, data.length * times
    )


# ----------------------------------------------------------------------------- arranging


def place_in_range(notes: Sequence[Note], low: int, high: int) -> tuple[Note, ...]:
    """Shift a part by octaves so its median lies mid-range, then fold stray notes inside."""
    if not notes:
        return ()
    median = float(np.median([n.pitch for n in notes]))
    shift = 12 * round(((low + high) / 2 - median) / 12)
    placed: list[Note] = []
    for n in notes:
        p = n.pitch + shift
        while p < low:
            p += 12
        while p > high:
            p -= 12
        placed.append(Note(n.start, n.end, max(0, min(127, p)), n.velocity))
    return tuple(placed)


def bass_line(data: ScoreData, style: int, rng: np.random.Generator) -> tuple[Note, ...]:
    """A bass part on the lowest sounding note of the score, per beat (quarter lengths).

    style 0: one note per beat; 1: one per two beats; 2: two per beat (root, then octave).
    """
    notes = [n for part in data.parts for n in part]
    starts = np.array([n.start for n in notes])
    ends = np.array([n.end for n in notes])
    pitches = np.array([n.pitch for n in notes])
    step = data.grid.beat * (2 if style == 1 else 1)
    times = np.arange(data.grid.origin % step, data.length, step)
    sounding = (starts[None, :] <= times[:, None] + 1e-9) & (ends[None, :] > times[:, None] + 1e-9)
    low, high = CLASS_RANGES["bass"]
    out: list[Note] = []
    for t, row in zip(times, sounding, strict=True):
        if not row.any():
            continue
        root = int(pitches[row].min())
        while root > 47:
            root -= 12
        while root < low:
            root += 12
        vel = int(rng.integers(80, 101))
        if style == 2:
            half = step / 2
            second = root + 12 if root + 12 <= high else root
            out.append(Note(float(t), float(t) + 0.9 * half, root, vel))
            out.append(Note(float(t) + half, float(t) + 1.8 * half, second, max(1, vel - 12)))
        else:
            out.append(Note(float(t), float(t) + 0.9 * step, root, vel))
    return tuple(out)


def drum_pattern(grid: Grid, length: float, rng: np.random.Generator) -> tuple[Note, ...]:
    """A seeded groove on the GM kit over the score's bars (quarter lengths, short notes).

    Kick and snare every bar; a time-keeper (closed/pedal/open hi-hat or ride); optionally a
    crash at phrase starts, an accent (splash/china) and tom fills.
    """
    n = grid.beats_per_bar
    kicks = [0.0] + ([n // 2] if n >= 4 else [])
    kicks += [b + 0.5 for b in range(n) if rng.random() < 0.12]
    snares = [float(b) for b in range(1, n, 2)] if n != 3 else [1.0, 2.0]
    keeper = int(rng.choice([42, 42, 42, 44, 46, 46, 51, 53]))
    per_beat = 1 if keeper in (44, 53) else 2
    crash_every = int(rng.choice([0, 0, 4, 8]))
    crash_key = int(rng.choice([49, 57]))
    accent = int(rng.choice([0, 0, 0, 0, 55, 52]))
    fill_every = int(rng.choice([0, 4, 8]))
    hits: list[tuple[float, int, int]] = []  # (beat position in bar, key, base velocity)
    hits += [(k, 36, 105) for k in kicks]
    hits += [(s, 38, 96) for s in snares]
    for b in range(n):
        for j in range(per_beat):
            pos = b + j / per_beat
            key = keeper if keeper != 46 else (46 if j == 1 else 42)
            hits.append((pos, key, 80 if j == 0 else 64))
    out: list[Note] = []
    bar_start = grid.origin - grid.bar * math.ceil(grid.origin / grid.bar)
    index = 0
    while bar_start < length:
        fill = fill_every > 0 and index % fill_every == fill_every - 1
        bar_hits = [h for h in hits if not (fill and h[0] >= n - 1)]
        if fill:
            bar_hits += [(n - 1 + i / 4, k, 90) for i, k in enumerate((50, 48, 47, 45))]
        if crash_every and index % crash_every == 0:
            bar_hits.append((0.0, crash_key, 100))
        if accent and index % 4 == 2:
            bar_hits.append((float(n - 1), accent, 90))
        for pos, key, vel in bar_hits:
            t = bar_start + pos * grid.beat
            if 0 <= t < length:
                v = int(np.clip(vel + rng.integers(-6, 7), 1, 127))
                out.append(Note(t, t + 0.25 * grid.beat, key, v))
        bar_start += grid.bar
        index += 1
    return tuple(sorted(out, key=lambda x: (x.start, x.pitch)))


def ring_kit_notes(notes: Sequence[Note]) -> tuple[Note, ...]:
    """Let each kit hit ring until the next hit of the same key, at most ``KIT_RING_S``."""
    by_key: dict[int, list[Note]] = {}
    for n in sorted(notes, key=lambda x: x.start):
        by_key.setdefault(n.pitch, []).append(n)
    out: list[Note] = []
    for hits in by_key.values():
        for i, n in enumerate(hits):
            nxt = hits[i + 1].start if i + 1 < len(hits) else math.inf
            out.append(Note(n.start, min(nxt, n.start + KIT_RING_S), n.pitch, n.velocity))
    return tuple(sorted(out, key=lambda x: (x.start, x.pitch)))


def _to_seconds(notes: Iterable[Note], seconds_per_ql: float) -> tuple[Note, ...]:
    return tuple(
        Note(n.start * seconds_per_ql, n.end * seconds_per_ql, n.pitch, n.velocity) for n in notes
    )


def _velocity(v: int, rng: np.random.Generator) -> int:
    base = v if v > 0 else 88
    return int(np.clip(base + rng.integers(-8, 9), 30, 127))


def choose_tempo(data: ScoreData, rng: np.random.Generator) -> float:
    """Quarter notes per minute that make the score's median note last 0.35-0.65 s."""
    median_ql = float(np.median([n.end - n.start for p in data.parts for n in p]))
    target = float(rng.uniform(0.35, 0.65))
    return float(np.clip(60.0 * median_ql / target, 40.0, 240.0))


def arrange(
    data: ScoreData,
    bpm: float,
    rng: np.random.Generator,
    programs: Sequence[int],
    kits: Sequence[int],
) -> tuple[Stem, ...]:
    """The stems of one track at `bpm` quarter notes per minute, notes in seconds."""
    spq = 60.0 / bpm
    available = set(programs)
    classes = [
        c for c in CLASS_PROGRAMS if c != "bass" and any(p in available for p in CLASS_PROGRAMS[c])
    ]
    distractors = [p for p in DISTRACTOR_PROGRAMS if p in available]
    n_keep = int(rng.integers(1, min(4, len(data.parts)) + 1))
    keep = sorted(int(i) for i in rng.choice(len(data.parts), size=n_keep, replace=False))
    chosen = list(rng.choice(classes, size=min(n_keep, len(classes)), replace=False))
    stems: list[Stem] = []
    for j, idx in enumerate(keep):
        if j > 0 and distractors and rng.random() < P_DISTRACTOR:
            program = int(rng.choice(distractors))
        else:
            cls = str(chosen[j % len(chosen)])
            program = int(rng.choice([p for p in CLASS_PROGRAMS[cls] if p in available]))
        low, high = program_range(program)
        notes = [Note(n.start, n.end, n.pitch, _velocity(n.velocity, rng)) for n in data.parts[idx]]
        stems.append(
            Stem(
                name=f"part{idx + 1}",
                program=program,
                is_drum=False,
                label=gm_program_class(program),
                gain_db=float(rng.uniform(*STEM_GAIN_DB)),
                pan=int(rng.integers(24, 104)),
                notes=_to_seconds(place_in_range(notes, low, high), spq),
            )
        )
    bass_programs = [p for p in CLASS_PROGRAMS["bass"] if p in available]
    if bass_programs and rng.random() < P_BASS:
        program = int(rng.choice(bass_programs))
        line = bass_line(data, int(rng.integers(3)), rng)
        gain = float(rng.uniform(*STEM_GAIN_DB))
        stems.append(Stem("bass", program, False, "bass", gain, 64, _to_seconds(line, spq)))
    if kits and rng.random() < P_DRUMS:
        kit = int(rng.choice(list(kits)))
        hits = ring_kit_notes(_to_seconds(drum_pattern(data.grid, data.length, rng), spq))
        gain = float(rng.uniform(*STEM_GAIN_DB))
        for label in ("drums", "cymbals"):
            own = tuple(n for n in hits if kit_key_class(n.pitch) == label)
            stems.append(Stem(label, kit, True, label, gain, 64, own))
    return tuple(stems)


def clip_starts(length_s: float, n: int, rng: np.random.Generator) -> tuple[int, ...]:
    """`n` non-overlapping 10 s window offsets in whole milliseconds, ascending.

    Requires ``length_s >= n * CLIP_SECONDS``: the track is cut into `n` equal segments and
    one window is placed at a random offset inside each.
    """
    seg = length_s / n
    if seg < CLIP_SECONDS:
        raise ValueError(f"{length_s:.2f} s is too short for {n} clips")
    starts = []
    for i in range(n):
        lo = i * seg
        s = lo + float(rng.uniform(0.0, seg - CLIP_SECONDS))
        starts.append(math.floor(s * 1000))
    return tuple(starts)


# ----------------------------------------------------------------------------- rendering


@dataclass
class _WorkerState:
    synth: Any
    sfid: int
    sample_rate: int


_WORKER: dict[str, _WorkerState] = {}  # "state": this process's synthesizer


def _init_worker(soundfont: str, sample_rate: int) -> None:
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=sample_rate)
    sfid = int(synth.sfload(soundfont))
    _WORKER["state"] = _WorkerState(synth, sfid, sample_rate)


def soundfont_presets(soundfont: Path) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(melodic GM programs, drum kits among `KITS`) that the SoundFont defines."""
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=SAMPLE_RATE)
    try:
        sfid = synth.sfload(str(soundfont))
    except Exception as err:
        raise ValueError(f"{soundfont}: not a readable SoundFont ({err})") from err
    programs = tuple(p for p in range(128) if synth.sfpreset_name(sfid, 0, p) is not None)
    kits = tuple(k for k in KITS if synth.sfpreset_name(sfid, 128, k) is not None)
    return programs, kits


def render_stem(
    synth: Any,
    sfid: int,
    notes: Sequence[Note],
    *,
    program: int,
    is_drum: bool,
    n_frames: int,
    sample_rate: int,
    pan: int = 64,
) -> np.ndarray:
    """Render notes (seconds, window-relative) on one program: float32 ``(n_frames, 2)``."""
    synth.sounds_off()
    synth.generate_simple(_FLUSH_FRAMES)  # quick releases finish; discarded
    chan = DRUM_CHANNEL if is_drum else MELODIC_CHANNEL
    synth.program_select(chan, sfid, 0, program, is_drums=is_drum)
    synth.control_change(chan, 10, pan)
    events: list[tuple[int, int, int, int]] = []  # (frame, on?, key, velocity); offs first
    for n in notes:
        on = round(n.start * sample_rate)
        off = round(n.end * sample_rate)
        if on >= n_frames:
            continue
        events.append((on, 1, n.pitch, n.velocity))
        if off < n_frames:
            events.append((off, 0, n.pitch, 0))
    events.sort()
    out = np.zeros((n_frames, 2), dtype=np.float32)
    view = out.data.cast("B")
    width = 2 * out.itemsize
    pos = 0
    for frame, on_, key, vel in events:
        if frame > pos:
            synth.generate_simple(frame - pos, buffer=view[pos * width : frame * width])
            pos = frame
        if on_:
            synth.noteon(chan, key, vel)
        else:
            synth.noteoff(chan, key)
    if pos < n_frames:
        synth.generate_simple(n_frames - pos, buffer=view[pos * width :])
    synth.sounds_off()
    return out


def mix_clip(
    stems: Sequence[Stem], start_s: float, state: _WorkerState
) -> tuple[np.ndarray, tuple[StemRecord, ...]]:
    """Render and mix one 10 s window: float32 audio ``(frames, CHANNELS)`` or ``(frames,)``
    for mono, and what each stem contributed (the construction truth)."""
    n_frames = round(CLIP_SECONDS * state.sample_rate)
    rendered: list[np.ndarray | None] = []
    counts: list[int] = []
    for stem in stems:
        notes = window_notes(stem.notes, start_s, CLIP_SECONDS, onsets_only=stem.is_drum)
        counts.append(len(notes))
        if not notes:
            rendered.append(None)
            continue
        dry = render_stem(
            state.synth,
            state.sfid,
            notes,
            program=stem.program,
            is_drum=stem.is_drum,
            n_frames=n_frames,
            sample_rate=state.sample_rate,
            pan=stem.pan,
        )
        rendered.append(dry * np.float32(10 ** (stem.gain_db / 20)))
    peaks = [0.0 if a is None else float(np.abs(a).max()) for a in rendered]
    floor = max(peaks, default=0.0) * 10 ** (AUDIBLE_DB / 20)
    mix = np.zeros((n_frames, 2), dtype=np.float32)
    records: list[StemRecord] = []
    for stem, audio, peak, count in zip(stems, rendered, peaks, counts, strict=True):
        audible = audio is not None and peak > 0.0 and peak >= floor
        if audible and audio is not None:
            mix += audio
        records.append(
            StemRecord(
                stem.name, stem.program, stem.is_drum, stem.label, stem.gain_db, count, audible
            )
        )
    out = mix.mean(axis=1) if CHANNELS == 1 else mix
    top = float(np.abs(out).max())
    if top > 0:
        out = out * np.float32(10 ** (PEAK_DBFS / 20) / top)
    return out.astype(np.float32), tuple(records)


def audio_path(root: Path, key: str) -> Path:
    """Where the OpenMIC layout keeps a clip's audio."""
    return root / "audio" / key[:3] / f"{key}.ogg"


def render_track(job: TrackJob) -> tuple[ClipRecord, ...]:
    """Parse, arrange, render and encode one track's clips; returns their records."""
    state = _WORKER.get("state")
    if state is None:
        raise RuntimeError("render_track needs _init_worker first")
    rng = np.random.default_rng([job.seed, _TRACK, job.track_id])
    data: ScoreData | None = None
    for score_id, path in job.candidates:
        try:
            data = load_score(score_id, path)
        except Exception:  # a corpus file music21 cannot read: take the next candidate
            data = None
        if data is not None:
            break
    if data is None:
        raise RuntimeError(f"track {job.track_id}: no usable score among {job.candidates}")
    bpm = choose_tempo(data, rng)
    spq = 60.0 / bpm
    data = loop_score(data, (job.n_clips * CLIP_SECONDS + 1.0) / spq)
    stems = arrange(data, bpm, rng, job.programs, job.kits)
    length_s = data.length * spq
    starts = clip_starts(length_s, job.n_clips, rng)
    records: list[ClipRecord] = []
    for start_ms in starts:
        key = f"{job.track_id:06d}_{start_ms}"
        audio, stem_records = mix_clip(stems, start_ms / 1000.0, state)
        dest = audio_path(Path(job.audio_dir), key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        sf.write(dest, audio, state.sample_rate, format="OGG", subtype="VORBIS")
        records.append(
            ClipRecord(
                sample_key=key,
                track_id=job.track_id,
                start_ms=start_ms,
                score_id=data.score_id,
                score_path=data.path,
                composer=COLLECTIONS[data.collection][3],
                title=_score_title(data.path),
                tempo_bpm=round(bpm, 2),
                stems=stem_records,
            )
        )
    return tuple(records)


# ----------------------------------------------------------------------------- planning


def plan_tracks(
    n_clips: int, seed: int, catalogue: Sequence[tuple[int, str, str]]
) -> tuple[tuple[int, tuple[tuple[int, str], ...]], ...]:
    """``(clips, candidate scores)`` per track; ids are 1-based positions. Deterministic.

    Tracks get 1-3 clips (at most ``n_clips // 2``, so two or more tracks when n_clips >= 2);
    scores are drawn per collection by weight, without repetition until a collection runs
    out; each track lists fallbacks from the same collection in case a score is unusable.
    """
    if n_clips < 1:
        raise ValueError(f"n_clips must be >= 1, got {n_clips}")
    rng = np.random.default_rng([seed, _PLAN])
    most = max(1, min(3, n_clips // 2))
    sizes: list[int] = []
    left = n_clips
    while left > 0:
        k = min(int(rng.integers(1, most + 1)), left)
        sizes.append(k)
        left -= k
    pools: dict[str, list[tuple[int, str]]] = {}
    for sid, rel, coll in catalogue:
        pools.setdefault(coll, []).append((sid, rel))
    names = sorted(pools)
    if not names:
        raise RuntimeError("music21's corpus has no eligible scores")
    weights = np.array([COLLECTIONS[c][2] for c in names])
    weights /= weights.sum()
    queues: dict[str, list[tuple[int, str]]] = {c: [] for c in names}
    plan: list[tuple[int, tuple[tuple[int, str], ...]]] = []
    for k in sizes:
        coll = names[int(rng.choice(len(names), p=weights))]
        queue = queues[coll]
        while len(queue) < _CANDIDATES_PER_TRACK:
            pool = pools[coll]
            queue.extend(pool[i] for i in rng.permutation(len(pool)))
        primary = queue.pop(0)
        candidates = (primary, *[c for c in queue[:_CANDIDATES_PER_TRACK] if c != primary])
        plan.append((k, candidates[:_CANDIDATES_PER_TRACK]))
    return tuple(plan)


# ----------------------------------------------------------------------------- writing


def default_soundfont() -> Path:
    """pretty_midi's bundled General-MIDI SoundFont, ``TimGM6mb.sf2``."""
    spec = importlib.util.find_spec("pretty_midi")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("pretty_midi is not installed; pass a SoundFont explicitly")
    return Path(spec.origin).parent / "TimGM6mb.sf2"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _parameters(n_clips: int, seed: int, soundfont: Path) -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "n_clips": n_clips,
        "seed": seed,
        "soundfont_sha256": _sha256(soundfont),
        "sample_rate": SAMPLE_RATE,
        "channels": CHANNELS,
        "music21": importlib.metadata.version("music21"),
    }


def _write_csv(path: Path, header: Sequence[str] | None, rows: Iterable[Sequence[Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        if header is not None:
            w.writerow(header)
        w.writerows(rows)


_README = """\
SynthMIC {version}: a synthetic demo set in the OpenMIC-2018 release layout
===========================================================================

{n} clips of 10.0 s, {sr} Hz, {ch} channel(s), OGG Vorbis, rendered by east_ray
(east_ray.data.synth) from music21's corpus scores with the General-MIDI SoundFont
{sf} (sha256 {sha}), seed {seed}.

Layout (file names as in OpenMIC-2018):
  class-map.json                       20 classes, alphabetical, indices 0..19
  openmic-2018.npz                     Y_true (N,20) float64, Y_mask (N,20) bool, sample_key (N,)
  openmic-2018-aggregated-labels.csv   sample_key,instrument,relevance,num_responses
  openmic-2018-metadata.csv            sample_key,track_id,artist_id,artist_name,track_title,...
  partitions/split01_train.csv         keys, one per line, no header
  partitions/split01_test.csv          (disjoint by artist_id = source score)
  audio/<key[:3]>/<key>.ogg

SynthMIC has no VGGish model: openmic-2018.npz has NO `X` array and there is NO vggish/
folder. Compute teacher embeddings from the audio instead.

Labels are exact by construction: relevance 1.0 = the instrument is audible in the clip,
0.0 = it is not; unobserved entries are exactly 0.5 with Y_mask False. As in OpenMIC, not
every class is annotated; some present instruments are deliberately left unannotated.
mandolin and ukulele have no General-MIDI program and are never present.
synthmic-stems.csv holds the full construction truth (every stem of every clip);
synthmic.json the generation parameters and summary (written last: a complete set has it).
"""


def _write_dataset(
    root: Path,
    records: Sequence[ClipRecord],
    seed: int,
    soundfont: Path,
    params: Mapping[str, Any],
) -> tuple[np.ndarray, np.ndarray, frozenset[str], frozenset[str]]:
    keys = [r.sample_key for r in records]
    y_true = np.empty((len(records), len(CLASSES)), dtype=np.float64)
    y_mask = np.empty((len(records), len(CLASSES)), dtype=bool)
    for i, r in enumerate(records):
        rng = np.random.default_rng([seed, _LABEL, r.track_id, r.start_ms])
        y_true[i], y_mask[i] = annotate(present_classes(r.stems), rng)
    (root / "class-map.json").write_text(
        json.dumps({c: i for i, c in enumerate(CLASSES)}, indent=2) + "\n", encoding="utf-8"
    )
    np.savez(
        root / "openmic-2018.npz",
        Y_true=y_true,
        Y_mask=y_mask,
        sample_key=np.array(keys, dtype=object),
    )
    _write_csv(
        root / "openmic-2018-aggregated-labels.csv",
        ("sample_key", "instrument", "relevance", "num_responses"),
        (
            (key, cls, f"{y_true[i, j]:.1f}", 1)
            for i, key in enumerate(keys)
            for j, cls in enumerate(CLASSES)
            if y_mask[i, j]
        ),
    )
    _write_csv(
        root / "openmic-2018-metadata.csv",
        METADATA_COLUMNS,
        (
            (
                r.sample_key,
                r.track_id,
                r.score_id,
                r.composer,
                r.title,
                f"music21:{r.score_path}",
                r.start_ms,
                r.tempo_bpm,
            )
            for r in records
        ),
    )
    _write_csv(
        root / STEMS_CSV,
        STEMS_COLUMNS,
        (
            (
                r.sample_key,
                st.name,
                st.label or "",
                st.program,
                int(st.is_drum),
                f"{st.gain_db:.2f}",
                st.n_notes,
                int(st.audible),
                int(bool(present_classes([st]))),
            )
            for r in records
            for st in r.stems
        ),
    )
    train, test = group_split(
        keys, [r.score_id for r in records], np.random.default_rng([seed, _SPLIT]), TEST_FRACTION
    )
    _write_csv(root / "partitions" / "split01_train.csv", None, ([k] for k in sorted(train)))
    _write_csv(root / "partitions" / "split01_test.csv", None, ([k] for k in sorted(test)))
    readme = _README.format(
        version=FORMAT_VERSION,
        n=len(records),
        sr=SAMPLE_RATE,
        ch=CHANNELS,
        sf=soundfont.name,
        sha=params["soundfont_sha256"],
        seed=seed,
    )
    (root / "README.txt").write_text(readme, encoding="utf-8")
    return y_true, y_mask, train, test


def _summary_from_manifest(out: Path, manifest: Mapping[str, Any]) -> SynthSummary:
    s = dict(manifest["summary"])
    s["out"] = out
    s["reused"] = True
    for name in ("present", "annotated_positive", "annotated_negative"):
        s[name] = tuple(s[name])
    return SynthSummary(**s)


def _read_manifest(out: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def stderr_progress() -> Callable[[int, int], None]:
    """A ``progress(done, total)`` that reports clips rendered on stderr: one updating line on a
    terminal, else a line each time another tenth is done."""
    last = [-1]

    def report(done: int, total: int) -> None:
        if sys.stderr.isatty():
            end = "\n" if done >= total else ""
            print(f"\rsynth: {done}/{total} clips", end=end, file=sys.stderr, flush=True)
            return
        tenth = 10 * done // max(total, 1)
        if tenth != last[0] or done >= total:
            last[0] = tenth
            print(f"synth: {done}/{total} clips", file=sys.stderr, flush=True)

    return report


def synthesize(
    out: Path,
    n_clips: int = 400,
    seed: int = 0,
    soundfont: Path | None = None,
    workers: int | None = None,
    *,
    progress: bool | Callable[[int, int], None] = True,
) -> SynthSummary:
    """Render SynthMIC into `out` (OpenMIC-2018 layout); see the module docstring.

    Builds in ``<out>.tmp-<pid>`` and renames it to `out` when complete. An existing non-empty
    `out` is accepted only if it is a complete SynthMIC with the same parameters (then nothing
    is rendered and the stored summary returns with ``reused=True``); anything else raises
    FileExistsError. `workers` processes render tracks in parallel (default: all CPUs).
    `progress`: True reports clips rendered on stderr, False is silent, a callable is called
    as ``progress(done, total)`` whenever a track's clips are done.
    """
    start_time = time.perf_counter()
    out = Path(out)
    if n_clips < 1:
        raise ValueError(f"n_clips must be >= 1, got {n_clips}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    n_workers = (os.cpu_count() or 1) if workers is None else workers
    if n_workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    sf_path = Path(soundfont) if soundfont is not None else default_soundfont()
    if not sf_path.is_file():
        raise FileNotFoundError(f"SoundFont not found: {sf_path}")
    params = _parameters(n_clips, seed, sf_path)

    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"{out} exists and is not a directory")
        if any(out.iterdir()):
            manifest = _read_manifest(out)
            if manifest is not None and manifest.get("parameters") == params:
                return _summary_from_manifest(out, manifest)
            what = (
                "a SynthMIC with other parameters"
                if manifest is not None
                else "not a complete SynthMIC"
            )
            raise FileExistsError(
                f"{out} is non-empty and {what}; remove it or choose another --out "
                f"(wanted n_clips={n_clips}, seed={seed}, SoundFont {sf_path.name})"
            )

    programs, kits = soundfont_presets(sf_path)
    if not programs:
        raise ValueError(f"{sf_path} defines no melodic General-MIDI programs in bank 0")
    tmp = out.parent / f"{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir(parents=True)
        plan = plan_tracks(n_clips, seed, score_catalogue())
        jobs = [
            TrackJob(i + 1, cands, k, seed, programs, kits, str(tmp))
            for i, (k, cands) in enumerate(plan)
        ]
        report = stderr_progress() if progress is True else progress or None
        results = _run_jobs(jobs, sf_path, n_workers, n_clips, report)
        records = [r for job in jobs for r in results[job.track_id]]
        records.sort(key=lambda r: r.sample_key)
        y_true, y_mask, train, test = _write_dataset(tmp, records, seed, sf_path, params)
        present = np.array(
            [[c in present_classes(r.stems) for c in CLASSES] for r in records], dtype=bool
        )
        summary = SynthSummary(
            out=out,
            n_clips=len(records),
            n_tracks=len(jobs),
            n_scores=len({r.score_id for r in records}),
            n_train=len(train),
            n_test=len(test),
            sample_rate=SAMPLE_RATE,
            channels=CHANNELS,
            seed=seed,
            soundfont=str(sf_path),
            present=tuple(int(x) for x in present.sum(axis=0)),
            annotated_positive=tuple(int(x) for x in (y_mask & (y_true > 0.5)).sum(axis=0)),
            annotated_negative=tuple(int(x) for x in (y_mask & (y_true < 0.5)).sum(axis=0)),
            annotated_fraction=float(y_mask.mean()),
            hidden_positives=int((present & ~y_mask).sum()),
            seconds=round(time.perf_counter() - start_time, 2),
            reused=False,
        )
        stored = asdict(summary)
        stored.pop("out")
        stored.pop("reused")
        (tmp / MANIFEST).write_text(
            json.dumps({"parameters": params, "summary": stored}, indent=2) + "\n",
            encoding="utf-8",
        )
        if out.exists():
            out.rmdir()  # empty (checked above); a racing writer makes this fail loudly
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def _run_jobs(
    jobs: Sequence[TrackJob],
    soundfont: Path,
    workers: int,
    total: int,
    progress: Callable[[int, int], None] | None,
) -> dict[int, tuple[ClipRecord, ...]]:
    results: dict[int, tuple[ClipRecord, ...]] = {}
    done = 0
    if workers == 1:
        saved = _WORKER.copy()
        _init_worker(str(soundfont), SAMPLE_RATE)
        try:
            for job in jobs:
                results[job.track_id] = render_track(job)
                done += len(results[job.track_id])
                if progress is not None:
                    progress(done, total)
        finally:
            _WORKER.clear()
            _WORKER.update(saved)
        return results
    context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
    with ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)),
        mp_context=context,
        initializer=_init_worker,
        initargs=(str(soundfont), SAMPLE_RATE),
    ) as pool:
        futures = {pool.submit(render_track, job): job.track_id for job in jobs}
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
            done += len(results[futures[fut]])
            if progress is not None:
                progress(done, total)
    return results


# ----------------------------------------------------------------------------- CLI


def _run_cli(args: argparse.Namespace) -> int:
    try:
        summary = synthesize(
            Path(args.out),
            n_clips=args.clips,
            seed=args.seed,
            soundfont=None if args.soundfont is None else Path(args.soundfont),
            workers=args.workers,
        )
    except (FileExistsError, FileNotFoundError, ValueError) as err:
        print(f"synth: error: {err}", file=sys.stderr)
        return 2
    state = "already complete" if summary.reused else f"written in {summary.seconds:.1f} s"
    print(
        f"SynthMIC {summary.out}: {summary.n_clips} clips from {summary.n_scores} scores "
        f"({summary.n_train} train / {summary.n_test} test), {state}"
    )
    return 0


def add_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``synth`` subcommand (renders SynthMIC) on a subparsers object."""
    parser = subparsers.add_parser(
        "synth",
        help="render the SynthMIC demo set (OpenMIC-2018 layout)",
        description=(__doc__ or "").split("\n\n", 1)[0],
    )
    parser.add_argument("--out", default="data/raw/synthmic", help="output folder")
    parser.add_argument("--clips", type=int, default=400, help="number of 10 s clips")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument(
        "--soundfont", default=None, help="General-MIDI .sf2 (default: pretty_midi's TimGM6mb)"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="render processes (default: CPU count)"
    )
    parser.set_defaults(func=_run_cli)
