"""Mel-band-edge jitter (`recipe.mel_jitter`): the authors' ranges, Kaldi's banks, the
stored STFT magnitudes, and a trainer whose "off" path is the one it always was."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torchaudio.compliance import kaldi

from east_ray.config import Cell, Features
from east_ray.data import meljitter
from east_ray.data.meljitter import JITTER, draw_jitter, jittered_banks, jittered_logmel
from east_ray.data.parquet import read_meta
from east_ray.data.prepare import ShardJob
from east_ray.data.spectra import SPECTRA, MissingSpectraError, check_spectra
from east_ray.data.spectra_prepare import build_spectra_shard, prepare_spectra
from east_ray.errors import BadValueError
from east_ray.train import inputs, trainer
from east_ray.train.data import TrialData, epoch_batches, load_trial_data, make_batch
from east_ray.train.inputs import inputs_on
from east_ray.train.trainer import train
from east_ray.train.trial import TrialSpec
from tests.release_fixtures import TEST_FEATURES
from tests.test_trainer import RECIPE  # the trainer tests' short recipe

AUTHORS = JITTER["authors"]
assert AUTHORS is not None
OPENMIC = Features(sample_rate=32000, n_mels=128, f_max=16000.0, clip_seconds=10.0)
DEMO = Features(sample_rate=16000, n_mels=64, f_max=8000.0, clip_seconds=6.0, hop_length=640)


def _in_process(jobs: list[ShardJob]) -> None:
    for job in jobs:
        build_spectra_shard(job)


def _spec(max_epochs: int = 3, **recipe: Any) -> TrialSpec:
    cell = Cell("openmic", "cp_resnet", "none", None, None, 0.0, 1.0, 0)
    return TrialSpec(
        cell,
        dataclasses.replace(RECIPE, **recipe),
        TEST_FEATURES,
        20,
        {"base_channels": 8},
        max_epochs=max_epochs,
    )


@pytest.fixture
def with_spectra(prepared: Path) -> Path:
    prepare_spectra(prepared, runner=_in_process)
    return prepared


def _jittered(data: TrialData, rows: np.ndarray, jitter: np.ndarray) -> torch.Tensor:
    batch = make_batch(data, rows, jitter=jitter)
    return inputs_on(batch, torch.device("cpu"), TEST_FEATURES).x


def test_the_drawn_edges_follow_the_authors_ranges_and_reach_both_ends() -> None:
    """numpy's randint(0, 20) and randint(0, 2000), as the authors call it: f_min + 0…19 Hz,
    f_max − 0…1999 Hz, every value reachable."""
    j = draw_jitter(np.random.default_rng(1223), 40_000, AUTHORS)
    assert j.shape == (40_000, 2) and j.dtype == np.int64
    assert (j[:, 0].min(), j[:, 0].max()) == (0, 19)
    assert (j[:, 1].min(), j[:, 1].max()) == (0, 1999)
    assert len(np.unique(j[:, 0])) == 20


@pytest.mark.parametrize(
    "features", [OPENMIC, DEMO, TEST_FEATURES], ids=["openmic", "demo", "test"]
)
def test_the_vectorised_banks_are_kaldis_bit_for_bit(features: Features) -> None:
    """Zero jitter gives the banks of the stored log-mel; any jitter the banks Kaldi builds
    for the jittered edges (the authors' `get_mel_banks` per clip)."""
    rng = np.random.default_rng(0)
    jitter = np.concatenate(
        [[[0, 0], [19, 1999], [0, 1999], [19, 0]], draw_jitter(rng, 60, AUTHORS)]
    )
    banks = jittered_banks(torch.from_numpy(jitter), features)
    assert banks.shape == (len(jitter), features.n_mels, features.n_fft // 2)
    for bank, (up, down) in zip(banks, jitter.tolist(), strict=True):
        expected, _ = kaldi.get_mel_banks(
            features.n_mels,
            features.n_fft,
            float(features.sample_rate),
            features.f_min + up,
            features.f_max - down,
            100.0,
            -500.0,
            1.0,
        )
        assert torch.equal(bank, expected), (up, down)


def test_a_jittered_bank_spans_exactly_the_jittered_edges() -> None:
    """Every weight lies within [f_min + up, f_max − down] (a bin exactly on an edge may
    keep a float32 rounding's weight, in Kaldi's banks too), and the outermost STFT bins
    inside carry weight: the edges moved, not just the shape."""
    f = OPENMIC
    width = f.sample_rate / f.n_fft
    for up, down in [(0, 0), (19, 1999), (7, 1000)]:
        bank = jittered_banks(torch.tensor([[up, down]]), f)[0]
        used = np.flatnonzero(bank.sum(0).numpy() > 0) * width
        low, high = f.f_min + up, f.f_max - down
        assert used.min() >= low and used.max() <= high
        assert used.min() - width <= low and used.max() + width >= high


def test_epoch_batches_draw_jitter_after_the_order_and_partners(with_spectra: Path) -> None:
    """The batches' rows and partners are the same with or without jitter (its draws come
    last); each example and each partner has its own draw within the ranges; a resumed
    epoch draws the same."""
    data = load_trial_data(with_spectra, _spec().cell, spectra=True)
    plain = list(epoch_batches(data, 4, seed=3, epoch=2, partners=True))
    jit = list(epoch_batches(data, 4, seed=3, epoch=2, partners=True, mel_jitter=AUTHORS))
    assert [b.rows.tolist() for b in jit] == [b.rows.tolist() for b in plain]
    for a, b in zip(plain, jit, strict=True):
        assert a.partner is not None and b.partner is not None
        assert b.partner.rows.tolist() == a.partner.rows.tolist()
        assert np.array_equal(a.logmel, b.logmel)
        assert a.magnitude is None and a.jitter is None and a.partner.magnitude is None
        assert b.jitter is not None and b.partner.jitter is not None
        assert b.magnitude is not None and b.magnitude.shape == (len(b.rows), 512, 50)
    every = np.concatenate([x for b in jit for x in (b.jitter, b.partner.jitter) if x is not None])
    assert every[:, 0].max() < 20 and every[:, 1].max() < 2000 and every.min() >= 0
    assert len({tuple(r) for r in every.tolist()}) > len(every) // 2  # per clip, not per batch
    resumed = list(
        epoch_batches(data, 4, seed=3, epoch=2, start=1, partners=True, mel_jitter=AUTHORS)
    )
    assert [b.jitter.tolist() for b in resumed if b.jitter is not None] == [
        b.jitter.tolist() for b in jit[1:] if b.jitter is not None
    ]


def test_zero_jitter_gives_the_stored_log_mels(with_spectra: Path) -> None:
    """From the float16 magnitudes with un-jittered banks: the stored float16 log-mel, to
    within its own rounding (half a float16 step at |x| < 4 is 0.00098)."""
    data = load_trial_data(with_spectra, _spec().cell, spectra=True)
    rows = data.train_rows
    x = _jittered(data, rows, np.zeros((len(rows), 2), np.int64))
    stored = torch.from_numpy(make_batch(data, rows).logmel).float()
    assert x.shape == stored.shape
    assert (x - stored).abs().max().item() < 2e-3
    moved = _jittered(data, rows, np.tile([[19, 1999]], (len(rows), 1)))
    assert (moved - stored).abs().max().item() > 0.1


def test_jittered_log_mels_follow_the_audio_computed_per_clip(with_spectra: Path) -> None:
    """A batch's clip with jitter (u, d) equals the log-mel of its magnitudes through
    Kaldi's banks for f_min + u … f_max − d, whatever the other rows draw."""
    data = load_trial_data(with_spectra, _spec().cell, spectra=True)
    rows = data.train_rows[:3]
    jitter = np.array([[0, 0], [19, 1999], [5, 321]])
    x = _jittered(data, rows, jitter)
    mags = torch.from_numpy(make_batch(data, rows, jitter=jitter).magnitude).float()  # type: ignore[arg-type]
    for i, (up, down) in enumerate(jitter.tolist()):
        banks, _ = kaldi.get_mel_banks(
            32, 1024, 16000.0, float(up), 8000.0 - down, 100.0, -500.0, 1.0
        )
        ref = ((banks @ mags[i] ** 2 + 1e-5).log() + 3.7) / 3.1
        torch.testing.assert_close(x[i], ref, rtol=1e-5, atol=1e-5)


def test_off_trains_exactly_as_before_jitter_existed(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mel_jitter "off": epoch_batches is called as it was before the option (no jitter
    argument), nothing of the jitter path runs, and the run equals one where that is
    enforced, step for step; the inputs are the stored log-mels as they were."""
    spec = _spec(max_epochs=2)
    data = load_trial_data(prepared, spec.cell)
    free = train(spec, data, tmp_path / "free")

    real = epoch_batches
    calls: list[dict[str, Any]] = []

    def as_before(*args: Any, mel_jitter: Any = None, **kwargs: Any) -> Iterator[Any]:
        assert mel_jitter is None
        calls.append(kwargs)
        for batch in real(*args, **kwargs):
            assert batch.magnitude is None and batch.jitter is None
            assert batch.partner is not None and batch.partner.magnitude is None
            yield batch

    def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the jitter path ran with mel_jitter off")

    monkeypatch.setattr(trainer, "epoch_batches", as_before)
    monkeypatch.setattr(inputs, "jittered_logmel", never)
    monkeypatch.setattr(meljitter, "draw_jitter", never)
    enforced = train(spec, data, tmp_path / "enforced")
    assert len(calls) == 2
    assert dataclasses.replace(free, wall_seconds=0) == dataclasses.replace(
        enforced, wall_seconds=0
    )
    a = torch.load(tmp_path / "free" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "enforced" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the batches follow the rule they always did: the (seed, epoch) generator's permutation,
    # then the partners, and nothing drawn before them
    rng = np.random.default_rng([0, 1])
    order = rng.permutation(data.train_rows)
    partners = rng.choice(data.train_rows, (-(-len(order) // 4), 4))
    for b, batch in enumerate(real(data, 4, 0, 1, partners=True)):
        assert batch.rows.tolist() == order[4 * b : 4 * b + 4].tolist()
        assert batch.partner is not None
        assert batch.partner.rows.tolist() == partners[b, : len(batch.rows)].tolist()
        x = inputs_on(batch, torch.device("cpu"), TEST_FEATURES).x
        assert torch.equal(x, torch.from_numpy(batch.logmel).float())


def test_a_jittered_run_trains_differently_and_resumes_to_the_same_result(
    with_spectra: Path, tmp_path: Path
) -> None:
    spec = _spec(max_epochs=4, mel_jitter="authors")
    data = load_trial_data(with_spectra, spec.cell, spectra=True)
    whole = train(spec, data, tmp_path / "whole")
    assert whole.epochs == 4
    off = train(_spec(max_epochs=4), data, tmp_path / "off")
    assert whole.val != off.val  # the features changed

    class InterruptError(Exception):
        pass

    def die_after_epoch_2(metrics: dict[str, float], _: Path) -> None:
        if metrics["epoch"] == 2:
            raise InterruptError

    with pytest.raises(InterruptError):
        train(spec, data, tmp_path / "resumed", report=die_after_epoch_2)
    resumed = train(spec, data, tmp_path / "resumed")
    assert dataclasses.replace(resumed, wall_seconds=0) == dataclasses.replace(
        whole, wall_seconds=0
    )


def test_jitter_without_stored_spectra_names_the_folder_and_command(
    prepared: Path, tmp_path: Path
) -> None:
    with pytest.raises(
        MissingSpectraError, match=r"spectra: missing.*east_ray\.data spectra --data"
    ):
        load_trial_data(prepared, _spec().cell, spectra=True)
    spec = _spec(mel_jitter="authors")
    with pytest.raises(BadValueError, match="mel_jitter 'authors' needs the training clips"):
        train(spec, load_trial_data(prepared, spec.cell), tmp_path / "run")


def test_spectra_hold_the_training_clips_only_and_are_prepared_once(
    with_spectra: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = check_spectra(with_spectra)
    meta = read_meta(with_spectra)
    assert record == meta[SPECTRA]
    assert record["clips"] == meta["counts"]["train"] > 0
    assert record["shape"] == [512, 50] and record["bytes_per_clip"] == 2 * 512 * 50
    data = load_trial_data(with_spectra, _spec().cell, spectra=True)
    assert data.spectra_rows is not None
    train_rows = data.labels.rows("train")
    assert (data.spectra_rows[train_rows] >= 0).all()
    others = np.setdiff1d(np.arange(len(data.labels.clip_ids)), train_rows)
    assert (data.spectra_rows[others] == -1).all()
    with pytest.raises(BadValueError, match="only training clips"):
        make_batch(data, others[:2], jitter=np.zeros((2, 2), np.int64))

    def never(jobs: list[ShardJob]) -> None:
        raise AssertionError("prepared again")

    assert prepare_spectra(with_spectra, runner=never) == record
    # a record from another preparation of the folder does not count
    meta[SPECTRA]["dataset_fingerprint"] = "other"
    (with_spectra / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(MissingSpectraError):
        check_spectra(with_spectra)


def test_jittered_logmel_refuses_magnitudes_of_other_features() -> None:
    with pytest.raises(ValueError, match=r"expected \(B, 512, frames\) for n_fft 1024"):
        jittered_logmel(torch.zeros(2, 513, 10), torch.zeros(2, 2, dtype=torch.long), OPENMIC)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_jittered_log_mels_on_the_device_equal_the_cpus() -> None:
    rng = np.random.default_rng(0)
    mags = torch.from_numpy(np.abs(rng.standard_normal((4, 512, 30))).astype(np.float16))
    jitter = torch.from_numpy(draw_jitter(rng, 4, AUTHORS))
    cpu = jittered_logmel(mags, jitter, OPENMIC)
    cuda = jittered_logmel(mags.cuda(), jitter.cuda(), OPENMIC)
    torch.testing.assert_close(cuda.cpu(), cpu, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_a_study_with_jitter_prepares_the_spectra_and_trains_on_them(
    prepared: Path, tmp_path: Path, ray_local: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The study command makes `spectra/` (Ray tasks) before the trials, and its trials
    read them from the object store; a second run finds them there."""
    from east_ray.study import __main__ as study
    from tests.release_fixtures import tiny_study

    spec = tmp_path / "jit.toml"
    recipe = 'max_steps = 6\nmel_jitter = "authors"'
    spec.write_text(tiny_study("jit", recipe=recipe, regularizers='["none"]'))
    argv = [str(spec), "--data", str(prepared), "--storage", str(tmp_path / "results")]
    assert study.main(argv) == 0
    err = capsys.readouterr().err
    assert f"data: recipe.mel_jitter needs {prepared}/spectra" in err
    assert check_spectra(prepared)["clips"] == read_meta(prepared)["counts"]["train"]
    assert (tmp_path / "results" / "jit" / "results.parquet").is_file()
