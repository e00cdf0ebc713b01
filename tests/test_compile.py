"""torch.compile of the training step (`recipe.compile`): every system's loss and gradients
agree with eager, a run compiles once (no recompiling across epochs), checkpoints hold the
plain module's keys and resume either way, and a failed compile trains eager after one
warning."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch._dynamo.utils
import torch._inductor.config

from east_ray.catalog import REGULARIZERS
from east_ray.config import RECIPE_CHOICES, SYSTEMS, Cell, Recipe
from east_ray.data.parquet import LabelTable
from east_ray.losses import LossTerms
from east_ray.models import StudentOutput, build_student
from east_ray.train.compiled import compile_mode
from east_ray.train.data import ArrayStore, TrialData, build_trial_data, make_batch
from east_ray.train.inputs import Inputs, inputs_on
from east_ray.train.trainer import CHECKPOINT, _Run, train
from east_ray.train.trial import TrialSpec
from tests.release_fixtures import TEST_FEATURES

# inductor imports torch.jit modules that warn about their own deprecation
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated")

CLASSES = 20
TEACHER_FRAMES, TEACHER_DIM = 2, 16  # VGGish-like: 0.96 s frames of a 1 s clip
STUDENT = {"base_channels": 4}
RECIPE = Recipe(batch_size=4, max_steps=10_000, plateau_patience=1, early_stop_patience=5)
# no augmentation: compiled and eager see identical inputs
PLAIN = dataclasses.replace(RECIPE, mixup_alpha=0.0, specaug_freq=0, specaug_time=0)


def _cell(regularizer: str, stage: str | None) -> Cell:
    teacher = None if regularizer == "none" else "vggish"
    lam = 0.0 if regularizer == "none" else 0.5
    return Cell("synthmic", "cp_resnet", regularizer, teacher, stage, lam, 1.0, 0)


def _data(cell: Cell, clips: int = 32) -> TrialData:
    """Random log-mels at the test features, labels, teacher sequences and logits."""
    rng = np.random.default_rng(0)
    ids = [f"clip{i:03d}" for i in range(clips)]
    split = np.array(["train", "train", "valid", "test"] * (clips // 4))
    labels = LabelTable(
        ids,
        split,
        np.arange(clips).astype(str),
        (rng.random((clips, CLASSES)) > 0.7).astype(np.float32),
        rng.random((clips, CLASSES)) > 0.2,
        tuple(f"class{k}" for k in range(CLASSES)),
    )
    shape = (clips, TEST_FEATURES.n_mels, TEST_FEATURES.frames)
    store = ArrayStore(ids, rng.standard_normal(shape).astype(np.float16))
    seq = rng.standard_normal((clips, TEACHER_FRAMES, TEACHER_DIM)).astype(np.float32)
    logits = rng.standard_normal((clips, CLASSES)).astype(np.float32)
    return build_trial_data(cell, labels, store, (seq,) if cell.teacher else (), logits)


def _spec(regularizer: str, stage: str | None, recipe: Recipe, **kw: Any) -> TrialSpec:
    return TrialSpec(_cell(regularizer, stage), recipe, TEST_FEATURES, CLASSES, STUDENT, **kw)


def _run(spec: TrialSpec, run_dir: Path, device: str = "cpu") -> _Run:
    torch.manual_seed(0)
    return _Run(spec, _data(spec.cell), run_dir, torch.device(device))


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("setting", RECIPE_CHOICES["compile"])
def test_compile_is_on_by_default_on_cuda_only(setting: str, device: str) -> None:
    mode = compile_mode(setting, torch.device(device))
    expected = {"auto": "reduce-overhead" if device == "cuda" else None, "off": None}
    assert mode == expected.get(setting, setting)


# ---------------------------------------------------------------------------------------
# Agreement with eager, for every system: one compiled graph holds every system's loss (the
# trainer's own `loss_of`) of a real student's output, so the eight systems cost one
# inductor build. The student's layers (convolutions, BatchNorm, pooling) are what inductor
# compiles in every CNN; what is ours, and differs by system, is the loss: its value and
# the gradients it hands back to the student (logits and every stage map) are compared.
# The whole training step (student and loss in one graph) is captured in the run below
# (aot_eager) and built by inductor in `bench.trainer`, which reports its first step's
# loss beside eager's for both paper students.

# float32 compiled vs eager: inductor fuses and reorders the reductions (the losses' means,
# the distance and Gram matrices, their centring), each exact to float32 rounding (~1e-7
# relative). Measured here: losses within 6e-7 relative, gradients within 5e-7 of their
# tensor's largest entry (elementwise, an entry near zero has only rounding left). 1e-5
# leaves a margin of 15-20 and still catches a real difference: a dropped mask entry, a
# shifted frame pair or a wrong stage moves a loss by ~1e-2 and its gradients by their size.
TOL = 1e-5

Outcome = tuple[list[LossTerms], list[tuple[torch.Tensor, ...]]]


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
# the systems whose loss reads the student's own stage maps, which the fixture shares (a
# hint system's loss reads its projections, a part of its student)
LOSS_SYSTEMS = [(r, s) for r, s in SYSTEMS if not REGULARIZERS[r].hint]


@pytest.fixture(scope="module", params=["cpu", pytest.param("cuda", marks=CUDA)])
def every_system(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Outcome]]:
    """Each system's loss terms of one batch and their gradients with respect to the
    student's logits and stage maps, eager and compiled, on the CPU and on CUDA (where
    inductor writes Triton kernels instead of C++)."""
    device = request.param
    tmp = tmp_path_factory.mktemp(f"every_system_{device}")
    runs = [_run(_spec(r, s, PLAIN), tmp / f"{r}-{s}", device) for r, s in LOSS_SYSTEMS]
    # A CUDA run allows TF32 matmuls (10-bit mantissa), whose rounding would swamp the
    # float32 reordering this compares; both sides here run true float32.
    torch.backends.cuda.matmul.allow_tf32 = False
    data = runs[-1].data  # a teacher system's: sequences and logits
    inp = inputs_on(make_batch(data, data.train_rows[:4]), torch.device(device))
    out = runs[0].model(inp.x)
    leaves = [
        out.logits.detach().requires_grad_(),
        *(m.detach().requires_grad_() for m in out.stages),
    ]

    def every_loss(logits: torch.Tensor, *stages: torch.Tensor) -> list[LossTerms]:
        student = StudentOutput(logits, list(stages))
        return [run.loss_of(student, inp) for run in runs]

    outcomes = {}
    # Scalar C++ kernels built in this process: what compiling does to the numbers (capture,
    # decompositions, fusion, reduction order) is the same, without the SIMD probing (a
    # Python process per instruction set, ~15 s) and the longer builds, on 2 shared cores.
    # The pytest process keeps scalar kernels for later compiles (inductor caches the probe).
    with torch._inductor.config.patch({"cpp.vec_isa_ok": False, "compile_threads": 1}):
        torch.compiler.reset()
        compiled = torch.compile(every_loss, dynamic=False)
        for name, fn in (("eager", every_loss), ("compiled", compiled)):
            terms = fn(*leaves)
            grads = [  # zeros for the stages a system does not read
                torch.autograd.grad(t.total, leaves, retain_graph=True, materialize_grads=True)
                for t in terms
            ]
            outcomes[name] = (terms, grads)
    yield outcomes
    for run in runs:
        run.writer.close()


@pytest.mark.slow  # the fixture's build: 17 s on an idle 2-core machine, cold caches
@pytest.mark.parametrize(("regularizer", "stage"), LOSS_SYSTEMS)
def test_a_compiled_loss_gives_eager_values_and_gradients(
    every_system: dict[str, Outcome], regularizer: str, stage: str | None
) -> None:
    i = LOSS_SYSTEMS.index((regularizer, stage))
    (eager_terms, eager_grads), (terms, grads) = every_system["eager"], every_system["compiled"]
    for name, got, want in zip(LossTerms._fields, terms[i], eager_terms[i], strict=True):
        assert torch.allclose(got, want, rtol=TOL, atol=1e-7), (name, got, want)
    for got, want in zip(grads[i], eager_grads[i], strict=True):
        scale = float(want.abs().max())
        assert float((got - want).abs().max()) <= TOL * scale, (got - want).abs().max()


# ---------------------------------------------------------------------------------------
# A whole run: the plumbing (guards, checkpoints, resume) is dynamo's and the trainer's, the
# same for every backend, so it is checked with aot_eager (dynamo's capture and guards and
# AOTAutograd's joint graph, without inductor's C++ build).


@pytest.fixture
def aot_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    real = torch.compile

    def compile_aot_eager(fn: Callable[..., Any], *, mode: str, dynamic: bool) -> Any:
        return real(fn, backend="aot_eager", dynamic=dynamic)

    monkeypatch.setattr(torch, "compile", compile_aot_eager)


def _ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("east_ray")]


def _graphs() -> int:
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


@pytest.mark.usefixtures("aot_eager")
def test_a_compiled_run_compiles_once_and_checkpoints_plain_keys(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = _spec("dcor_kd", "final", dataclasses.replace(RECIPE, compile="default"))
    data = _data(spec.cell)
    graphs: list[int] = []
    before = _graphs()
    with caplog.at_level(logging.WARNING, logger="east_ray"):
        first = train(
            dataclasses.replace(spec, max_epochs=3),
            data,
            tmp_path / "run",
            report=lambda m, _: graphs.append(_graphs() - before),
        )
    assert not _ours(caplog)  # it compiled: no fallback
    # one graph, built in the first step; epochs 2 and 3 (after an eager evaluation each)
    # ran it again without compiling anything
    assert graphs == [1, 1, 1] and first.epochs == 3

    payload = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)
    plain = build_student("cp_resnet", CLASSES, **STUDENT).state_dict().keys()
    assert payload["model"].keys() == plain and payload["best_weights"].keys() == plain
    # the BatchNorm statistics the compiled steps updated (in the graph, written back)
    means = [v for k, v in payload["model"].items() if k.endswith("running_mean")]
    assert means and all(bool(v.abs().sum() > 0) for v in means)

    # the checkpoint resumes compiled and eager alike
    def resume(setting: str, folder: str) -> tuple[list[float], int]:
        recipe = dataclasses.replace(RECIPE, compile=setting)
        epochs: list[float] = []
        resumed = train(
            _spec("dcor_kd", "final", recipe, max_epochs=4),
            data,
            tmp_path / folder,
            report=lambda m, _: epochs.append(m["epoch"]),
        )
        return epochs, resumed.steps

    shutil.copytree(tmp_path / "run", tmp_path / "eager")
    for setting, folder in (("default", "run"), ("off", "eager")):
        assert resume(setting, folder) == ([4.0], first.steps * 4 // 3), setting


# ---------------------------------------------------------------------------------------
# The fallback: torch.compile missing, or compiling failing inside the first step after the
# forward ran (BatchNorm statistics updated, random numbers drawn).


def _unavailable(fn: Callable[..., Any], **_: Any) -> Any:
    raise RuntimeError("torch.compile is not supported on this platform")


def _fails_in_first_step(fn: Callable[[Inputs], LossTerms], **_: Any) -> Any:
    def compiled(inp: Inputs) -> LossTerms:
        fn(inp)  # the forward ran: BatchNorm statistics moved
        torch.rand(3)  # and random numbers were drawn
        raise RuntimeError("InductorError: CppCompileError: C++ compile error\n  (details)")

    return compiled


@pytest.mark.parametrize(
    ("fake_compile", "reason"),
    [
        (_unavailable, "RuntimeError: torch.compile is not supported on this platform"),
        (_fails_in_first_step, "RuntimeError: InductorError: CppCompileError: C++ compile error"),
    ],
    ids=["unavailable", "fails_in_first_step"],
)
def test_a_failed_compile_trains_eager_after_one_warning(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    fake_compile: Callable[..., Any],
    reason: str,
) -> None:
    recipe = dataclasses.replace(RECIPE, mixup_alpha=0.3)  # steps that draw random numbers
    eager = _run(_spec("dcor", "all", dataclasses.replace(recipe, compile="off")), tmp_path / "e")
    monkeypatch.setattr(torch, "compile", fake_compile)
    with caplog.at_level(logging.WARNING, logger="east_ray"):
        run = _run(_spec("dcor", "all", dataclasses.replace(recipe, compile="default")), tmp_path)
        rows = [run.data.train_rows[i : i + 4] for i in (0, 4, 8)]
        losses = []
        for r in rows:
            torch.manual_seed(len(losses))
            losses.append(run.train_step(make_batch(run.data, r, r[::-1])))
    (record,) = _ours(caplog)
    cell = run.spec.cell.cell_id
    assert record.getMessage() == (
        f"cell {cell}: recipe.compile = 'default' could not compile the training step "
        f'({reason}); training eager instead (set recipe.compile = "off" to skip compiling)'
    )
    assert not run.forward_backward.compiled and run.forward_backward.fallback_reason == reason
    for i, r in enumerate(rows):  # the same numbers as a run that never tried to compile
        torch.manual_seed(i)
        assert torch.equal(losses[i], eager.train_step(make_batch(eager.data, r, r[::-1])))
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            run.model.state_dict().values(), eager.model.state_dict().values(), strict=True
        )
    )
    run.writer.close()
    eager.writer.close()
