"""Teachers: frozen, pre-computed embedding sequences that regularise a student.

`TEACHERS` maps each teacher name to the facts the rest of east_ray needs about it.
"""

from east_ray.teachers.registry import TEACHERS, TeacherInfo, get_teacher

__all__ = ["TEACHERS", "TeacherInfo", "get_teacher"]
