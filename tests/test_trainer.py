"""The shared trainer: every system learns, exact resume, curves, errors, mixup."""

from __future__ import annotations

import dataclasses
import errno
import json
import subprocess
import sys
import warnings
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from east_ray.analysis.metrics import evaluate
from east_ray.catalog import TEACHERS, get_teacher
from east_ray.config import SYSTEMS, Cell, Recipe, TeacherLRRecipe
from east_ray.data.audio import NORM_SCALE, NORM_SHIFT
from east_ray.data.parquet import LabelTable, read_meta
from east_ray.data.scores import SCORES, read_scores
from east_ray.errors import BadValueError
from east_ray.models import build_student
from east_ray.models.hint import HintedStudent, parameter_count, stage_channels
from east_ray.teachers.embeddings import EmbedJob, embed_shard, extract_teacher
from east_ray.teachers.registry import load_extractor
from east_ray.train.data import (
    ArrayStore,
    Batch,
    TrialData,
    epoch_batches,
    load_trial_data,
    make_batch,
)
from east_ray.train.inputs import (
    MASK_FILL,
    Inputs,
    autocast,
    limit_gpu_memory,
    mixup,
    spec_augment,
)
from east_ray.train.result import RunResult
from east_ray.train.teacher_lr import fit_teacher_lr
from east_ray.train.trainer import NonFiniteLossError, _Run, train
from east_ray.train.trial import TrialSpec
from tests.release_fixtures import OPENMIC_CLASSES, TEST_FEATURES

RECIPE = Recipe(
    batch_size=4,
    max_steps=10_000,
    mixup_alpha=0.3,
    specaug_freq=4,
    specaug_time=8,
    plateau_patience=1,
    early_stop_patience=3,
)


TEACHER_LR = TeacherLRRecipe(max_steps=5)  # the KD cells need logits, not a good teacher


def _with_teacher(prepared: Path, seed: int = 0, name: str = "handcrafted") -> Path:
    def run(jobs: list[EmbedJob]) -> None:
        extractor = load_extractor(name)
        for job in jobs:
            embed_shard(job, extractor)

    extract_teacher(prepared, name, runner=run)
    fit_teacher_lr(prepared, name, TEACHER_LR, fraction=1.0, seed=seed)
    return prepared


def _spec(regularizer: str, stage: str | None, seed: int = 0, **recipe: float | str) -> TrialSpec:
    lam = 0.0 if regularizer == "none" else 0.5
    teacher = None if regularizer == "none" else "handcrafted"
    cell = Cell("synthmic", "cp_resnet", regularizer, teacher, stage, lam, 1.0, seed)
    return TrialSpec(
        cell, Recipe(**{**RECIPE.__dict__, **recipe}), TEST_FEATURES, 20, {"base_channels": 8}
    )


def _data(prepared: Path, spec: TrialSpec) -> TrialData:
    return load_trial_data(prepared, spec.cell, teacher_lr=TEACHER_LR)


@pytest.mark.parametrize(("regularizer", "stage"), SYSTEMS)
def test_each_system_overfits_a_fixed_batch(
    prepared: Path, regularizer: str, stage: str | None, tmp_path: Path
) -> None:
    _with_teacher(prepared)
    spec = _spec(regularizer, stage, mixup_alpha=0.0, specaug_freq=0, specaug_time=0, lr=3e-3)
    data = _data(prepared, spec)
    torch.manual_seed(0)
    run = _Run(spec, data, tmp_path, torch.device("cpu"))
    batch = make_batch(data, data.train_rows[:8])
    losses = [run.train_step(batch)[0].item() for _ in range(25)]
    run.writer.close()
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0], losses


def test_train_reports_same_keys_each_epoch_and_writes_curves(
    prepared: Path, tmp_path: Path
) -> None:
    _with_teacher(prepared)
    spec = _spec("dcor", "all")
    spec = TrialSpec(**{**spec.__dict__, "max_epochs": 3})
    reports: list[dict[str, float]] = []
    result = train(
        spec,
        _data(prepared, spec),
        tmp_path / "run",
        report=lambda m, ckpt: reports.append(m) or None,
    )
    assert len(reports) == result.epochs == 3
    assert all(r.keys() == reports[0].keys() for r in reports)
    assert {"val_mAP", "val_loss", "train_loss", "lr", "best_val_mAP"} <= set(reports[0])
    row = result.row()
    for key in ("test_mAP", "test_F1", "val_mAP", "best_epoch", "steps", "wall_seconds"):
        assert np.isfinite(row[key]), key
    # the last epoch's losses and learning rate, as TensorBoard's curves end
    for key in ("train_loss", "val_loss", "lr"):
        assert row[f"final_{key}"] == reports[-1][key], key
    assert RunResult.from_row(json.loads(json.dumps(row))) == result  # result.json round trip
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    events = EventAccumulator(str(tmp_path / "run" / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/total", "loss/pred", "loss/reg", "epoch/val_mAP"} <= tags
    assert len(events.Scalars("loss/total")) == result.steps
    hparams, finals = _hparams(tmp_path / "run" / "tb")
    assert hparams["system"] == "EAsT_All" and hparams["seed"] == str(spec.cell.seed)
    assert hparams["teacher"] == "handcrafted" and hparams["lam"] == spec.cell.lam
    assert finals["final/test_mAP"] == pytest.approx(result.test["mAP"])


def test_fitnet_trains_hint_projections_that_the_deployed_student_leaves_out(
    prepared: Path, tmp_path: Path
) -> None:
    _with_teacher(prepared)
    spec = _spec("fitnet", "all")
    spec = TrialSpec(**{**spec.__dict__, "max_epochs": 2})
    model = spec.build_model()
    assert isinstance(model, HintedStudent)
    bare = build_student("cp_resnet", 20, seed=0, base_channels=8)
    x = torch.randn(2, TEST_FEATURES.n_mels, 160)
    model.eval(), bare.eval()
    out = model(x)
    torch.testing.assert_close(out.logits, bare(x).logits)  # the hints change no prediction
    dim = get_teacher("handcrafted").dim
    assert [tuple(m.shape[1:3]) for m in out.stages] == [(dim, 1)] * len(bare(x).stages)
    hint_parameters = sum((c + 1) * dim for c in stage_channels(bare, TEST_FEATURES.n_mels))
    result = train(spec, _data(prepared, spec), tmp_path / "run")
    assert result.parameters == parameter_count(bare)
    assert result.training_parameters == result.parameters + hint_parameters
    assert RunResult.from_row(json.loads(json.dumps(result.row()))) == result
    # the checkpoint holds the projections: a resumed run continues from them
    resumed = train(
        TrialSpec(**{**spec.__dict__, "max_epochs": 3}), _data(prepared, spec), tmp_path / "run"
    )
    assert resumed.epochs == 3 and resumed.training_parameters == result.training_parameters


def _hparams(tb: Path) -> tuple[dict[str, object], dict[str, float]]:
    """The HParams session a run wrote (its axes) and its `final/*` scalars, read back
    from the event files as TensorBoard's HParams tab reads them."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    axes: dict[str, object] = {}
    finals: dict[str, float] = {}
    for path in sorted(tb.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == metadata.SESSION_START_INFO_TAG:
                    data = plugin_data_pb2.HParamsPluginData.FromString(
                        value.metadata.plugin_data.content
                    )
                    for name, v in data.session_start_info.hparams.items():
                        axes[name] = v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
                elif value.tag.startswith("final/"):
                    finals[value.tag] = (
                        value.tensor.float_val[0] if value.tensor.float_val else value.simple_value
                    )
    return axes, finals


def test_train_writes_the_test_scores_and_a_resumed_run_rewrites_them(
    prepared: Path, tmp_path: Path
) -> None:
    """The scores are written by `train` itself, so before the study's result.json."""
    spec = TrialSpec(**{**_spec("none", None).__dict__, "max_epochs": 2})
    data = _data(prepared, spec)
    run_dir = tmp_path / "run"
    result = train(spec, data, run_dir)
    path = run_dir / SCORES
    scores = read_scores(path)
    test = data.test_rows
    assert scores.clip_ids.tolist() == [data.labels.clip_ids[i] for i in test]
    assert scores.classes == OPENMIC_CLASSES == tuple(read_meta(prepared)["classes"])
    assert scores.scores.shape == (len(test), 20) and scores.threshold == RECIPE.f1_threshold
    assert np.array_equal(scores.labels, data.labels.labels[test])
    assert np.array_equal(scores.mask, data.labels.mask[test])
    recomputed = evaluate(scores.scores, scores.labels, scores.mask, scores.threshold)
    assert recomputed["mAP"] == pytest.approx(result.test["mAP"], abs=5e-3)  # float16

    # A finished run started again (e.g. its result.json was damaged) trains no epoch,
    # evaluates the kept weights again and rewrites the file.
    path.write_bytes(b"stale")
    epochs: list[dict[str, float]] = []
    again = train(spec, data, run_dir, report=lambda m, _: epochs.append(m))
    assert epochs == [] and again.test == result.test
    rewritten = read_scores(path)
    assert rewritten.clip_ids.tolist() == scores.clip_ids.tolist()
    assert np.array_equal(rewritten.scores, scores.scores)


class _InterruptError(Exception):
    pass


@pytest.mark.parametrize(
    ("prefetch", "teacher"),
    [(0, "handcrafted"), (2, "handcrafted"), (0, "handcrafted+frame_energy")],
)
def test_kill_and_resume_gives_the_same_final_metrics(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefetch: int, teacher: str
) -> None:
    """An interrupted and resumed run ends as an uninterrupted one; so does one whose batches
    a thread gathers ahead (as on a GPU), against the uninterrupted run without; and so
    does a cell that learns from a set of two teachers."""
    from east_ray.train import trainer
    from tests.test_catalog import FRAME_ENERGY

    monkeypatch.setitem(TEACHERS, FRAME_ENERGY.name, FRAME_ENERGY)
    for member in teacher.split("+"):
        _with_teacher(prepared, name=member)
    cell = dataclasses.replace(_spec("dcor_kd", "final").cell, teacher=teacher)
    spec = TrialSpec(**{**_spec("dcor_kd", "final").__dict__, "cell": cell, "max_epochs": 5})
    data = _data(prepared, spec)
    assert len(data.teacher_seqs) == len(teacher.split("+"))
    whole = train(spec, data, tmp_path / "whole")
    monkeypatch.setattr(trainer, "prefetch_depth", lambda device: prefetch)

    def die_after_epoch_2(metrics: dict[str, float], _: Path) -> None:
        if metrics["epoch"] == 2:
            raise _InterruptError

    with pytest.raises(_InterruptError):
        train(spec, data, tmp_path / "resumed", report=die_after_epoch_2)
    epochs_run: list[float] = []
    resumed = train(
        spec, data, tmp_path / "resumed", report=lambda m, _: epochs_run.append(m["epoch"]) or None
    )
    # it continued after epoch 2, it did not start over
    assert epochs_run == [float(e) for e in range(3, whole.epochs + 1)] and whole.epochs > 2
    assert dataclasses.replace(resumed, wall_seconds=0) == dataclasses.replace(
        whole, wall_seconds=0
    )


def test_non_finite_loss_names_step_and_terms(prepared: Path, tmp_path: Path) -> None:
    """Losses are read one step late: a NaN at step 2 stops the run during step 3, and
    the error names step 2."""
    _with_teacher(prepared)
    spec = _spec("dcor", "final", mixup_alpha=0.0)
    data = _data(prepared, spec)
    run = _Run(spec, data, tmp_path, torch.device("cpu"))
    batches = [make_batch(data, data.train_rows[i : i + 4]) for i in (0, 4, 8, 12)]
    batches[1].logmel[0, 0, 0] = np.inf
    with pytest.raises(
        NonFiniteLossError,
        match=r"step 2: non-finite loss \(loss/total=nan, loss/pred=nan, loss/reg=",
    ):
        run.train_batches(batches)
    assert run.state.step == 3
    run.writer.close()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mixup_mixes_each_row_with_its_partner_by_one_weight(seed: int) -> None:
    """Properties, not a replayed random stream: row i becomes λ_i·row_i + (1 − λ_i)·partner_i
    with λ_i ≥ 0.5, the same λ_i for log-mel, labels, teacher sequence and teacher logits,
    and the partner's label mask OR-ed in."""
    torch.manual_seed(seed)
    b, c = 8, 5

    def inputs(x: float) -> Inputs:
        return Inputs(
            torch.full((b, 3, 4), x),
            torch.rand(b, c),
            torch.rand(b, c) < 0.5,
            (torch.randn(b, 4, 6), torch.randn(b, 2, 3)),  # a set of two teachers
            torch.randn(b, c),
        )

    inp, partner = inputs(1.0), inputs(0.0)
    mixed = mixup(inp, partner, 0.3)
    lam = mixed.x[:, 0, 0]  # 1·λ + 0·(1 − λ)
    assert torch.equal(mixed.x, lam.view(b, 1, 1).expand(b, 3, 4)) and (lam >= 0.5).all()
    pairs = [(inp.labels, partner.labels, mixed.labels)]
    pairs += zip(inp.teacher_seqs, partner.teacher_seqs, mixed.teacher_seqs, strict=True)
    pairs += [(inp.teacher_logits, partner.teacher_logits, mixed.teacher_logits)]
    for t, u, out in pairs:
        assert t is not None and u is not None and out is not None
        w = lam.view(-1, *[1] * (t.ndim - 1))
        assert torch.allclose(out, w * t + (1 - w) * u, atol=1e-6)
    assert torch.equal(mixed.mask, inp.mask | partner.mask)


def test_spec_augment_stripes_hold_log_power_zero() -> None:
    """One frequency and one time stripe per example, narrower than the limits, holding the
    normalised log-power 0 of the log-mel front end; the rest untouched."""
    fill = MASK_FILL["log_power"]
    assert fill * NORM_SCALE - NORM_SHIFT == pytest.approx(0.0)  # log-power 0, normalised
    torch.manual_seed(0)
    x = torch.randn(64, 20, 50)
    y = spec_augment(x, 6, 15, fill)
    masked = y != x
    assert torch.all(y[masked] == fill)
    freq_rows = masked.all(dim=2)  # (B, F): whole frequency rows masked
    time_cols = masked.all(dim=1)  # (B, T): whole frames masked
    assert torch.equal(masked, freq_rows[:, :, None] | time_cols[:, None, :])
    for rows, limit in ((freq_rows, 6), (time_cols, 15)):
        widths = rows.sum(1)
        assert widths.max() < limit and widths.max() > 0
        starts = rows.int().argmax(1)
        for i, w in enumerate(widths.tolist()):  # one contiguous stripe
            assert rows[i, starts[i] : starts[i] + w].all()


def _mix_run(prepared: Path, tmp_path: Path, **recipe: float | str) -> _Run:
    spec = _spec("none", None, **{"specaug_freq": 8, "specaug_time": 16, **recipe})
    return _Run(spec, _data(prepared, spec), tmp_path, torch.device("cpu"))


def _const_batch(value: float, b: int = 8, partner: Batch | None = None) -> Batch:
    f, t = TEST_FEATURES.n_mels, TEST_FEATURES.frames
    return Batch(
        np.arange(b),
        np.full((b, f, t), value, np.float16),
        np.full((b, 20), value, np.float32),  # mixed like the log-mel: shows λ
        np.ones((b, 20), bool),
        (),
        None,
        partner,
    )


@pytest.mark.parametrize("specaug_on", ["log_power", "mixed_input"])
def test_spec_augment_comes_before_mixup_by_default(
    prepared: Path, tmp_path: Path, specaug_on: str
) -> None:
    """Example a = 3 everywhere, partner p = −2, stripe value f. Masks first (the default):
    every value is λa + (1−λ)p, λf + (1−λ)p (the example's stripe, showing the partner),
    λa + (1−λ)f (the partner's own stripe) or f, and both kinds of stripe occur, in
    different places. Masks last ("mixed_input"): stripes hold exactly 0, the rest λa + (1−λ)p."""
    a, p = 3.0, -2.0
    torch.manual_seed(0)
    run = _mix_run(prepared, tmp_path, specaug_on=specaug_on)
    mixed = run.augment(_const_batch(a, partner=_const_batch(p)))
    run.writer.close()
    x, f = mixed.x, MASK_FILL[specaug_on]
    lam = ((mixed.labels[:, 0] - p) / (a - p)).view(-1, 1, 1)
    plain, own, partners = lam * a + (1 - lam) * p, lam * f + (1 - lam) * p, lam * a + (1 - lam) * f
    if specaug_on == "mixed_input":
        assert torch.all(torch.isclose(x, plain) | (x == 0.0))
        return
    kinds = [torch.isclose(x, v.expand_as(x), atol=1e-5) for v in (plain, own, partners)]
    assert torch.all(kinds[0] | kinds[1] | kinds[2] | torch.isclose(x, torch.tensor(f)))
    assert kinds[1].any() and kinds[2].any()  # stripes of the example and of the partner
    assert not torch.equal(kinds[1], kinds[2])  # the partner has masks of its own


def test_batch_partners_are_a_permutation_of_the_batch(prepared: Path, tmp_path: Path) -> None:
    """`mixup_partner = "batch"`: row i (one-hot e_i along frequency) is mixed with one other
    row of the same batch, each row the partner of exactly one."""
    torch.manual_seed(1)
    run = _mix_run(prepared, tmp_path, mixup_partner="batch", specaug_freq=0, specaug_time=0)
    batch = _const_batch(0.0)
    batch.logmel[:, :8, :] = np.eye(8, dtype=np.float16)[:, :, None]
    weights = run.augment(batch).x[:, :8, 0]  # row i: λ_i at i, 1 − λ_i at its partner
    run.writer.close()
    assert torch.allclose(weights.sum(1), torch.ones(8)) and ((weights > 0).sum(1) <= 2).all()
    off = weights - torch.diag(weights.diagonal())
    partner = torch.where(off.max(1).values > 0, off.argmax(1), torch.arange(8))
    assert sorted(partner.tolist()) == list(range(8))


@pytest.mark.parametrize("partner", ["training_set", "batch"])
def test_augmentation_copies_only_the_batch_to_the_device(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, partner: str
) -> None:
    """The step's random draws (mask widths and starts, mixup weights, in-batch partners)
    are made on the device: the only host→device copies of an augmented batch are its own
    arrays and its partners'. On a GPU a draw on the host would be one more copy a step
    (the CUDA test below checks that nothing waits on the device)."""
    from east_ray.train import inputs

    copies: list[tuple[int, ...]] = []

    def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
        copies.append(tuple(t.shape))
        return t

    monkeypatch.setattr(inputs, "_to_device", to_device)
    torch.manual_seed(0)
    run = _mix_run(prepared, tmp_path, mixup_partner=partner)
    batch = _const_batch(1.0, partner=_const_batch(0.0) if partner == "training_set" else None)
    run.augment(batch)
    run.writer.close()
    own = [(8, TEST_FEATURES.n_mels, TEST_FEATURES.frames), (8, 20), (8, 20)]
    assert sorted(copies) == sorted(own * (2 if partner == "training_set" else 1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("compile", ["off", "auto"])
def test_training_steps_on_cuda_never_wait_for_the_device(
    prepared: Path, tmp_path: Path, compile: str
) -> None:
    """After warm-up (cuDNN and cuBLAS set-up, a compile and its CUDA-graph recording may
    synchronise), a training step with masks, training-set mixup and the dcor regularizer
    queues its work and returns: torch raises on any synchronisation it would make."""
    _with_teacher(prepared)
    spec = _spec("dcor", "final", compile=compile)
    data = _data(prepared, spec)
    run = _Run(spec, data, tmp_path, torch.device("cuda"))
    batches = list(epoch_batches(data, 4, 0, 1, partners=True, alloc=run.alloc))
    assert len(batches) >= 6 and batches[0].logmel.base is not None
    for batch in batches[:3]:
        run.train_step(batch)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        losses = [run.train_step(batch) for batch in batches[3:6]]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    run.writer.close()
    assert all(torch.isfinite(x).all() for x in losses)


def test_a_batch_is_gathered_into_the_callers_buffer() -> None:
    """`alloc` (page-locked memory on a GPU) receives the spectrograms of the batch and of
    its partners, with the values a plain gather gives."""
    data = _toy_data()
    given: list[np.ndarray] = []

    def alloc(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        given.append(np.full(shape, -1, dtype=dtype))
        return given[-1]

    batch = next(epoch_batches(data, 4, seed=7, epoch=1, partners=True, alloc=alloc))
    plain = next(epoch_batches(data, 4, seed=7, epoch=1, partners=True))
    assert batch.partner is not None and plain.partner is not None and len(given) == 2
    assert batch.logmel is given[0] and batch.partner.logmel is given[1]
    assert np.array_equal(batch.logmel, plain.logmel)
    assert np.array_equal(batch.partner.logmel, plain.partner.logmel)


def test_training_set_partners_need_batches_that_carry_them(prepared: Path, tmp_path: Path) -> None:
    run = _mix_run(prepared, tmp_path)
    with pytest.raises(ValueError, match="needs batches with partners"):
        run.augment(_const_batch(0.0))
    run.writer.close()


def _toy_data(n: int = 40, classes: int = 3) -> TrialData:
    """Log-mel row r holds r everywhere (store rows reversed); splits interleaved."""
    split = np.array(["train", "train", "valid", "train", "test"] * (n // 5))
    labels = LabelTable(
        [f"c{i}" for i in range(n)],
        split,
        np.arange(n).astype(str),
        np.zeros((n, classes), np.float32),
        np.ones((n, classes), bool),
        tuple(f"class{k}" for k in range(classes)),
    )
    store = ArrayStore([f"c{i}" for i in reversed(range(n))], np.arange(n)[::-1, None, None])
    return TrialData(
        labels=labels,
        store=store,
        store_rows=np.arange(n)[::-1].copy(),
        train_rows=np.flatnonzero(split == "train")[:-4],  # a subset of the training split
        valid_rows=labels.rows("valid"),
        test_rows=labels.rows("test"),
        teacher_seqs=(np.arange(n, dtype=np.float32)[:, None, None],),
        teacher_logits=None,
        teacher_hops=(1.0,),
    )


def test_partners_come_from_the_training_subset_and_resume_with_the_batches() -> None:
    data = _toy_data()
    batches = list(epoch_batches(data, 4, seed=7, epoch=3, partners=True))
    plain = list(epoch_batches(data, 4, seed=7, epoch=3))
    assert [b.rows.tolist() for b in batches] == [b.rows.tolist() for b in plain]
    assert all(b.partner is None for b in plain)
    partners = [b.partner for b in batches]
    assert all(q is not None for q in partners)
    rows = np.concatenate([q.rows for q in partners if q is not None])
    assert set(rows) <= set(data.train_rows)  # never a valid or test clip, nor one left out
    assert any(not set(q.rows) <= set(b.rows) for b, q in zip(batches, partners, strict=True) if q)
    for q in partners:  # each partner's own arrays, gathered through the store
        assert q is not None
        assert q.logmel[:, 0, 0].tolist() == q.rows.tolist()
        assert q.teacher_seqs[0][:, 0, 0].tolist() == q.rows.tolist()
    resumed = list(epoch_batches(data, 4, seed=7, epoch=3, start=2, partners=True))
    assert [b.partner.rows.tolist() for b in resumed if b.partner] == [
        q.rows.tolist() for q in partners[2:] if q
    ]
    other = list(epoch_batches(data, 4, seed=7, epoch=4, partners=True))
    assert [b.partner.rows.tolist() for b in other if b.partner] != [
        q.rows.tolist() for q in partners if q
    ]


def test_the_last_smaller_batch_is_kept_unless_dropped() -> None:
    data = _toy_data()
    n = len(data.train_rows)
    assert n % 6, "the fixture must leave a smaller last batch"
    kept = list(epoch_batches(data, 6, seed=7, epoch=3, partners=True))
    dropped = list(epoch_batches(data, 6, seed=7, epoch=3, partners=True, drop_last=True))
    assert sorted(np.concatenate([b.rows for b in kept]).tolist()) == sorted(data.train_rows)
    assert [len(b.rows) for b in kept] == [6] * (n // 6) + [n % 6]
    assert len(dropped) == n // 6
    for a, b in zip(kept, dropped, strict=False):  # the same batches and partners before it
        assert a.rows.tolist() == b.rows.tolist()
        assert a.partner is not None and b.partner is not None
        assert a.partner.rows.tolist() == b.partner.rows.tolist()
    last = kept[-1]
    assert last.partner is not None and len(last.partner.rows) == len(last.rows)


@pytest.mark.parametrize("last_batch", ["keep", "drop"])
def test_an_epoch_trains_its_last_smaller_batch_by_default(
    prepared: Path, tmp_path: Path, last_batch: str
) -> None:
    _with_teacher(prepared)
    spec = _spec("dcor", "final", last_batch=last_batch, batch_size=5)
    spec = TrialSpec(**{**spec.__dict__, "max_epochs": 1})
    data = _data(prepared, spec)
    n = len(data.train_rows)
    assert n % 5, "the fixture must leave a smaller last batch"
    result = train(spec, data, tmp_path / "run")
    assert result.steps == (-(-n // 5) if last_batch == "keep" else n // 5)


@pytest.mark.parametrize(
    ("partial_epoch", "extra", "validated"),
    [
        ("skip", 1, 1),  # the cap falls inside epoch 2: epoch 2 is not validated
        ("validate", 1, 2),
        ("skip", 0, 1),  # the cap ends epoch 1 exactly: a whole epoch, validated
        ("skip", -1, 1),  # the cap falls inside epoch 1: nothing else to select, validated
    ],
)
def test_an_epoch_cut_by_max_steps_is_not_validated_by_default(
    prepared: Path, tmp_path: Path, partial_epoch: str, extra: int, validated: int
) -> None:
    spec = _spec("none", None, partial_epoch=partial_epoch, early_stop_patience=100)
    data = _data(prepared, spec)
    per_epoch = -(-len(data.train_rows) // 4)
    assert per_epoch >= 2
    spec = dataclasses.replace(
        spec, recipe=dataclasses.replace(spec.recipe, max_steps=per_epoch + extra)
    )
    reports: list[dict[str, float]] = []
    result = train(spec, data, tmp_path / "run", report=lambda m, ckpt: reports.append(m) or None)
    assert result.steps == per_epoch + extra
    assert result.stopped == "max_steps"
    assert len(reports) == result.epochs == validated
    assert result.best_epoch <= validated


@pytest.mark.parametrize("early_stop", ["loss", "pred_loss", "off"])
def test_early_stopping_watches_the_loss_the_recipe_names(
    prepared: Path, tmp_path: Path, early_stop: str
) -> None:
    """Patience 0 stops after the first epoch whatever the loss does, on the loss named
    (the combined one by default, the prediction loss alone, or none at all)."""
    _with_teacher(prepared)
    spec = _spec("dcor", "final", early_stop=early_stop, early_stop_patience=0)
    spec = TrialSpec(**{**spec.__dict__, "max_epochs": 3})
    reports: list[dict[str, float]] = []
    result = train(
        spec, _data(prepared, spec), tmp_path / "run", report=lambda m, c: reports.append(m) or None
    )
    first = reports[0]
    assert first["val_loss"] != pytest.approx(first["val_loss_pred"])  # λ = 0.5: they differ
    if early_stop == "off":
        assert (result.stopped, result.epochs) == ("max_epochs", 3)
        return
    assert (result.stopped, result.epochs) == ("early_stop", 1)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["state"]
    watched = first["val_loss" if early_stop == "loss" else "val_loss_pred"]
    assert state["best_val_loss"] == pytest.approx(watched)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
def test_each_precision_chooses_its_autocast(precision: str, device: str) -> None:
    with warnings.catch_warnings():  # no CUDA here: torch disables a CUDA autocast, keeps its kind
        warnings.simplefilter("ignore", UserWarning)
        context = autocast(precision, torch.device(device))
    if precision in ("fp32", "tf32"):
        assert isinstance(context, nullcontext)
    else:
        assert isinstance(context, torch.autocast)
        assert (context.device, context.fast_dtype) == (device, torch.bfloat16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp32", "tf32"])
def test_tf32_matmuls_only_when_the_recipe_asks(
    prepared: Path, tmp_path: Path, precision: str
) -> None:
    torch.backends.cuda.matmul.allow_tf32 = precision != "tf32"  # what an earlier trial left
    spec = _spec("none", None, precision=precision)
    run = _Run(spec, _data(prepared, spec), tmp_path, torch.device("cuda"))
    run.writer.close()
    assert torch.backends.cuda.matmul.allow_tf32 == (precision == "tf32")


def test_a_bf16_step_runs_the_student_in_bf16_and_the_losses_in_fp32(
    prepared: Path, tmp_path: Path
) -> None:
    _with_teacher(prepared)
    spec = _spec("dcor_kd", "final", precision="bf16")
    data = _data(prepared, spec)
    run = _Run(spec, data, tmp_path, torch.device("cpu"))
    inp = run.augment(make_batch(data, data.train_rows[:4], data.train_rows[4:8]))
    out, terms = run.loss(inp)
    run.writer.close()
    assert out.logits.dtype == torch.bfloat16
    assert all(t.dtype == torch.float32 and torch.isfinite(t) for t in terms)


def test_an_unknown_recipe_option_is_refused_with_field_value_and_choices() -> None:
    with pytest.raises(BadValueError, match=r"recipe.precision: got 'fp16', expected one of: fp32"):
        _spec("none", None, precision="fp16")


def test_train_cli_runs_one_cell(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from east_ray.train.__main__ import main

    study = tmp_path / "tiny.toml"
    study.write_text(
        'name = "tiny"\ndataset = "openmic"\nstudent = "cp_resnet"\n'
        "[student_options]\nbase_channels = 8\n"
        "[features]\nsample_rate = 16000\nn_mels = 32\nf_max = 8000.0\nclip_seconds = 1.0\n"
        "[recipe]\nbatch_size = 4\n"
        '[grid]\nregularizers = ["none"]\nseeds = [0]\n'
    )
    args = [
        "--study",
        str(study),
        "--data",
        str(prepared),
        "--out",
        str(tmp_path / "runs"),
        "--max-epochs",
        "1",
    ]
    assert main([*args, "--cell", "nope"]) == 2
    assert "is not a cell of study 'tiny'" in capsys.readouterr().err
    from east_ray.config import expand_cells, load_study

    (cell,) = expand_cells(load_study(study))
    assert main([*args, "--cell", cell.cell_id]) == 0
    assert '"test_mAP"' in capsys.readouterr().out


def test_trainer_imports_no_ray() -> None:
    """The trainer (and everything it reads with) must run where Ray is absent."""
    code = "import sys, east_ray.train.trainer; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_gpu_memory_cap_passes_a_device_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch refuses a bare "cuda" device in set_per_process_memory_fraction (seen on an
    H100): the cap must name the current device's index."""
    calls: list[tuple[float, object]] = []
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    monkeypatch.setattr(
        torch.cuda, "set_per_process_memory_fraction", lambda f, d: calls.append((f, d))
    )
    limit_gpu_memory(0.25, torch.device("cuda"))
    limit_gpu_memory(0.5, torch.device("cuda", 1))
    limit_gpu_memory(1.0, torch.device("cuda"))  # a whole GPU: no cap
    limit_gpu_memory(0.25, torch.device("cpu"))
    assert calls == [(0.25, 3), (0.5, 1)]


def test_a_failed_checkpoint_write_keeps_the_previous_one_and_no_temp_file(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_teacher(prepared)
    spec = _spec("dcor", "final")
    run = _Run(spec, _data(prepared, spec), tmp_path, torch.device("cpu"))
    path = run.checkpoint()
    before = path.read_bytes()

    def disk_full(payload: object, where: str) -> None:
        Path(where).write_bytes(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left") as info:
        run.checkpoint()
    assert info.value.filename == str(path)  # the CLI can say where the write failed
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith(".")) == []


def test_a_damaged_checkpoint_is_set_aside_and_the_previous_generation_resumes(
    prepared: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _with_teacher(prepared)
    spec = TrialSpec(**{**_spec("dcor", "final").__dict__, "max_epochs": 4})
    data = _data(prepared, spec)
    whole = train(spec, data, tmp_path / "whole")

    def die_after_epoch_3(metrics: dict[str, float], _: Path) -> None:
        if metrics["epoch"] == 3:
            raise _InterruptError

    run_dir = tmp_path / "damaged"
    with pytest.raises(_InterruptError):
        train(spec, data, run_dir, report=die_after_epoch_3)
    current = run_dir / "checkpoint.pt"
    current.write_bytes(current.read_bytes()[:1000])  # a copy interrupted by hand
    epochs_run: list[float] = []
    with caplog.at_level("WARNING", logger="east_ray.train.trainer"):
        resumed = train(spec, data, run_dir, report=lambda m, _: epochs_run.append(m["epoch"]))
    assert epochs_run[0] == 3.0  # from epoch 2's checkpoint, not from scratch
    assert [p.name.split(".corrupt-")[0] for p in run_dir.glob("*.corrupt-*")] == ["_checkpoint.pt"]
    assert "checkpoint.pt cannot be used" in caplog.text
    assert "moved to _checkpoint.pt" in caplog.text
    assert dataclasses.replace(resumed, wall_seconds=0) == dataclasses.replace(
        whole, wall_seconds=0
    )

    # Both generations unusable (garbage, another cell's): the cell starts over.
    (run_dir / "checkpoint.pt").write_bytes(b"not a checkpoint")
    other = TrialSpec(**{**spec.__dict__, "cell": _spec("kd", "final").cell})
    torch.save({"cell_id": other.cell.cell_id}, run_dir / "checkpoint.prev.pt")
    epochs_run.clear()
    again = train(spec, data, run_dir, report=lambda m, _: epochs_run.append(m["epoch"]))
    assert epochs_run[0] == 1.0 and again.test == whole.test
    assert len(list(run_dir.glob("*.corrupt-*"))) == 3


def test_block_store_views_object_store_blocks_without_copying(ray_local: None) -> None:
    """The memory model: a trial maps the spectrogram blocks in place, so N trials on a
    node share one copy. Blocks with several chunks (Parquet row groups) included."""
    import pyarrow as pa
    import ray

    from east_ray.data.parquet import tensor_array
    from east_ray.train.data import ArrayStore, BlockStore

    logmel = np.random.default_rng(0).random((10, 4, 6)).astype(np.float16)
    tensors = tensor_array(logmel)
    ids = [f"c{i}" for i in range(10)]
    blocks = [
        pa.table({"clip_id": ids[:7], "logmel": pa.chunked_array([tensors[:3], tensors[3:7]])}),
        pa.table({"clip_id": ids[7:], "logmel": pa.chunked_array([tensors[7:]])}),
    ]
    stored = ray.get([ray.put(b) for b in blocks])  # zero-copy reads of the object store
    store = BlockStore(stored)
    buffers = [
        np.frombuffer(chunk.storage.values.buffers()[1], dtype=np.float16)
        for b in stored
        for chunk in b["logmel"].chunks
    ]
    assert len(store._arrays) == len(buffers) == 3
    for view, buffer in zip(store._arrays, buffers, strict=True):
        assert np.shares_memory(view, buffer)  # a view of the block, not a copy
    rows = np.array([9, 0, 4, 3, 7])
    assert store.clip_ids == ids
    assert np.array_equal(store.gather(rows), ArrayStore(ids, logmel).gather(rows))
    out = np.zeros((len(rows), 4, 6), np.float16)
    assert store.gather(rows, out) is out and np.array_equal(out, logmel[rows])
