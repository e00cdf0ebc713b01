"""`TrialSpec`: everything that defines one training run, a study cell with its study's
recipe, features and student options, checked before anything is built."""

from __future__ import annotations

import dataclasses

from east_ray.catalog import get_teacher, regularizer
from east_ray.config import Cell, Features, Recipe, StudySpec, recipe_choice_problems
from east_ray.errors import BadValueError
from east_ray.losses import LossSpec
from east_ray.models import Student, build_student
from east_ray.models.hint import HintedStudent


@dataclasses.dataclass(frozen=True)
class TrialSpec:
    """Everything that defines one training run (a study cell plus the study's settings)."""

    cell: Cell
    recipe: Recipe
    features: Features
    num_classes: int
    student_options: dict[str, int | float | str | bool] = dataclasses.field(default_factory=dict)
    max_epochs: int | None = None  # a cap on top of recipe.max_steps (tests, smoke runs)
    gpu_fraction: float = 1.0  # this process's share of the GPU memory

    def __post_init__(self) -> None:
        problems = recipe_choice_problems(self.recipe)
        if problems:
            raise BadValueError(f"cell {self.cell.cell_id}: {'; '.join(problems)}")

    @classmethod
    def for_cell(
        cls,
        spec: StudySpec,
        cell: Cell,
        num_classes: int,
        *,
        max_epochs: int | None = None,
        gpu_fraction: float = 1.0,
    ) -> TrialSpec:
        """The run of `cell` with its study's recipe, features and student options (an
        extra system's own, for its cells)."""
        if cell.extra_system:
            spec = spec.for_system(cell.extra_system)
        return cls(
            cell,
            spec.recipe,
            spec.features,
            num_classes,
            dict(spec.student_options),
            max_epochs=max_epochs,
            gpu_fraction=gpu_fraction,
        )

    def build_model(self) -> Student:
        """The network this run trains: the student (seeded by the cell), with FitNet hint
        projections onto the teacher's dimension when its regularizer's row asks."""
        c = self.cell
        student = build_student(c.student, self.num_classes, seed=c.seed, **self.student_options)
        if not regularizer(c.regularizer).hint:
            return student
        assert c.teacher is not None  # a hint regularizer reads the teacher: config checked
        dim = get_teacher(c.teacher).dim
        return HintedStudent(student, dim, self.features.n_mels, seed=c.seed)

    def loss_spec(self) -> LossSpec:
        return LossSpec(
            self.cell.regularizer,
            self.cell.stage,
            self.cell.lam,
            self.recipe.kd_temperature,
            self.recipe.kd_weight_in_dcor_kd,
            self.recipe.kd_mask,
            alignment=self.recipe.alignment,
        )
