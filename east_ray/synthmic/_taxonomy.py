"""The 20 OpenMIC-2018 classes and how General-MIDI programs and kit keys map onto them."""

from __future__ import annotations

from collections.abc import Mapping

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
# GM percussion keys that are cymbals: crash 1, ride 1, china, ride bell, splash, crash 2, ride 2.
CYMBAL_KEYS = frozenset({49, 51, 52, 53, 55, 57, 59})
# GM drum kits (bank 128): standard, room, power, electronic, TR-808, jazz, brush.
KITS: tuple[int, ...] = (0, 8, 16, 24, 25, 32, 40)

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
