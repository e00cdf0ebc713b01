"""The source scores: which music21 corpus scores are eligible, which each track draws, and
their notes (parts of tie-merged notes on the score's metric grid, in quarter lengths)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from east_ray.synthmic._format import PLAN_STREAM

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

Candidates = tuple[tuple[int, str], ...]  # (score_id, corpus-relative path), first that parses


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

    @property
    def title(self) -> str:
        """The file name within its collection, without suffix."""
        rel = self.path.split("/", 1)[1] if "/" in self.path else self.path
        return rel.rsplit(".", 1)[0]


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


def plan_tracks(
    n_clips: int, seed: int, catalogue: Sequence[tuple[int, str, str]]
) -> tuple[tuple[int, Candidates], ...]:
    """``(clips, candidate scores)`` per track, in track order. Deterministic.

    Tracks get 1-3 clips (at most ``n_clips // 2``, so two or more tracks when n_clips >= 2);
    scores are drawn per collection by weight, without repetition until a collection runs
    out; each track lists fallbacks from the same collection in case a score is unusable.
    """
    rng = np.random.default_rng([seed, PLAN_STREAM])
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
    plan: list[tuple[int, Candidates]] = []
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


def first_usable_score(candidates: Candidates) -> ScoreData | None:
    """The first candidate that parses into two or more usable parts, or None."""
    for score_id, path in candidates:
        try:
            data = load_score(score_id, path)
        except Exception:  # a corpus file music21 cannot read: take the next candidate
            continue
        if data is not None:
            return data
    return None


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
