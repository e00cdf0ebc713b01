"""The catalog: one frozen row per regularizer and per teacher, below `config`, free of
torch. Each fact about one of them lives in its row; the code above reads the rows.

- `east_ray.catalog.regularizers`: what a regularizer reads, its systems' names, its loss.
- `east_ray.catalog.teachers`: a teacher's rate, frames, dimension, weights, names.
"""

from east_ray.catalog.regularizers import (
    REGULARIZERS,
    STAGES,
    Regularizer,
    regularizer,
    uses_stage,
    uses_teacher,
)
from east_ray.catalog.teachers import TEACHERS, Framing, TeacherInfo, get_teacher

__all__ = [
    "REGULARIZERS",
    "STAGES",
    "TEACHERS",
    "Framing",
    "Regularizer",
    "TeacherInfo",
    "get_teacher",
    "regularizer",
    "uses_stage",
    "uses_teacher",
]
