"""The catalog: one frozen row per dataset, regularizer, teacher and student, below `config`,
free of torch. Each fact about one of them lives in its row; the code above reads the rows.

- `east_ray.catalog.datasets`: a dataset's release, published splits, classes, metrics, reader.
- `east_ray.catalog.regularizers`: what a regularizer reads, its systems' names, its loss.
- `east_ray.catalog.students`: a student's options, mel-band counts and builder.
- `east_ray.catalog.teachers`: a teacher's rate, frames, dimension, weights, names.
- `east_ray.catalog.resolve`: imports the code a row names (`"module:attribute"`).
"""

from east_ray.catalog.datasets import DATASETS, DatasetInfo, get_dataset
from east_ray.catalog.regularizers import (
    REGULARIZERS,
    STAGES,
    Regularizer,
    regularizer,
    uses_stage,
    uses_teacher,
)
from east_ray.catalog.students import STUDENTS, StudentInfo, get_student
from east_ray.catalog.teachers import (
    TEACHERS,
    Framing,
    TeacherInfo,
    canonical_teacher,
    check_licence,
    find_teacher,
    get_teacher,
    members,
    teacher_display,
)

__all__ = [
    "DATASETS",
    "REGULARIZERS",
    "STAGES",
    "STUDENTS",
    "TEACHERS",
    "DatasetInfo",
    "Framing",
    "Regularizer",
    "StudentInfo",
    "TeacherInfo",
    "canonical_teacher",
    "check_licence",
    "find_teacher",
    "get_dataset",
    "get_student",
    "get_teacher",
    "members",
    "regularizer",
    "teacher_display",
    "uses_stage",
    "uses_teacher",
]
