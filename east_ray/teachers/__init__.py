"""Teachers: frozen, pre-computed embedding sequences that regularise a student.

`TEACHERS` maps each teacher name to the facts the rest of east_ray needs about it;
`load_extractor(name)` builds the network that computes its embeddings.
"""

from east_ray.teachers.registry import TEACHERS, Extractor, TeacherInfo, get_teacher, load_extractor

__all__ = ["TEACHERS", "Extractor", "TeacherInfo", "get_teacher", "load_extractor"]
