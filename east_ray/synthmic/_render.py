"""The General-MIDI SoundFont synthesiser (tinysoundfont): which presets a SoundFont has, one
loaded synthesiser per process, and rendering one stem's notes to stereo audio."""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tinysoundfont

from east_ray.errors import BadValueError
from east_ray.synthmic._format import SAMPLE_RATE
from east_ray.synthmic._scores import Note
from east_ray.synthmic._taxonomy import KITS

DRUM_CHANNEL = 9
MELODIC_CHANNEL = 0
_FLUSH_FRAMES = 2048  # rendered and discarded after `sounds_off`, so every stem starts silent


class SoundFontError(BadValueError):
    """No usable SoundFont: none by default, an unreadable file, or no General-MIDI programs."""


@dataclass(frozen=True)
class Renderer:
    """A synthesiser with one SoundFont loaded."""

    synth: Any
    sfid: int
    sample_rate: int


@functools.lru_cache(maxsize=1)
def renderer(soundfont: str) -> Renderer:
    """This process's synthesiser for `soundfont`, loaded on first use.

    Each worker process loads its own; every stem resets the synthesiser before it renders
    (`render_stem`), so reusing one across tracks and calls changes no output.
    """
    synth = tinysoundfont.Synth(samplerate=SAMPLE_RATE)
    try:
        sfid = int(synth.sfload(soundfont))
    except RuntimeError as err:
        raise SoundFontError(
            f"{soundfont}: not a readable SoundFont ({err}); pass a General-MIDI .sf2 file"
        ) from err
    return Renderer(synth, sfid, SAMPLE_RATE)


def default_soundfont() -> Path:
    """pretty_midi's bundled General-MIDI SoundFont, ``TimGM6mb.sf2``."""
    spec = importlib.util.find_spec("pretty_midi")
    if spec is None or spec.origin is None:
        raise SoundFontError(
            "pretty_midi is not installed, so there is no default SoundFont; "
            "pass a General-MIDI .sf2 with --soundfont or reinstall with `make install`"
        )
    return Path(spec.origin).parent / "TimGM6mb.sf2"


def soundfont_presets(soundfont: Path) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(melodic GM programs, drum kits among `KITS`) that the SoundFont defines."""
    r = renderer(str(soundfont))
    programs = tuple(p for p in range(128) if r.synth.sfpreset_name(r.sfid, 0, p) is not None)
    if not programs:
        raise SoundFontError(
            f"{soundfont} defines no melodic General-MIDI programs in bank 0; "
            "pass a General-MIDI .sf2 file"
        )
    kits = tuple(k for k in KITS if r.synth.sfpreset_name(r.sfid, 128, k) is not None)
    return programs, kits


def render_stem(
    r: Renderer,
    notes: Sequence[Note],
    *,
    program: int,
    is_drum: bool,
    n_frames: int,
    pan: int = 64,
) -> np.ndarray:
    """Render notes (seconds, window-relative) on one program: float32 ``(n_frames, 2)``."""
    synth = r.synth
    synth.sounds_off()
    synth.generate_simple(_FLUSH_FRAMES)  # quick releases finish; discarded
    chan = DRUM_CHANNEL if is_drum else MELODIC_CHANNEL
    synth.program_select(chan, r.sfid, 0, program, is_drums=is_drum)
    synth.control_change(chan, 10, pan)
    events: list[tuple[int, int, int, int]] = []  # (frame, on?, key, velocity); offs first
    for n in notes:
        on = round(n.start * r.sample_rate)
        off = round(n.end * r.sample_rate)
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
