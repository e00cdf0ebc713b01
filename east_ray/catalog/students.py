"""The students' catalog rows: one per student CNN, everything a spec needs to know about it
without importing torch: the keyword options it accepts, the mel-band counts its pooling is
built for, and the class that builds it (`"module:Class"`, imported by
`east_ray.models.build_student`)."""

from __future__ import annotations

from dataclasses import dataclass

from east_ray.errors import UnknownNameError


@dataclass(frozen=True)
class StudentInfo:
    """One student (`student` in a spec)."""

    name: str
    options: tuple[str, ...]  # keyword options of its builder besides `num_classes`
    builder: str  # "module:Class", called as `Class(num_classes, **options)`
    n_mels: tuple[int, ...] = ()  # the mel-band counts it is built for; empty: any


STUDENTS: dict[str, StudentInfo] = {
    row.name: row
    for row in (
        StudentInfo("cp_resnet", ("rho", "base_channels"), "east_ray.models.cp_resnet:CPResNet"),
        StudentInfo(
            "mobile_fcn",
            ("n_mels", "dropout"),
            "east_ray.models.mobile_fcn:MobileFCN",
            n_mels=(96, 128),
        ),
    )
}


def get_student(name: str) -> StudentInfo:
    """The row of student `name`; an unknown name lists the known ones."""
    if name not in STUDENTS:
        raise UnknownNameError(
            f"unknown student {name!r}; known students: {', '.join(sorted(STUDENTS))}"
        )
    return STUDENTS[name]
