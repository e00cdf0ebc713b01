"""The study spec's types and names: the dataclasses a study file becomes, the names each
axis accepts, the recipe's named options, and the grid's canonical `Cell`s.

`expand_cells` expands a grid into canonical `Cell`s: axes that do not apply to a
regularizer collapse (the baseline has no teacher, stage or λ; kd has no stage), and a
non-baseline cell with λ = 0 *is* the baseline. Each cell carries a stable id derived
from its content. Reading and checking a study file is `east_ray.config.load`'s job.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field
from typing import Any

from east_ray.catalog import REGULARIZERS, STAGES, uses_stage, uses_teacher
from east_ray.catalog import regularizer as catalog_regularizer
from east_ray.errors import BadValueError

LAM_CHOICES = ("validation", "each")
# Every (regularizer, stage) system of the shipped regularizers (east_ray.catalog).
SYSTEMS = tuple(
    (r.name, s) for r in REGULARIZERS.values() for s in (STAGES if r.uses_stage else (None,))
)
# The paper's names of its systems, in its tables' order; another stage choice gets a
# suffix ("EAsT_KD (all)"). Teacher_LR is the linear probe on a teacher's embeddings, not
# a grid regularizer.
PAPER_SYSTEMS = {
    ("none", None): "Baseline",
    ("teacher_lr", None): "Teacher_LR",
    **{
        (r.name, stage): name
        for r in REGULARIZERS.values()
        if r.in_paper
        for stage, name in r.names.items()
    },
}
# The teacher of a teacher-free system (the Baseline) wherever one is written out.
NO_TEACHER = "-"

# a study's name is a folder name under the results storage


class SpecError(BadValueError):
    """A study spec with one or more problems; `problems` lists each of them."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in study spec:\n{lines}")


@dataclass(frozen=True)
class Features:
    """Audio decoding and log-mel parameters (DESIGN §1)."""

    sample_rate: int
    n_mels: int
    f_max: float
    clip_seconds: float
    n_fft: int = 1024
    win_length: int = 800
    hop_length: int = 320
    f_min: float = 0.0

    @property
    def hop_seconds(self) -> float:
        """Seconds between two log-mel frames."""
        return self.hop_length / self.sample_rate

    @property
    def frames(self) -> int:
        """Log-mel frames of a clip (the centred STFT's last frame dropped)."""
        return round(self.clip_seconds * self.sample_rate) // self.hop_length


@dataclass(frozen=True)
class Recipe:
    """The training recipe shared by every trial of a study (DESIGN §1 table)."""

    lr: float = 1e-4
    weight_decay: float = 1e-4
    batch_size: int = 16
    grad_clip: float = 1.0
    plateau_factor: float = 0.2
    plateau_patience: int = 8
    early_stop_patience: int = 15
    max_steps: int = 80_000
    mixup_alpha: float = 0.3
    specaug_freq: int = 48
    specaug_time: int = 192
    kd_temperature: float = 2.0
    kd_weight_in_dcor_kd: float = 0.3
    f1_threshold: float = 0.4
    # Named options (RECIPE_CHOICES): the defaults are the authors' (DESIGN §1), the other
    # values ours, each listed with its reason in the README's method differences.
    specaug_on: str = "log_power"  # "mixed_input": mask after mixup, stripes 0 (the mean)
    mixup_partner: str = "training_set"  # "batch": partners permuted within the batch
    precision: str = "fp32"  # "tf32": TF32 matmuls on CUDA too; "bf16": bf16 autocast
    kd_mask: str = "labelled"  # "all": KD averaged over every entry, labelled or not
    alignment: str = "authors"  # "time": frames covering the same audio (east_ray.losses)
    # The one named option whose default is not the authors': "authors" jitters each
    # training clip's mel band edges (f_min + U{0…19} Hz, f_max − U{0…1999} Hz) as they did,
    # from stored STFT magnitudes (east_ray.data.meljitter, east_ray.data.spectra); "off"
    # trains on the stored log-mels, which need no extra preparation or storage.
    mel_jitter: str = "off"
    last_batch: str = "keep"  # "drop": an epoch's last, smaller training batch is left out
    partial_epoch: str = "skip"  # "validate": an epoch cut by max_steps is validated too
    # What early stopping watches: "loss", the validation loss the run minimises (for a
    # regularised run (1 − λ)·L_pred + λ·L_reg, so λ and the teacher change when it stops);
    # "pred_loss", the validation prediction loss alone, as for the Baseline; "off", no
    # early stopping: every run trains max_steps (equal step budgets).
    early_stop: str = "loss"
    # A runtime option (RUNTIME_OPTIONS; README "Runtime options"). torch.compile of the
    # student's forward and the loss (east_ray.train.compiled): "auto" compiles with
    # "reduce-overhead" (CUDA graphs) on CUDA and runs eager on the CPU, where compiling
    # costs more than it saves (README, bench.trainer); "off", "default" or
    # "reduce-overhead" on any device.
    compile: str = "auto"
    # A runtime option. The CPU kernels every process of a study uses
    # (east_ray.train.cpu_numerics): "native" lets PyTorch pick the fastest for the CPU it
    # runs on, so results differ in their last bits between CPUs (AVX-512 vs AVX2, Intel vs
    # AMD); "portable" pins ATen, oneDNN and MKL to their AVX2 kernels, so that a CPU run
    # gives the same numbers on any x86-64 CPU with AVX2. No effect on CUDA kernels.
    cpu_numerics: str = "native"


# The values each named option of `Recipe` accepts; the first is the default.
RECIPE_CHOICES: dict[str, tuple[str, ...]] = {
    "specaug_on": ("log_power", "mixed_input"),
    "mixup_partner": ("training_set", "batch"),
    "precision": ("fp32", "tf32", "bf16"),
    "kd_mask": ("labelled", "all"),
    "alignment": ("authors", "time"),
    "mel_jitter": ("off", "authors"),
    "last_batch": ("keep", "drop"),
    "partial_epoch": ("skip", "validate"),
    "early_stop": ("loss", "pred_loss", "off"),
    "compile": ("auto", "off", "default", "reduce-overhead"),
    "cpu_numerics": ("native", "portable"),
}
# The named options that change how fast a trial runs, not its result: a results folder
# does not record them (`spec.json`, east_ray.study.store), so a study resumes under
# another value, and they have no row in the README's method differences.
RUNTIME_OPTIONS = ("compile", "cpu_numerics")


@dataclass(frozen=True)
class TeacherLRRecipe:
    """How Teacher_LR is fitted (DESIGN §1): SGD without weight decay, ReduceLROnPlateau and
    early stopping on the validation loss, at most `max_steps` optimiser steps."""

    lr: float = 0.1
    # teacher name → lr; the authors used 0.2 for OpenMIC-VGGish and MTAT-PaSST
    lr_by_teacher: dict[str, float] = field(default_factory=dict)
    batch_size: int = 16
    grad_clip: float = 1.0
    plateau_factor: float = 0.1
    plateau_patience: int = 1
    early_stop_patience: int = 3
    max_steps: int = 80_000

    def lr_for(self, teacher: str) -> float:
        """The learning rate used for `teacher`'s Teacher_LR: its own entry, else (for a
        layer `<teacher>@<layer>`) its teacher's, else `lr`."""
        base = teacher.partition("@")[0]
        return float(self.lr_by_teacher.get(teacher, self.lr_by_teacher.get(base, self.lr)))


@dataclass(frozen=True)
class Resources:
    """What one trial reserves on the cluster. A GPU share below 1 packs several trials on
    one GPU; 1 or more gives a trial whole GPUs."""

    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0

    @property
    def gpu_share(self) -> float:
        """The share of its GPU's memory a trial may take: `gpus_per_trial` when packed,
        else all of it (also without a GPU, where nothing is shared)."""
        return self.gpus_per_trial if 0 < self.gpus_per_trial < 1 else 1.0

    @property
    def trials_per_gpu(self) -> int:
        """How many trials share one GPU (1 unless packed)."""
        return round(1 / self.gpus_per_trial) if 0 < self.gpus_per_trial < 1 else 1


@dataclass(frozen=True)
class Grid:
    """The scientific axes of the study; their product is expanded into cells."""

    regularizers: tuple[str, ...]
    teachers: tuple[str, ...] = ()
    stages: tuple[str, ...] = ("final",)
    lams: tuple[float, ...] = ()
    # one fixed λ for a teacher (the authors fixed λ per teacher); the others use `lams`
    lam_by_teacher: dict[str, float] = field(default_factory=dict)

    def lams_of(self, teacher: str | None) -> tuple[float, ...]:
        """The λ values a teacher's cells take."""
        if teacher in self.lam_by_teacher:
            return (self.lam_by_teacher[teacher],)
        return self.lams

    fractions: tuple[float, ...] = (1.0,)
    seeds: tuple[int, ...] = (1223,)
    # Where a teacher has several λ (LAM_CHOICES): "validation" reports the λ with the best
    # validation mAP, then a table per λ; "each": the λ were fixed in advance, so a table
    # (and a figure line) per λ and none chosen. Tables only: the cells are the same.
    lam_choice: str = "validation"


@dataclass(frozen=True)
class ExtraSystem:
    """A named baseline row of the tables beside the grid's systems (no teacher, λ = 0)
    with its own student options and recipe changes, e.g. the authors' released baseline
    configuration; it runs once per fraction × seed."""

    name: str
    student_options: dict[str, int | float | str | bool] = field(default_factory=dict)
    recipe: dict[str, int | float | str | bool] = field(default_factory=dict)


@dataclass(frozen=True)
class StudySpec:
    """One study: what to train, on what, with which recipe, over which grid."""

    name: str
    dataset: str
    student: str
    features: Features
    grid: Grid
    recipe: Recipe = field(default_factory=Recipe)
    teacher_lr: TeacherLRRecipe = field(default_factory=TeacherLRRecipe)
    resources: Resources = field(default_factory=Resources)
    student_options: dict[str, int | float | str | bool] = field(default_factory=dict)
    systems: tuple[ExtraSystem, ...] = ()
    # the grid may use teachers whose weights are licensed for non-commercial use only
    non_commercial_weights: bool = False

    def for_system(self, name: str) -> StudySpec:
        """This study as extra system `name` trains: its student options and recipe."""
        extra = next(x for x in self.systems if x.name == name)
        hints = typing.get_type_hints(Recipe)
        changes: dict[str, Any] = {
            k: float(v) if hints[k] is float else v for k, v in extra.recipe.items()
        }
        return dataclasses.replace(
            self,
            recipe=dataclasses.replace(self.recipe, **changes),
            student_options={**self.student_options, **extra.student_options},
            systems=(),
        )


@dataclass(frozen=True)
class Cell:
    """One canonical grid cell: a single training run of the study."""

    dataset: str
    student: str
    regularizer: str
    teacher: str | None
    stage: str | None
    lam: float
    fraction: float
    seed: int
    extra_system: str = ""  # the name of an ExtraSystem; "" for a grid cell

    @property
    def cell_id(self) -> str:
        """Readable, stable id: the axes that apply, then a hash of the whole content."""
        parts = [_slug(self.extra_system)] if self.extra_system else []
        parts.append(self.regularizer)
        if self.stage is not None:
            parts.append(self.stage)
        if self.teacher is not None:
            parts += [self.teacher, f"lam{self.lam:g}"]
        parts += [f"frac{self.fraction:g}", f"seed{self.seed}"]
        fields = dataclasses.asdict(self)
        if not self.extra_system:  # grid cells keep the ids they had before extra systems
            del fields["extra_system"]
        content = json.dumps(fields, sort_keys=True)
        digest = hashlib.sha1(content.encode()).hexdigest()[:8]
        return "-".join([*parts, digest])

    @property
    def system(self) -> str:
        """The system's name in the paper's tables (an extra system's own name)."""
        return self.extra_system or system_name(self.regularizer, self.stage)


def system_name(regularizer: str, stage: str | None) -> str:
    """The paper's name of a (regularizer, stage) system (`Regularizer.system_name`;
    Teacher_LR's for `teacher_lr`); a missing stage may be None or NaN (as pandas reads
    it)."""
    stage = stage if isinstance(stage, str) else None
    if regularizer == "teacher_lr":
        return PAPER_SYSTEMS[("teacher_lr", None)]
    return catalog_regularizer(regularizer).system_name(stage)


def _slug(name: str) -> str:
    """`Baseline (authors' config)` → `baseline_authors_config`."""
    return "_".join("".join(c if c.isalnum() else " " for c in name.lower()).split())


def expand_cells(spec: StudySpec) -> list[Cell]:
    """The canonical cells of a study, deduplicated, in a stable order."""
    g = spec.grid
    cells: dict[Cell, None] = {}
    for fraction in g.fractions:
        for seed in g.seeds:
            for reg in g.regularizers:
                teachers: tuple[str | None, ...] = g.teachers if uses_teacher(reg) else (None,)
                stages: tuple[str | None, ...] = g.stages if uses_stage(reg) else (None,)
                for teacher in teachers:
                    for stage in stages:
                        for lam in g.lams_of(teacher) if uses_teacher(reg) else (0.0,):
                            cell = Cell(
                                spec.dataset, spec.student, reg, teacher, stage, lam, fraction, seed
                            )
                            if lam == 0.0:  # no regularisation at all: that is the baseline
                                cell = dataclasses.replace(
                                    cell, regularizer="none", teacher=None, stage=None
                                )
                            cells[cell] = None
            for extra in spec.systems:
                cells[
                    Cell(
                        spec.dataset,
                        spec.student,
                        "none",
                        None,
                        None,
                        0.0,
                        fraction,
                        seed,
                        extra.name,
                    )
                ] = None
    return list(cells)
