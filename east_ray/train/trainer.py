"""The one shared EAsT trainer: one cell, one run, the authors' recipe. Knows nothing of Ray.

`train(spec, data, run_dir)` trains the student of `spec.cell` on `data` (a `TrialData`):
Adam with weight decay, gradient clipping, SpecAugment and mixup as the recipe says (below),
the composite loss `(1 - λ)·L_pred + λ·L_reg`; after each epoch it validates, steps
ReduceLROnPlateau on the combined validation loss and early stopping on the loss
`recipe.early_stop` names (the combined one, as the authors'), keeps the weights of
the best validation mAP, and writes a checkpoint (model, optimiser, scheduler,
early-stopping state, RNG states, step). At the end the kept weights are evaluated on the
test split, and the test clips' sigmoid scores are written to `run_dir/test_scores.parquet`
(`east_ray.data.scores`), so a run that resumes after it finished re-evaluates and
rewrites them.

As in the authors' loop, an epoch's last, smaller batch is trained (`recipe.last_batch =
"drop"` leaves it out). The batch-wise regularizers are defined on it whatever its size,
but carry less: with 2 rows dCor² is 1 by construction and with 1 row both dCor and
Cos-Diff are constant (loss 1 and 0), so such a batch trains on the prediction loss (and
KD) alone. An epoch that `max_steps` cuts short is not validated, so it cannot be
selected, as in the authors' loop (`recipe.partial_epoch = "validate"` validates it); a
cap inside the first epoch validates it, the only weights there are to select.

Augmentation and the step's inputs on the device (masks, mixup, mel-band jitter, page-locked
gathering) are `east_ray.train.inputs`'; this module runs the recipe around them.

Resuming from a checkpoint replays the same batches and random numbers, so on the CPU
the final metrics equal those of an uninterrupted run. The previous epoch's checkpoint is
kept beside the current one: a checkpoint that cannot be read or is not this cell's is
moved aside (`_<name>.corrupt-<time>`, with a warning naming it) and the run resumes from
the previous one, or starts over when neither is usable. Per-step losses
(`loss/total`, `loss/pred`, `loss/reg`) and per-epoch metrics go to TensorBoard under
`run_dir/tb`; the per-epoch metrics, always with the same keys, also go to `report`
(the study turns them into `tune.report`). A non-finite loss stops the run with an error
naming the step and every loss term.

The forward pass runs in fp32 (on CUDA PyTorch's default, the authors': TF32 in cuDNN
convolutions, float32 matmuls; `recipe.precision = "tf32"` allows TF32 matmuls too) or,
with "bf16", under bf16 autocast; the losses are computed in fp32 either way.

A training step's forward and loss run under torch.compile as `recipe.compile` says
(`east_ray.train.compiled`: by default on CUDA only, eager fallback, plain checkpoint
keys); evaluation runs eager.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from east_ray.analysis.metrics import evaluate
from east_ray.data.meljitter import JITTER, JitterRanges
from east_ray.data.parquet import move_aside, write_atomic
from east_ray.data.scores import SCORES, write_scores
from east_ray.errors import BadValueError, UserError
from east_ray.losses import LossTerms, east_loss
from east_ray.models import Student, StudentOutput
from east_ray.models.hint import parameter_count
from east_ray.train.compiled import CompiledStep, compile_mode
from east_ray.train.data import (
    Batch,
    TrialData,
    batches_per_epoch,
    epoch_batches,
    eval_batches,
    scored_clips,
)
from east_ray.train.inputs import (
    Inputs,
    adam,
    augment,
    autocast,
    batch_alloc,
    inputs_on,
    limit_gpu_memory,
    needs_partners,
    pick_device,
    prefetch_depth,
)
from east_ray.train.prefetch import prefetched
from east_ray.train.result import FINAL_KEYS, METRIC_KEYS, RunResult
from east_ray.train.selection import Selection
from east_ray.train.tensorboard import cell_hparams, final_metrics, write_session
from east_ray.train.trial import TrialSpec

CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"  # the generation before CHECKPOINT

logger = logging.getLogger(__name__)

Report = Callable[[dict[str, float], Path], None]


class NonFiniteLossError(UserError, FloatingPointError):
    """The loss became NaN or Inf; the message names the step and each term."""


class Evaluation(NamedTuple):
    """A split evaluated: the combined loss, the prediction loss alone, the metrics and
    the sigmoid scores `(N, C)`."""

    loss: float
    pred_loss: float
    metrics: dict[str, float]
    scores: np.ndarray


class StepLoss(NamedTuple):
    """A training step's loss terms, on the host."""

    total: float
    pred: float
    reg: float


@dataclasses.dataclass
class _State(Selection):
    """What a checkpoint holds besides the torch objects (flat, with the selection's)."""

    epoch: int = 0  # completed epochs
    step: int = 0
    best_val: dict[str, float] = dataclasses.field(default_factory=dict)
    last: dict[str, float] = dataclasses.field(default_factory=dict)  # FINAL_KEYS, last epoch
    wall_seconds: float = 0.0
    stopped: str = ""


class _Run:
    """One training run's objects; methods are the recipe's steps."""

    def __init__(
        self, spec: TrialSpec, data: TrialData, run_dir: Path, device: torch.device
    ) -> None:
        self.spec, self.data, self.device = spec, data, device
        r = spec.recipe
        self.model: Student = spec.build_model()
        self.model.to(device)
        if device.type == "cuda":
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            # "fp32" is PyTorch's default, as the authors ran: TF32 in cuDNN convolutions,
            # float32 matmuls (the classifier, the loss Grams); "tf32" allows TF32 matmuls
            # too. A process-wide switch, so set either way: Ray reuses trial processes.
            torch.backends.cuda.matmul.allow_tf32 = r.precision == "tf32"
        self.opt = adam(self.model, r, device)
        self.alloc = batch_alloc(device)
        self.prefetch = prefetch_depth(device)
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.opt, factor=r.plateau_factor, patience=r.plateau_patience
        )
        self.loss_spec = spec.loss_spec()
        hop = spec.features.hop_seconds
        self.stage_hops = [s * hop for s in self.model.time_strides]
        self.state = _State()
        self.best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.forward_backward = CompiledStep(
            self.training_loss,
            self.model,
            compile_mode(r.compile, device),
            f"cell {spec.cell.cell_id}",
        )
        self.run_dir = run_dir
        self.writer = SummaryWriter(str(run_dir / "tb"))

    def autocast(self) -> AbstractContextManager[Any]:
        return autocast(self.spec.recipe.precision, self.device)

    def loss(self, inp: Inputs) -> tuple[StudentOutput, LossTerms]:
        """Forward pass (in the recipe's precision) and the composite loss, in float32."""
        with self.autocast():
            out = self.model(inp.x)
        return out, self.loss_of(out, inp)

    def loss_of(self, out: StudentOutput, inp: Inputs) -> LossTerms:
        """The composite loss of the student's output `out` on `inp`, in float32."""
        return east_loss(
            out,
            inp.labels,
            inp.mask,
            self.loss_spec,
            stage_hops=self.stage_hops,
            teacher_seqs=inp.teacher_seqs,
            teacher_hops=self.data.teacher_hops,
            teacher_first_centres=self.data.teacher_first_centres,
            teacher_weights=self.data.teacher_weights,
            teacher_logits=inp.teacher_logits,
        )

    def training_loss(self, inp: Inputs) -> LossTerms:
        """Forward and loss of a training step on `inp`: what `recipe.compile` compiles."""
        return self.loss(inp)[1]

    @property
    def needs_partners(self) -> bool:
        """Whether the training batches must carry partners drawn from the training subset."""
        return needs_partners(self.spec.recipe)

    @property
    def mel_jitter(self) -> JitterRanges | None:
        """The band-edge jitter ranges of `recipe.mel_jitter` (None: stored log-mels)."""
        ranges = JITTER[self.spec.recipe.mel_jitter]
        if ranges is not None and self.data.spectra is None:
            raise BadValueError(
                f"cell {self.spec.cell.cell_id}: recipe.mel_jitter "
                f"{self.spec.recipe.mel_jitter!r} needs the training clips' STFT magnitudes; "
                "prepare them (python -m east_ray.data spectra --data DIR) and load them "
                '(load_trial_data(..., spectra=True)), or set recipe.mel_jitter = "off"'
            )
        return ranges

    def augment(self, batch: Batch) -> Inputs:
        """`batch` as the student sees it in training (`east_ray.train.inputs.augment`)."""
        return augment(batch, self.spec.recipe, self.spec.features, self.device)

    def train_step(self, batch: Batch) -> torch.Tensor:
        """One optimiser step; returns (total, pred, reg) still on the device (no sync).
        An epoch's last, smaller batch runs eager: a compiled graph has the full batch's
        fixed shapes, and compiling a second one for one step an epoch costs more than it
        saves."""
        r = self.spec.recipe
        inp = self.augment(batch)
        self.state.step += 1
        self.opt.zero_grad(set_to_none=True)
        full = len(batch.rows) == r.batch_size
        terms = self.forward_backward(inp) if full else self.forward_backward.eager(inp)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), r.grad_clip)
        self.opt.step()
        return torch.stack([t.detach() for t in terms])

    def record(self, step: int, losses: torch.Tensor) -> StepLoss:
        """Step `step`'s losses on the host (its one device→host copy), checked and logged."""
        loss = StepLoss(*losses.tolist())
        if not all(math.isfinite(v) for v in loss):
            raise NonFiniteLossError(
                f"cell {self.spec.cell.cell_id}, step {step}: non-finite loss "
                f"(loss/total={loss.total}, loss/pred={loss.pred}, loss/reg={loss.reg})"
            )
        for name, value in loss._asdict().items():
            self.writer.add_scalar(f"loss/{name}", value, step)
        return loss

    def train_batches(self, batches: Iterable[Batch]) -> tuple[np.ndarray, int]:
        """Train on `batches` until they or `max_steps` run out; summed (total, pred, reg)
        and the number of steps. Step k's losses are read after step k+1 is queued, so the
        host gathers the next batch while the device computes and never waits on an idle
        device; a non-finite loss stops the run one step later than it happened."""
        totals, n = np.zeros(3), 0
        pending: tuple[int, torch.Tensor] | None = None
        for batch in batches:
            losses = self.train_step(batch)
            if pending is not None:
                totals += self.record(*pending)
            pending = (self.state.step, losses)
            n += 1
            if self.state.step >= self.spec.recipe.max_steps:
                self.state.stopped = "max_steps"
                break
        if pending is not None:
            totals += self.record(*pending)
        return totals, n

    def evaluate_rows(self, rows: np.ndarray) -> Evaluation:
        """Losses (means over batches), metrics and sigmoid scores `(len(rows), C)` of
        `rows`, no augmentation, eager (module doc)."""
        self.model.eval()
        scores, losses, pred_losses, sizes = [], [], [], []
        with torch.no_grad():  # results stay on the device until the end: one sync, not one a batch
            batches = eval_batches(self.data, rows, self.spec.recipe.batch_size, self.alloc)
            for batch in prefetched(batches, self.prefetch):
                out, terms = self.loss(inputs_on(batch, self.device))
                losses.append(terms.total.detach())
                pred_losses.append(terms.pred.detach())
                sizes.append(len(batch.rows))
                scores.append(torch.sigmoid(out.logits.float()))
            losses_host = torch.stack(losses).tolist()
            pred_host = torch.stack(pred_losses).tolist()
            scores_host = torch.cat(scores).cpu().numpy()
        self.model.train()
        metrics = evaluate(
            scores_host,
            self.data.labels.labels[rows],
            self.data.labels.mask[rows],
            self.spec.recipe.f1_threshold,
        )
        return Evaluation(
            float(np.average(losses_host, weights=sizes)),
            float(np.average(pred_host, weights=sizes)),
            metrics,
            scores_host,
        )

    def checkpoint(self) -> Path:
        payload = {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "plateau": self.plateau.state_dict(),
            "best_weights": self.best_weights,
            "state": dataclasses.asdict(self.state),
            "rng_torch": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "cell_id": self.spec.cell.cell_id,
        }
        path = self.run_dir / CHECKPOINT

        def save(tmp: str) -> None:
            torch.save(payload, tmp)
            if path.is_file():  # once the new one is complete, keep the old one as PREVIOUS
                os.replace(path, self.run_dir / PREVIOUS)

        write_atomic(path, save)
        return path

    def restore(self, path: Path) -> None:
        payload = torch.load(path, map_location=self.device, weights_only=True)
        if not isinstance(payload, dict) or payload.get("cell_id") != self.spec.cell.cell_id:
            found = payload.get("cell_id") if isinstance(payload, dict) else type(payload)
            raise ValueError(
                f"{path}: checkpoint of cell {found}, expected {self.spec.cell.cell_id}"
            )
        self.model.load_state_dict(payload["model"])
        self.opt.load_state_dict(payload["optimizer"])
        self.plateau.load_state_dict(payload["plateau"])
        self.best_weights = payload["best_weights"]
        self.state = _State(**payload["state"])
        torch.set_rng_state(payload["rng_torch"].cpu())
        if payload["rng_cuda"]:
            torch.cuda.set_rng_state_all([s.cpu() for s in payload["rng_cuda"]])


def _fresh_run(spec: TrialSpec, data: TrialData, run_dir: Path, device: torch.device) -> _Run:
    torch.manual_seed(spec.cell.seed)
    return _Run(spec, data, run_dir, device)


def _resumed_run(spec: TrialSpec, data: TrialData, run_dir: Path, device: torch.device) -> _Run:
    """A run restored from the newest usable checkpoint generation in `run_dir`, else new."""
    for name in (CHECKPOINT, PREVIOUS):
        path = run_dir / name
        if not path.is_file():
            continue
        run = _fresh_run(spec, data, run_dir, device)
        try:
            run.restore(path)
            return run
        except OSError:  # the disk, not the file: moving it aside could lose good work
            run.writer.close()
            raise
        except Exception as exc:  # truncated, not a checkpoint, another cell's or format
            run.writer.close()
            aside = move_aside(path)
            logger.warning(
                "cell %s: checkpoint %s cannot be used (%s: %s); moved to %s",
                spec.cell.cell_id,
                path,
                type(exc).__name__,
                exc,
                aside.name,
            )
    return _fresh_run(spec, data, run_dir, device)


def _epochs(run: _Run) -> Iterator[int]:
    epoch = run.state.epoch
    while not run.state.stopped:
        epoch += 1
        if run.spec.max_epochs is not None and epoch > run.spec.max_epochs:
            run.state.stopped = "max_epochs"
            return
        yield epoch


def train(
    spec: TrialSpec,
    data: TrialData,
    run_dir: Path,
    *,
    report: Report | None = None,
    resume_from: Path | None = None,
    device: torch.device | None = None,
) -> RunResult:
    """Train, select on validation, test (see the module doc)."""
    device = device or pick_device()
    run_dir.mkdir(parents=True, exist_ok=True)
    limit_gpu_memory(spec.gpu_fraction, device)
    r = spec.recipe
    if len(data.train_rows) < r.batch_size:
        raise BadValueError(
            f"cell {spec.cell.cell_id}: {len(data.train_rows)} training clips, fewer than "
            f"recipe.batch_size {r.batch_size}; lower the batch size or raise the fraction"
        )
    if resume_from is not None:
        run = _fresh_run(spec, data, run_dir, device)
        run.restore(resume_from)
    else:
        run = _resumed_run(spec, data, run_dir, device)
    run.model.train()
    try:
        for epoch in _epochs(run):
            started = time.perf_counter()
            drop_last = r.last_batch == "drop"
            batches = epoch_batches(
                data,
                r.batch_size,
                spec.cell.seed,
                epoch,
                partners=run.needs_partners,
                drop_last=drop_last,
                alloc=run.alloc,
                mel_jitter=run.mel_jitter,
            )
            totals, n = run.train_batches(prefetched(batches, run.prefetch))
            cut = n < batches_per_epoch(len(data.train_rows), r.batch_size, drop_last)
            if cut and r.partial_epoch == "skip" and run.state.epoch > 0:
                # the authors' loop stops at max_steps without validating the cut epoch, so
                # it cannot be selected (with no epoch validated yet, it is validated)
                run.state.wall_seconds += time.perf_counter() - started
                break
            val_loss, val_pred_loss, val, _ = run.evaluate_rows(data.valid_rows)
            run.plateau.step(val_loss)
            s = run.state
            s.epoch = epoch
            watched = val_pred_loss if r.early_stop == "pred_loss" else val_loss
            patience = None if r.early_stop == "off" else r.early_stop_patience
            best, patience_used = s.update(epoch, val["mAP"], watched, patience)
            if best:
                s.best_val = {**val, "loss": val_loss}
                run.best_weights = {
                    k: v.detach().clone() for k, v in run.model.state_dict().items()
                }
            if patience_used:
                s.stopped = s.stopped or "early_stop"
            s.wall_seconds += time.perf_counter() - started
            metrics = {
                "epoch": float(epoch),
                "step": float(s.step),
                "lr": run.opt.param_groups[0]["lr"],
                "train_loss": totals[0] / max(n, 1),
                "train_loss_pred": totals[1] / max(n, 1),
                "train_loss_reg": totals[2] / max(n, 1),
                "val_loss": val_loss,
                "val_loss_pred": val_pred_loss,
                **{f"val_{k}": val[k] for k in METRIC_KEYS},
                "best_val_mAP": s.best_map,
                "best_epoch": float(s.best_epoch),
            }
            s.last = {k: float(metrics[k]) for k in FINAL_KEYS}  # plain floats: weights_only loads
            path = run.checkpoint()  # before logging: a resumed run never logs an epoch twice
            for key, value in metrics.items():
                run.writer.add_scalar(f"epoch/{key}", value, epoch)
            run.writer.flush()
            if report is not None:
                report(metrics, path)
        run.model.load_state_dict(run.best_weights)
        _, _, test, scores = run.evaluate_rows(data.test_rows)
        # before the caller's result.json: a finished cell always has its scores
        write_scores(scored_clips(data, scores, r.f1_threshold), run_dir / SCORES)
        write_session(run.writer, cell_hparams(spec.cell), final_metrics(test, run.state.best_map))
    finally:
        run.writer.close()
    s = run.state
    return RunResult(
        cell=spec.cell,
        epochs=s.epoch,
        steps=s.step,
        best_epoch=s.best_epoch,
        stopped=s.stopped,
        train_clips=len(data.train_rows),
        val={k: s.best_val.get(k, math.nan) for k in (*METRIC_KEYS, "loss")},
        test={k: test[k] for k in METRIC_KEYS},
        final={k: s.last.get(k, math.nan) for k in FINAL_KEYS},
        wall_seconds=s.wall_seconds,
        device=device.type,
        parameters=parameter_count(getattr(run.model, "deployed", run.model)),
        training_parameters=parameter_count(run.model),
    )
