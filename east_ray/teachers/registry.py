"""The teacher registry: name → frame rate, dimension and input sample rate.

A teacher embeds a clip as a sequence `(T, D)`; `hop_seconds` is the time between two
frames, or `None` for a clip-level teacher that emits one vector per clip (PANNs).
The losses use `hop_seconds` to put student and teacher on one frame grid.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class TeacherInfo:
    """What is known about a teacher without loading it."""

    name: str
    dim: int
    hop_seconds: float | None
    sample_rate: int
    description: str


TEACHERS: dict[str, TeacherInfo] = {
    info.name: info
    for info in (
        TeacherInfo("vggish", 128, 0.96, 16_000, "VGGish, 8-bit PCA output, (x - 128) / 256"),
        TeacherInfo("openl3", 512, 0.96, 48_000, "OpenL3 mel128/music/512, x - 2.24"),
        TeacherInfo("passt", 768, 0.96, 32_000, "PaSST, 0.96 s window and hop"),
        TeacherInfo("panns", 2048, None, 32_000, "PANNs CNN14, one clip-level vector"),
        TeacherInfo("musicnn", 200, 3.0, 16_000, "musicnn MSD model, penultimate layer"),
        TeacherInfo("handcrafted", 48, 0.96, 16_000, "MFCC and spectral statistics, standardised"),
    )
}


def get_teacher(name: str) -> TeacherInfo:
    """Look a teacher up by name; an unknown name lists the known ones."""
    try:
        return TEACHERS[name]
    except KeyError:
        known = ", ".join(sorted(TEACHERS))
        raise KeyError(f"unknown teacher {name!r}; known teachers: {known}") from None
