"""`synthesize`: render a whole SynthMIC set into a folder, atomically and reusably."""

from __future__ import annotations

import errno
import logging
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from tqdm import tqdm

from east_ray.errors import BadValueError
from east_ray.synthmic._labels import label_release
from east_ray.synthmic._manifest import (
    SynthSummary,
    parameters,
    reusable,
    summarize,
    write_manifest,
)
from east_ray.synthmic._release import write_release
from east_ray.synthmic._render import default_soundfont, soundfont_presets
from east_ray.synthmic._scores import plan_tracks, score_catalogue
from east_ray.synthmic._track import ClipRecord, TrackJob, render_track

logger = logging.getLogger(__name__)

# Clips rendered unless told otherwise: the demo's set, and the CLI's default, so the two
# agree on data/raw/synthmic. With 400 clips (254 for training) the demo's student learnt
# the training tracks: one seed, 620 steps, validation ROC-AUC 0.85 but test 0.72; with 800
# (510 for training), the same run reached 0.83 and 0.78 (studies/demo.toml has the rest).
# Rendering 800 clips took 160-164 CPU-s here (two processes, 2026-12-01).
DEFAULT_CLIPS = 800


def _check_arguments(n_clips: int, seed: int, workers: int | None) -> int:
    """The number of render processes; raises `BadValueError` for a bad argument."""
    if n_clips < 1:
        raise BadValueError(f"n_clips (--clips): must be >= 1, got {n_clips}")
    if seed < 0:
        raise BadValueError(f"seed (--seed): must be >= 0, got {seed}")
    n_workers = (os.cpu_count() or 1) if workers is None else workers
    if n_workers < 1:
        raise BadValueError(f"workers (--workers): must be >= 1 or left out, got {workers}")
    return n_workers


def _soundfont_file(soundfont: Path | None) -> Path:
    path = Path(soundfont) if soundfont is not None else default_soundfont()
    if not path.is_file():
        reason = "SoundFont not found; pass an existing General-MIDI .sf2 with --soundfont"
        raise FileNotFoundError(errno.ENOENT, reason, str(path))
    return path


def _jobs(n_clips: int, seed: int, soundfont: Path, audio_dir: Path) -> list[TrackJob]:
    programs, kits = soundfont_presets(soundfont)
    plan = plan_tracks(n_clips, seed, score_catalogue())
    return [
        TrackJob(i + 1, cands, k, seed, programs, kits, str(soundfont), str(audio_dir))
        for i, (k, cands) in enumerate(plan)
    ]


def _rendered(jobs: Sequence[TrackJob], workers: int) -> Iterator[tuple[ClipRecord, ...]]:
    """Each track's clip records, in the order the tracks finish."""
    if workers == 1:
        for job in jobs:
            yield render_track(job)
        return
    context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context) as pool:
        for future in as_completed([pool.submit(render_track, job) for job in jobs]):
            yield future.result()


def _render_all(jobs: Sequence[TrackJob], workers: int, n_clips: int) -> list[ClipRecord]:
    """Every clip's record, sorted by sample key, with a progress bar on a terminal."""
    records: list[ClipRecord] = []
    with tqdm(total=n_clips, desc="SynthMIC", unit="clip", disable=None, file=sys.stderr) as bar:
        for track in _rendered(jobs, workers):
            records.extend(track)
            bar.update(len(track))
    return sorted(records, key=lambda r: r.sample_key)


def _render_into(
    tmp: Path,
    out: Path,
    params: Mapping[str, Any],
    *,
    soundfont: Path,
    workers: int,
    started: float,
) -> SynthSummary:
    """Render the set `params` describes into `tmp`, manifest last; its summary names `out`."""
    n_clips, seed = params["n_clips"], params["seed"]
    jobs = _jobs(n_clips, seed, soundfont, tmp)
    logger.info("SynthMIC: rendering %d clips of %d tracks into %s", n_clips, len(jobs), out)
    records = _render_all(jobs, workers, n_clips)
    labels = label_release(records, seed)
    write_release(
        tmp,
        records,
        labels,
        seed=seed,
        soundfont_name=soundfont.name,
        soundfont_sha256=params["soundfont_sha256"],
    )
    seconds = round(time.perf_counter() - started, 2)
    summary = summarize(
        out, records, labels, n_tracks=len(jobs), seed=seed, soundfont=soundfont, seconds=seconds
    )
    write_manifest(tmp, params, summary)
    return summary


def synthesize(
    out: Path,
    n_clips: int = DEFAULT_CLIPS,
    seed: int = 0,
    soundfont: Path | None = None,
    workers: int | None = None,
) -> SynthSummary:
    """Render SynthMIC into `out` (OpenMIC-2018 layout); see `east_ray.synthmic`.

    Builds in ``<out>.tmp-<pid>`` and renames it to `out` when complete. An existing non-empty
    `out` is accepted only if it is a complete SynthMIC with the same parameters (then nothing
    is rendered and the stored summary returns with ``reused=True``); anything else raises
    `OutputExistsError`. `workers` processes render tracks in parallel (default: all CPUs);
    `soundfont` defaults to pretty_midi's ``TimGM6mb.sf2``.
    """
    started = time.perf_counter()
    out = Path(out)
    n_workers = _check_arguments(n_clips, seed, workers)
    sf_path = _soundfont_file(soundfont)
    params = parameters(n_clips, seed, sf_path)
    summary = reusable(out, params, sf_path)
    if summary is not None:
        logger.info("SynthMIC %s is already complete with these parameters", out)
        return summary
    tmp = out.parent / f"{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir(parents=True)
        summary = _render_into(
            tmp, out, params, soundfont=sf_path, workers=n_workers, started=started
        )
        if out.exists():
            out.rmdir()  # empty (checked above); a racing writer makes this fail loudly
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary
