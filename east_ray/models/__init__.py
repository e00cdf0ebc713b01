"""Students: a registry of small CNNs behind one interface (see `common.py`).

`build_student(name, num_classes, seed=None, **options)` builds any of them; an unknown
name lists the known ones and an unknown option lists the accepted ones.
"""

import inspect
from collections.abc import Callable

import torch

from east_ray.errors import BadValueError, UnknownNameError
from east_ray.models.common import Student, StudentOutput
from east_ray.models.cp_resnet import CPResNet
from east_ray.models.mobile_fcn import MobileFCN

STUDENTS: dict[str, Callable[..., Student]] = {
    "cp_resnet": CPResNet,
    "mobile_fcn": MobileFCN,
}


def student_options(name: str) -> tuple[str, ...]:
    """The keyword options student `name` accepts (besides `num_classes`)."""
    if name not in STUDENTS:
        raise UnknownNameError(
            f"unknown student {name!r}; known students: {', '.join(sorted(STUDENTS))}"
        )
    params = inspect.signature(STUDENTS[name]).parameters
    return tuple(p for p in params if p != "num_classes")


def build_student(
    name: str, num_classes: int, seed: int | None = None, **options: int | float | str | bool
) -> Student:
    """Build student `name` with `num_classes` outputs.

    With `seed`, the weights depend on the seed alone (the global RNG is left untouched),
    so building twice with one seed gives identical weights.
    """
    accepted = student_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise BadValueError(
            f"student {name!r}: unknown option(s) {', '.join(unknown)}; "
            f"accepted options: {', '.join(accepted)}"
        )
    if num_classes < 1:
        raise ValueError(f"num_classes: got {num_classes}, expected an integer >= 1")
    if seed is None:
        return STUDENTS[name](num_classes, **options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return STUDENTS[name](num_classes, **options)


__all__ = ["STUDENTS", "Student", "StudentOutput", "build_student", "student_options"]
