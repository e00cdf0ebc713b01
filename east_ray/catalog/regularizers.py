"""The regularizers' catalog rows: one per regularizer, below `config`, free of torch.

A row says what a regularizer reads (the teacher's embedding sequence at the chosen
stages, the teacher's Teacher_LR logits, or nothing), what the paper calls each of its
systems, and where its loss lives (`"module:function"`, imported by `east_ray.losses`
when a training run starts, so the catalog never imports torch). Everything else derives
from the row: which grid axes a regularizer uses (a teacher and λ when it reads teacher
data, a stage when it reads the sequence), the cells a grid expands to, the arrays a trial
loads, the tables' row names. Adding a regularizer is one row in `REGULARIZERS` plus its
loss function; a test may add one with `monkeypatch.setitem(REGULARIZERS, name, row)`.

A loss function takes one `east_ray.losses.RegInputs` and returns the scalar `L_reg`.
A row with `hint` trains the student with learned projections onto the teacher's
dimension (FitNet), so its loss sees stage maps of the teacher's width.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from east_ray.errors import UnknownNameError

# The stage choices of a sequence regularizer: the last stage map, or all of them averaged.
STAGES = ("final", "all")


@dataclass(frozen=True)
class Regularizer:
    """One regularizer of the grid (`grid.regularizers`)."""

    name: str
    reads_sequence: bool  # the teacher's embedding sequence, at the chosen stages
    reads_logits: bool  # the teacher's Teacher_LR logits
    stem: str  # a system's name: `stem`, or `stem (stage)` for a stage `names` lacks
    loss: str  # "module:function" of L_reg; "" for none (the Baseline)
    # the names of this regularizer's systems, by stage (None: it has no stage); others
    # are `stem (stage)`
    names: dict[str | None, str] = field(default_factory=dict)
    in_paper: bool = False  # its named systems are rows of the paper's tables
    # the student trains with FitNet hint projections onto the teacher's dimension, which
    # its stage maps then are (east_ray.models.hint); they are dropped at inference
    hint: bool = False

    @property
    def uses_teacher(self) -> bool:
        """A teacher and λ are axes of its cells."""
        return self.reads_sequence or self.reads_logits

    @property
    def uses_stage(self) -> bool:
        """A stage (`STAGES`) is an axis of its cells."""
        return self.reads_sequence

    def system_name(self, stage: str | None) -> str:
        """The tables' name of this regularizer at `stage`."""
        if stage in self.names:
            return self.names[stage]
        return f"{self.stem} ({stage})" if stage is not None else self.stem


REGULARIZERS: dict[str, Regularizer] = {
    row.name: row
    for row in (
        Regularizer("none", False, False, "Baseline", "", {None: "Baseline"}),
        Regularizer("kd", False, True, "KD", "east_ray.losses:kd_reg", {None: "KD"}, in_paper=True),
        Regularizer(
            "cos_diff",
            True,
            False,
            "EAsT_Cos-Diff",
            "east_ray.losses:cos_diff_reg",
            {"final": "EAsT_Cos-Diff"},
            in_paper=True,
        ),
        Regularizer(
            "dcor",
            True,
            False,
            "EAsT",
            "east_ray.losses:dcor_reg",
            {"final": "EAsT_Final", "all": "EAsT_All"},
            in_paper=True,
        ),
        Regularizer(
            "dcor_kd",
            True,
            True,
            "EAsT_KD",
            "east_ray.losses:dcor_kd_reg",
            {"final": "EAsT_KD"},
            in_paper=True,
        ),
        # the distance measures the distillation literature compares (east_ray.distances),
        # in dCor's place: same stages, alignment and λ
        # (named as Cos-Diff is: the bare name on the final stage, "(all)" on all stages)
        *(
            Regularizer(name, True, False, stem, f"east_ray.distances:{loss}", {"final": stem})
            for name, stem, loss in (
                ("cka", "EAsT_CKA", "cka_reg"),
                ("rkd_d", "EAsT_RKD-D", "rkd_distance_reg"),
                ("rkd_a", "EAsT_RKD-A", "rkd_angle_reg"),
                ("pkt", "EAsT_PKT", "pkt_reg"),
            )
        ),
        Regularizer(
            "fitnet",
            True,
            False,
            "EAsT_FitNet",
            "east_ray.distances:fitnet_reg",
            {"final": "EAsT_FitNet"},
            hint=True,
        ),
    )
}


def regularizer(name: str) -> Regularizer:
    """The row of `name`; an unknown name lists the known ones."""
    if name not in REGULARIZERS:
        raise UnknownNameError(
            f"regularizer: got {name!r}, expected one of: {', '.join(REGULARIZERS)}"
        )
    return REGULARIZERS[name]


def uses_teacher(name: str) -> bool:
    """Whether `name`'s cells have a teacher and λ (False for a name with no row, such as
    Teacher_LR's `teacher_lr`, which is no grid regularizer)."""
    row = REGULARIZERS.get(name)
    return row is not None and row.uses_teacher


def uses_stage(name: str) -> bool:
    """Whether `name`'s cells have a stage (False for a name with no row)."""
    row = REGULARIZERS.get(name)
    return row is not None and row.uses_stage
