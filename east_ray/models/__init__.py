"""Students: small CNNs behind one interface (see `common.py`), one catalog row each
(`east_ray.catalog.students`).

`build_student(name, num_classes, seed=None, **options)` builds any of them; an unknown
name lists the known ones and an unknown option lists the accepted ones.
"""

from collections.abc import Callable

import torch

from east_ray.catalog.resolve import resolve
from east_ray.catalog.students import STUDENTS, get_student
from east_ray.errors import BadValueError
from east_ray.models.common import Student, StudentOutput


def student_class(name: str) -> Callable[..., Student]:
    """The class that builds student `name` (its catalog row's `builder`)."""
    built: Callable[..., Student] = resolve(get_student(name).builder)
    return built


def build_student(
    name: str, num_classes: int, seed: int | None = None, **options: int | float | str | bool
) -> Student:
    """Build student `name` with `num_classes` outputs.

    With `seed`, the weights depend on the seed alone (the global RNG is left untouched),
    so building twice with one seed gives identical weights.
    """
    accepted = get_student(name).options
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise BadValueError(
            f"student {name!r}: unknown option(s) {', '.join(unknown)}; "
            f"accepted options: {', '.join(accepted)}"
        )
    if num_classes < 1:
        raise ValueError(f"num_classes: got {num_classes}, expected an integer >= 1")
    build = student_class(name)
    if seed is None:
        return build(num_classes, **options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build(num_classes, **options)


__all__ = ["STUDENTS", "Student", "StudentOutput", "build_student", "student_class"]
