"""Study specs: typed, frozen dataclasses loaded from TOML, validated all at once.

A study file (`studies/<name>.toml`) names the dataset, the student, the log-mel
features, the training recipe, the per-trial resources and the grid axes.
`east_ray.config.spec` holds the types, the names each axis accepts and the grid's
canonical cells (`expand_cells`); `east_ray.config.load` reads and checks a file
(`load_study`, `load_parts`), reporting every problem at once (`SpecError`). Import
either from here.
"""

from east_ray.catalog import REGULARIZERS, STAGES, STUDENTS, TEACHERS
from east_ray.config.load import (
    STUDIES_DIR,
    Study,
    load_parts,
    load_study,
    parse_study,
    recipe_choice_problems,
    resolve_study_path,
)
from east_ray.config.spec import (
    NO_TEACHER,
    PAPER_SYSTEMS,
    RECIPE_CHOICES,
    RUNTIME_OPTIONS,
    SYSTEMS,
    Cell,
    ExtraSystem,
    Features,
    Grid,
    Recipe,
    Resources,
    SpecError,
    StudySpec,
    TeacherLRRecipe,
    expand_cells,
    system_name,
)

__all__ = [
    "NO_TEACHER",
    "PAPER_SYSTEMS",
    "RECIPE_CHOICES",
    "REGULARIZERS",
    "RUNTIME_OPTIONS",
    "STAGES",
    "STUDENTS",
    "STUDIES_DIR",
    "SYSTEMS",
    "TEACHERS",
    "Cell",
    "ExtraSystem",
    "Features",
    "Grid",
    "Recipe",
    "Resources",
    "SpecError",
    "Study",
    "StudySpec",
    "TeacherLRRecipe",
    "expand_cells",
    "load_parts",
    "load_study",
    "parse_study",
    "recipe_choice_problems",
    "resolve_study_path",
    "system_name",
]
