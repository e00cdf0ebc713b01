"""Teacher registry, the handcrafted teacher, extraction to Parquet, Teacher_LR, the CLI."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import math
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from east_ray.analysis.metrics import evaluate
from east_ray.config import TeacherLRRecipe
from east_ray.data.openmic import release_vggish
from east_ray.data.parquet import read_labels, read_meta
from east_ray.data.scores import read_scores
from east_ray.errors import BadValueError, UnknownNameError
from east_ray.teachers import TEACHERS, get_teacher, load_extractor
from east_ray.teachers.__main__ import main as teachers_main
from east_ray.teachers.embeddings import EmbedJob, embed_shard, extract_teacher
from east_ray.teachers.handcrafted import handcrafted_embedding
from east_ray.teachers.stored import (
    SHARD_FRAMING_KEY,
    load_embeddings,
    read_record,
    record_path,
)
from east_ray.train.result import TeacherLRFit
from east_ray.train.teacher_lr import _loss_and_scores, fit_teacher_lr, load_teacher_logits

# T for clips of 10 s and 29.1 s, per teacher (documented in the teachers' modules);
# OpenL3 and PaSST are centred, as the authors extracted them
EXPECTED_T = {
    "vggish": (10, 30),
    "openl3": (11, 31),
    "passt": (11, 31),
    "panns": (1, 1),
    "musicnn": (3, 9),
    "handcrafted": (10, 30),
    # hub teachers: 1 s frames from the start (CLAP: 10 s windows)
    "mert_v1_95m": (10, 29),
    "mert_v1_330m": (10, 29),
    "ast": (10, 29),
    "whisper_base": (10, 29),
    "clap_music": (1, 2),
    "dasheng": (10, 29),
}


# A short Teacher_LR fit: the 12 training clips of `prepared` make one step per epoch.
SHORT = TeacherLRRecipe(max_steps=30)


def _in_process(jobs: list[EmbedJob]) -> None:
    extractor = load_extractor(jobs[0].teachers[0], outputs=jobs[0].teachers)
    for job in jobs:
        embed_shard(job, extractor)


def test_registry_facts_and_unknown_name() -> None:
    assert set(TEACHERS) == set(EXPECTED_T)
    assert get_teacher("panns").hop_seconds is None  # clip-level
    assert get_teacher("musicnn").hop_seconds == pytest.approx(2.992)
    assert {n for n, info in TEACHERS.items() if info.centred} == {"openl3", "passt"}
    assert {TEACHERS[n].hop_seconds for n in ("vggish", "openl3", "passt", "handcrafted")} == {0.96}
    with pytest.raises(
        UnknownNameError, match="known teachers: ast, clap_music, dasheng, handcrafted"
    ):
        get_teacher("wav2vec")


def test_the_registry_imports_no_torch() -> None:
    code = "import sys, east_ray.teachers; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", sorted(TEACHERS))
def test_registry_row(name: str) -> None:
    info = get_teacher(name)
    module, function = info.builder.split(":")
    assert importlib.util.find_spec(module) is not None
    assert callable(getattr(importlib.import_module(module), function))
    frames = tuple(info.frames(round(s * info.sample_rate)) for s in (10.0, 29.1))
    assert frames == EXPECTED_T[name]
    assert info.frames(1) == (1 if info.pads_short_clips else 0)
    # a centred teacher's frame 1 is centred within a one-window clip
    assert info.frames(info.window) == (2 if info.centred else 1)
    assert info.first_centre_seconds == (
        0.0 if info.centred else info.window / 2 / info.sample_rate
    )
    with pytest.raises(BadValueError, match="at least one sample"):
        info.frames(0)


@pytest.mark.parametrize("name", ["handcrafted", "musicnn"])
@pytest.mark.parametrize("seconds", [10.0, 29.1])
def test_local_teacher_contract(name: str, seconds: float) -> None:
    info = get_teacher(name)
    audio = 0.1 * torch.randn(
        2, round(seconds * info.sample_rate), generator=torch.Generator().manual_seed(0)
    )
    torch.manual_seed(0)
    extractor = load_extractor(name, "cpu", pretrained=False)
    assert (extractor.name, extractor.sample_rate, extractor.dim) == (
        name,
        info.sample_rate,
        info.dim,
    )
    out = extractor(audio)
    assert out.shape == (2, info.frames(audio.shape[1]), info.dim)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    with pytest.raises(BadValueError, match="shorter than one frame"):
        extractor(audio[:, : info.window - 1])


def test_handcrafted_refuses_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(BadValueError, match="has no weights"):
        load_extractor("handcrafted", "cpu", tmp_path / "weights.pth")


def test_handcrafted_centroid_follows_pitch() -> None:
    t = torch.arange(16000) / 16000
    low, high = torch.sin(2 * torch.pi * 200 * t), torch.sin(2 * torch.pi * 3000 * t)
    out = handcrafted_embedding(torch.stack([low, high]))
    log_centroid_mean = out[:, 0, 20]  # after 20 MFCC means
    assert log_centroid_mean[1] > log_centroid_mean[0] + 1.0


def test_extract_writes_parquet_and_its_record_and_is_idempotent(prepared: Path) -> None:
    meta = (prepared / "meta.json").read_bytes()
    record = extract_teacher(prepared, "handcrafted", runner=_in_process)
    assert record["complete"] and (record["frames"], record["dim"]) == (1, 48)
    assert read_record(prepared, "handcrafted") == record
    assert json.loads(record_path(prepared, "handcrafted").read_text()) == record
    assert (prepared / "meta.json").read_bytes() == meta  # prepare's file, never rewritten
    table = pq.read_table(prepared / "teachers" / "handcrafted")
    labels = read_labels(prepared)
    assert sorted(table["clip_id"].to_pylist()) == sorted(labels.clip_ids)
    calls: list[int] = []
    again = extract_teacher(prepared, "handcrafted", runner=lambda jobs: calls.append(len(jobs)))
    assert again == record and calls == []
    spectrogram_files = sorted((prepared / "clips").iterdir())
    assert all(p.stat().st_mtime > 0 for p in spectrogram_files)  # untouched, still there


def test_extract_resumes_a_partial_teacher(prepared: Path) -> None:
    shards = sorted(pq.read_table(prepared / "manifest.parquet")["shard"].to_pylist())
    done: list[int] = []

    def fail_after_one(jobs: list[EmbedJob]) -> None:
        _in_process(jobs[:1])
        done.append(jobs[0].shard)
        raise KeyboardInterrupt  # the run dies after one shard

    with pytest.raises(KeyboardInterrupt):
        extract_teacher(prepared, "handcrafted", runner=fail_after_one)
    assert read_record(prepared, "handcrafted") is None
    seen: list[int] = []

    def resume(jobs: list[EmbedJob]) -> None:
        seen.extend(j.shard for j in jobs)
        _in_process(jobs)

    extract_teacher(prepared, "handcrafted", runner=resume)
    assert done[0] not in seen and sorted(set(shards) - {done[0]}) == sorted(seen)


def test_load_embeddings_order_standardisation_and_errors(prepared: Path) -> None:
    with pytest.raises(FileNotFoundError, match="teacher 'handcrafted' not extracted"):
        load_embeddings(prepared, "handcrafted", [])
    extract_teacher(prepared, "handcrafted", runner=_in_process)
    labels = read_labels(prepared)
    ids = list(reversed(labels.clip_ids))
    emb = load_embeddings(prepared, "handcrafted", ids)
    assert emb.shape == (len(ids), 1, 48)
    train = [
        ids.index(c) for c, s in zip(labels.clip_ids, labels.split, strict=True) if s == "train"
    ]
    assert np.abs(emb[train].mean(axis=(0, 1))).max() < 1e-4  # z-scored on the train split
    with pytest.raises(ValueError, match="no embedding for 1 clips"):
        load_embeddings(prepared, "handcrafted", ["nope"])
    shard = sorted((prepared / "teachers" / "handcrafted").glob("part-*.parquet"))[0]
    table = pq.read_table(shard)
    from east_ray.data.parquet import column_numpy, tensor_array

    values = column_numpy(table["embedding"]).copy()
    values[0, 0, 3] = np.nan
    pq.write_table(table.set_column(1, "embedding", tensor_array(values)), shard)
    with pytest.raises(
        ValueError, match=f"NaN or Inf in the embedding of clip {table['clip_id'][0]}"
    ):
        load_embeddings(prepared, "handcrafted", labels.clip_ids)


def test_vggish_is_imported_from_the_release(prepared: Path) -> None:
    record = extract_teacher(prepared, "vggish", runner=lambda jobs: pytest.fail("no network"))
    assert record["source"].startswith("release X") and (record["frames"], record["dim"]) == (
        10,
        128,
    )
    release = Path(read_meta(prepared)["release_root"])
    with np.load(release / "openmic-2018.npz", allow_pickle=True) as npz:  # our own fixture
        x, keys = npz["X"], list(npz["sample_key"])
    labels = read_labels(prepared)
    emb = load_embeddings(prepared, "vggish", labels.clip_ids)
    for i, clip in enumerate(labels.clip_ids):
        assert np.array_equal(emb[i], (x[keys.index(clip)] - 128) / 256)


def test_release_vggish_reads_the_requested_clips(prepared: Path) -> None:
    release = Path(read_meta(prepared)["release_root"])
    with np.load(release / "openmic-2018.npz", allow_pickle=True) as npz:  # our own fixture
        x, keys = npz["X"], list(npz["sample_key"])
    ids = [keys[3], keys[0]]
    got = release_vggish(release, ids)
    assert got is not None and got.dtype == np.float32
    assert np.array_equal(got, (x[[3, 0]].astype(np.float32) - 128) / 256)
    assert release_vggish(release, []) is not None
    with pytest.raises(BadValueError, match="no row for 1 prepared clips"):
        release_vggish(release, ["nope"])
    assert release_vggish(prepared, ids) is None  # no release archive there


def test_extraction_on_ray_actors(prepared: Path, ray_local: None) -> None:
    record = extract_teacher(prepared, "handcrafted")
    assert record["clips"] == len(read_labels(prepared).clip_ids)


def _record_path(fit: TeacherLRFit) -> Path:
    """A fit's record file, beside its test scores (the record names its files)."""
    return Path(fit.test_scores).parent / fit.logits.replace(".parquet", ".json")


def test_teacher_lr_fits_go_where_the_caller_says_and_follow_the_dataset(
    prepared: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A study keeps its fits in its own folder: the prepared dataset is only read. A fit
    made on another prepared dataset (its fingerprint) is fitted again."""
    extract_teacher(prepared, "handcrafted", runner=_in_process)
    before = sorted(p.relative_to(prepared) for p in prepared.rglob("*"))
    fits = tmp_path / "fits"
    record = fit_teacher_lr(prepared, "handcrafted", SHORT, fraction=1.0, seed=5, fits=fits)
    assert Path(record.test_scores).parent == fits / "handcrafted"
    assert sorted(p.relative_to(prepared) for p in prepared.rglob("*")) == before
    labels = read_labels(prepared)
    logits = load_teacher_logits(
        prepared, "handcrafted", 1.0, 5, labels.clip_ids, recipe=SHORT, fits=fits
    )
    assert logits.shape == (len(labels.clip_ids), 20)
    path = _record_path(record)
    path.write_text(json.dumps({**json.loads(path.read_text()), "data": "another"}))
    with caplog.at_level(logging.WARNING, logger="east_ray"):
        again = fit_teacher_lr(prepared, "handcrafted", SHORT, fraction=1.0, seed=5, fits=fits)
    assert "fitted on another prepared dataset (fingerprint another" in caplog.text
    assert again.test == record.test


def test_teacher_lr_fits_stores_and_reloads(prepared: Path) -> None:
    extract_teacher(prepared, "handcrafted", runner=_in_process)
    record = fit_teacher_lr(prepared, "handcrafted", SHORT, fraction=1.0, seed=5)
    assert 1 <= record.best_epoch <= record.epochs <= record.steps <= 30
    assert {"mAP", "ROC-AUC", "F1", "F1_pos", "n_classes"} <= set(record.test)
    scores = Path(record.test_scores)
    assert scores.parent == prepared / "teacher_lr" / "handcrafted"  # the default place
    # named by fraction, seed and the recipe's key
    assert re.fullmatch(r"frac1-seed5-[0-9a-f]{8}\.parquet", record.logits)
    on_disk = json.loads(_record_path(record).read_text())
    # the record names its files relative to itself, and the dataset it was fitted on
    assert TeacherLRFit.from_record(on_disk) == dataclasses.replace(record, test_scores=scores.name)
    assert on_disk["data"] == read_meta(prepared)["fingerprint"]
    assert fit_teacher_lr(prepared, "handcrafted", SHORT, fraction=1.0, seed=5) == record
    labels = read_labels(prepared)
    logits = load_teacher_logits(
        prepared, "handcrafted", 1.0, 5, labels.clip_ids[::-1], recipe=SHORT
    )
    assert logits.shape == (len(labels.clip_ids), 20) and np.isfinite(logits).all()
    with pytest.raises(FileNotFoundError, match="is not fitted yet"):
        load_teacher_logits(prepared, "handcrafted", 0.5, 5, labels.clip_ids, recipe=SHORT)
    with pytest.raises(FileNotFoundError, match="is not fitted yet"):  # another recipe's
        load_teacher_logits(prepared, "handcrafted", 1.0, 5, labels.clip_ids)

    # Damaged files (a truncated record, a record missing a field, truncated logits) are
    # set aside and refitted.
    stored = scores.parent / record.logits
    record_file = _record_path(record)
    without_steps = {k: v for k, v in on_disk.items() if k != "steps"}
    for damaged, text in ((record_file, None), (record_file, without_steps), (stored, None)):
        if text is None:
            damaged.write_bytes(damaged.read_bytes()[:20])
        else:
            damaged.write_text(json.dumps(text))
        refit = fit_teacher_lr(prepared, "handcrafted", SHORT, fraction=1.0, seed=5)
        assert refit == record
    assert len(list(stored.parent.glob("_*.corrupt-*"))) == 6
    again = load_teacher_logits(
        prepared, "handcrafted", 1.0, 5, labels.clip_ids[::-1], recipe=SHORT
    )
    assert np.array_equal(again, logits)


def test_teacher_lr_keeps_one_fit_per_fraction(handcrafted: Path) -> None:
    records = [
        fit_teacher_lr(handcrafted, "handcrafted", SHORT, seed=5, fraction=f) for f in (0.5, 0.75)
    ]
    # "frac0.5-seed5" and "frac0.75-seed5" once both read as the stem "frac0" (with_suffix):
    # the second fraction got the first one's record and logits back
    assert [r.fraction for r in records] == [0.5, 0.75]
    assert [r.logits.rsplit("-", 1)[0] for r in records] == ["frac0.5-seed5", "frac0.75-seed5"]


def test_teacher_lr_keeps_its_test_scores(
    handcrafted: Path, caplog: pytest.LogCaptureFixture
) -> None:
    record = fit_teacher_lr(handcrafted, "handcrafted", SHORT, seed=5, fraction=0.5)
    labels = read_labels(handcrafted)
    test = labels.rows("test")
    path = Path(record.test_scores)
    assert path.name == record.logits.replace(".parquet", ".test_scores.parquet")
    scores = read_scores(path)
    assert scores.clip_ids.tolist() == [labels.clip_ids[i] for i in test]
    assert scores.classes == tuple(read_meta(handcrafted)["classes"])
    assert scores.scores.shape == (len(test), 20)
    assert np.array_equal(scores.labels, labels.labels[test])
    assert np.array_equal(scores.mask, labels.mask[test])
    recomputed = evaluate(scores.scores, scores.labels, scores.mask)
    assert recomputed["mAP"] == pytest.approx(record.test["mAP"], abs=5e-3)  # float16
    # A fit stored before test scores were kept gets them from its logits; a damaged
    # file is set aside and written again.
    path.unlink()
    assert fit_teacher_lr(handcrafted, "handcrafted", SHORT, seed=5, fraction=0.5) == record
    assert np.array_equal(read_scores(path).scores, scores.scores)
    path.write_bytes(path.read_bytes()[:30])
    with caplog.at_level(logging.WARNING, logger="east_ray"):
        assert fit_teacher_lr(handcrafted, "handcrafted", SHORT, seed=5, fraction=0.5) == record
    assert "cannot be read" in caplog.text and len(list(path.parent.glob("_*.corrupt-*"))) == 1
    assert np.array_equal(read_scores(path).scores, scores.scores)


@pytest.fixture
def sgd_steps() -> Iterator[list[tuple[float, float]]]:
    """(lr, norm of the gradient applied) of every optimiser step while the test runs."""
    steps: list[tuple[float, float]] = []

    def before_step(opt: torch.optim.Optimizer, *_: object) -> None:
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads])).item()
        steps.append((opt.param_groups[0]["lr"], norm))

    handle = register_optimizer_step_pre_hook(before_step)
    yield steps
    handle.remove()


@pytest.fixture
def handcrafted(prepared: Path) -> Path:
    extract_teacher(prepared, "handcrafted", runner=_in_process)
    return prepared


def test_teacher_lr_clips_every_step_to_grad_clip(
    handcrafted: Path, sgd_steps: list[tuple[float, float]]
) -> None:
    recipe = TeacherLRRecipe(max_steps=5, early_stop_patience=100)
    fit_teacher_lr(handcrafted, "handcrafted", dataclasses.replace(recipe, grad_clip=1e9), seed=5)
    unclipped = [norm for _, norm in sgd_steps]
    sgd_steps.clear()
    fit_teacher_lr(handcrafted, "handcrafted", dataclasses.replace(recipe, grad_clip=1e-3), seed=5)
    clipped = [norm for _, norm in sgd_steps]
    assert len(clipped) == len(unclipped) == 5
    assert unclipped[0] > 1e-2  # same start: the clip binds on the first step
    assert clipped[0] == pytest.approx(1e-3, rel=1e-4)
    assert max(clipped) <= 1e-3 * (1 + 1e-6)


def test_teacher_lr_uses_the_per_teacher_lr(
    handcrafted: Path, sgd_steps: list[tuple[float, float]]
) -> None:
    for by_teacher, lr in (({"handcrafted": 0.37}, 0.37), ({"vggish": 0.37}, 0.01)):
        sgd_steps.clear()
        recipe = TeacherLRRecipe(lr=0.01, lr_by_teacher=by_teacher, max_steps=2)
        record = fit_teacher_lr(handcrafted, "handcrafted", recipe, seed=5)
        assert record.recipe["lr"] == lr and "lr_by_teacher" not in record.recipe
        assert sgd_steps[0][0] == lr  # the plateau schedule may only lower it later


def test_teacher_lr_stops_at_the_step_cap(
    handcrafted: Path, sgd_steps: list[tuple[float, float]]
) -> None:
    capped = TeacherLRRecipe(batch_size=4, max_steps=7, early_stop_patience=100)
    record = fit_teacher_lr(handcrafted, "handcrafted", capped, seed=5)
    per_epoch = math.ceil(record.train_clips / 4)
    assert 7 % per_epoch != 0  # the cap ends an epoch part-way
    assert record.steps == len(sgd_steps) == 7
    assert record.epochs == math.ceil(7 / per_epoch)


def test_teacher_lr_fits_of_two_recipes_are_both_kept(
    handcrafted: Path, sgd_steps: list[tuple[float, float]], caplog: pytest.LogCaptureFixture
) -> None:
    recipe = TeacherLRRecipe(max_steps=4)
    first = fit_teacher_lr(handcrafted, "handcrafted", recipe, seed=5)
    sgd_steps.clear()
    # Another teacher's lr is no change to this fit: it is read back, not fitted.
    other_lr = dataclasses.replace(recipe, lr_by_teacher={"passt": 0.2})
    assert fit_teacher_lr(handcrafted, "handcrafted", other_lr, seed=5) == first
    assert sgd_steps == []
    changed = dataclasses.replace(recipe, grad_clip=0.5)
    again = fit_teacher_lr(handcrafted, "handcrafted", changed, seed=5)
    assert sgd_steps and again.recipe["grad_clip"] == 0.5 and again.logits != first.logits
    # both fits stay: either recipe reads its own back without fitting
    sgd_steps.clear()
    assert fit_teacher_lr(handcrafted, "handcrafted", recipe, seed=5) == first
    assert fit_teacher_lr(handcrafted, "handcrafted", changed, seed=5) == again
    assert sgd_steps == []
    # A record whose recipe is not the one its name stands for is fitted again, naming
    # what differs.
    stored = _record_path(again)
    stored.write_text(json.dumps({**again.record(), "recipe": first.recipe}))
    with caplog.at_level(logging.WARNING, logger="east_ray"):
        assert fit_teacher_lr(handcrafted, "handcrafted", changed, seed=5) == again
    assert "fitted with another recipe (grad_clip 1.0 -> 0.5); fitting it again" in caplog.text
    assert len(sgd_steps) == 4


def test_teacher_lr_fitted_on_another_framing_is_fitted_again(
    prepared: Path, caplog: pytest.LogCaptureFixture
) -> None:
    extract_teacher(prepared, "handcrafted", runner=_in_process)
    short = TeacherLRRecipe(max_steps=10)
    record = fit_teacher_lr(prepared, "handcrafted", short, fraction=1.0, seed=5)
    assert record.teacher_framing == "start"
    path = _record_path(record)
    path.write_text(json.dumps({**record.record(), "teacher_framing": "centred_zeros"}))
    with caplog.at_level("WARNING", logger="east_ray.train.teacher_lr"):
        refit = fit_teacher_lr(prepared, "handcrafted", short, fraction=1.0, seed=5)
    assert refit == record and "fitted on 'centred_zeros'-framed embeddings" in caplog.text


def test_embed_cli_writes_t_by_d(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import soundfile as sf

    from tests.release_fixtures import tone

    audio = tmp_path / "clip.wav"
    sf.write(audio, tone(3.0, 22050, 2, 0), 22050)
    out = tmp_path / "emb.npy"
    assert teachers_main(["embed", "--teacher", "handcrafted", str(audio), "--out", str(out)]) == 0
    assert np.load(out).shape == (3, 48)
    assert capsys.readouterr().out == f"{out}: handcrafted embedding 3x48\n"
    assert (
        teachers_main(
            ["embed", "--teacher", "handcrafted", str(tmp_path / "none.wav"), "--out", str(out)]
        )
        == 2
    )


def test_missing_or_damaged_shards_of_a_finished_teacher_are_extracted_again(
    prepared: Path, caplog: pytest.LogCaptureFixture
) -> None:
    record = extract_teacher(prepared, "handcrafted", runner=_in_process)
    folder = prepared / "teachers" / "handcrafted"
    original = pq.read_table(folder).sort_by("clip_id")
    shards = sorted(folder.glob("part-*.parquet"))
    assert len(shards) >= 2
    shards[0].unlink()  # deleted by hand while meta.json still lists the teacher
    shards[1].write_bytes(shards[1].read_bytes()[:100])  # truncated copy
    redone: list[int] = []
    rerun = _recording(redone)
    with caplog.at_level("WARNING", logger="east_ray.teachers.embeddings"):
        again = extract_teacher(prepared, "handcrafted", runner=rerun)
    assert len(redone) == 2 and again == record
    assert f"{shards[1]} cannot be read" in caplog.text
    assert "lists teacher handcrafted as extracted, but 2 of its" in caplog.text
    assert shards[0].name in caplog.text and shards[1].name in caplog.text
    assert len(list(folder.glob("*.corrupt-*"))) == 1
    assert pq.read_table(folder).sort_by("clip_id").equals(original)


def _recording(redone: list[int]) -> Callable[[list[EmbedJob]], None]:
    """An in-process runner that also notes the shards it runs in `redone`."""

    def run(jobs: list[EmbedJob]) -> None:
        redone.extend(j.shard for j in jobs)
        _in_process(jobs)

    return run


def _rewrite_framing(data_dir: Path, name: str, framing: str | None) -> None:
    """Make teacher `name`'s record and shards claim `framing` (None: written before the
    framing was recorded)."""
    path = record_path(data_dir, name)
    record = {k: v for k, v in json.loads(path.read_text()).items() if k != "framing"}
    path.write_text(json.dumps(record if framing is None else {**record, "framing": framing}))
    for shard in (data_dir / "teachers" / name).glob("part-*.parquet"):
        table = pq.read_table(shard)
        metadata = None if framing is None else {SHARD_FRAMING_KEY: framing.encode()}
        pq.write_table(table.replace_schema_metadata(metadata), shard)


def test_embeddings_of_another_framing_are_refused_then_extracted_again(
    prepared: Path, caplog: pytest.LogCaptureFixture
) -> None:
    record = extract_teacher(prepared, "handcrafted", runner=_in_process)
    assert record["framing"] == "start"
    labels = read_labels(prepared)
    original = load_embeddings(prepared, "handcrafted", labels.clip_ids)
    _rewrite_framing(prepared, "handcrafted", "centred_zeros")  # e.g. OpenL3 before the fix
    with pytest.raises(
        BadValueError, match=r"'centred_zeros' framing.*teachers extract --teacher handcrafted"
    ):
        load_embeddings(prepared, "handcrafted", labels.clip_ids)
    redone: list[int] = []
    rerun = _recording(redone)
    with caplog.at_level("WARNING", logger="east_ray.teachers.embeddings"):
        again = extract_teacher(prepared, "handcrafted", runner=rerun)
    shards = sorted(set(pq.read_table(prepared / "manifest.parquet")["shard"].to_pylist()))
    assert sorted(redone) == shards and again == record
    assert "'centred_zeros' framing" in caplog.text and "extracting it again" in caplog.text
    assert np.array_equal(load_embeddings(prepared, "handcrafted", labels.clip_ids), original)


def test_records_from_before_the_framing_was_recorded(prepared: Path) -> None:
    """Every teacher framed from 0 then: still good for the teachers that still do."""
    record = extract_teacher(prepared, "handcrafted", runner=_in_process)
    _rewrite_framing(prepared, "handcrafted", None)
    again = extract_teacher(prepared, "handcrafted", runner=lambda jobs: pytest.fail("redo"))
    assert again == {k: v for k, v in record.items() if k != "framing"}
    assert load_embeddings(prepared, "handcrafted", []).shape[0] == 0


def test_an_interrupted_extraction_resumes_only_on_shards_of_its_framing(prepared: Path) -> None:
    extract_teacher(prepared, "handcrafted", runner=_in_process)
    folder = prepared / "teachers" / "handcrafted"
    record_path(prepared, "handcrafted").unlink()  # the run died before its record
    first = sorted(folder.glob("part-*.parquet"))[0]
    table = pq.read_table(first)
    pq.write_table(table.replace_schema_metadata({SHARD_FRAMING_KEY: b"centred_reflect"}), first)
    redone: list[str] = []

    def rerun(jobs: list[EmbedJob]) -> None:
        redone.extend(f"part-{j.shard:05d}.parquet" for j in jobs)
        _in_process(jobs)

    extract_teacher(prepared, "handcrafted", runner=rerun)
    assert redone == [first.name]
    assert pq.read_schema(first).metadata[SHARD_FRAMING_KEY] == b"start"


def test_a_damaged_record_is_set_aside_and_written_again(
    prepared: Path, caplog: pytest.LogCaptureFixture
) -> None:
    record = extract_teacher(prepared, "handcrafted", runner=_in_process)
    path = record_path(prepared, "handcrafted")
    path.write_text(path.read_text()[:20])
    with pytest.raises(BadValueError, match="not a teacher record"):
        load_embeddings(prepared, "handcrafted", [])
    with caplog.at_level("WARNING", logger="east_ray.teachers.embeddings"):
        again = extract_teacher(prepared, "handcrafted", runner=lambda jobs: pytest.fail("redo"))
    assert again == record == read_record(prepared, "handcrafted")
    assert f"{path} is damaged" in caplog.text
    assert len(list(path.parent.glob("_*.corrupt-*"))) == 1


def test_teacher_lr_validation_loss_is_the_clip_weighted_batch_mean() -> None:
    gen = torch.Generator().manual_seed(0)
    n, d, c = 37, 5, 4  # batches of 16, 16 and 5 clips
    x, y = torch.randn(n, d, generator=gen), torch.rand(n, c, generator=gen).round()
    m = torch.rand(n, c, generator=gen) < torch.linspace(0.1, 0.9, n)[:, None]  # partial masks
    with torch.random.fork_rng(devices=[]):  # the same weights whatever ran before
        torch.manual_seed(0)
        model = torch.nn.Linear(d, c)
    loss, scores = _loss_and_scores(model, x, y, m, 16)
    # independent reference in float64 numpy: per batch, the masked mean; then weighted by clips
    z = model(x).detach().double().numpy()
    bce = np.maximum(z, 0) - z * y.double().numpy() + np.log1p(np.exp(-np.abs(z)))
    mask = m.numpy()
    per_batch = [
        (bce[i : i + 16][mask[i : i + 16]].mean(), len(bce[i : i + 16])) for i in range(0, n, 16)
    ]
    expected = sum(v * k for v, k in per_batch) / n
    assert loss == pytest.approx(expected, rel=1e-6)
    assert abs(loss - bce[mask].mean()) > 1e-3  # the split-wide masked mean is another number
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-z)), rtol=1e-5)
