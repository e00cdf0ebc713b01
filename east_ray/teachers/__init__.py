"""Teachers: frozen, pre-computed embedding sequences that regularise a student.

`TEACHERS` maps each teacher name to its catalog row (everything known about it without
loading it); `load_extractor(name)` builds the `Extractor` that computes its embeddings
(`east_ray.teachers.extractor`). Importing this package imports no torch.
"""

from east_ray.catalog.teachers import TEACHERS, TeacherInfo, get_teacher
from east_ray.teachers.registry import load_extractor

__all__ = ["TEACHERS", "TeacherInfo", "get_teacher", "load_extractor"]
