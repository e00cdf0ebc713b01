"""What one trial reads: spectrogram stores, labels, subset rows, teacher arrays; batches;
its test clips' scores as `ScoredClips`.

Memory model. The spectrograms are the only large array (OpenMIC: 20,000 × 128 × 1000
float16 = 5.1 GB). Under Ray, the study reads the Parquet shards once with Ray Data and
materialises them in the object store; every trial on a node then maps the same blocks
zero-copy from shared memory (`BlockStore`), so N concurrent trials cost one copy per
node plus their current batch. The trial itself runs no Ray Data tasks, which is what
hangs when trials have reserved every CPU. Labels, subset rows and teacher arrays are
small and reach trials the same way (`tune.with_parameters`). Without Ray (CLI, tests,
benchmarks) `ArrayStore` holds the spectrograms in process memory.

Batches: the training rows are permuted by a generator seeded with `(seed, epoch)`, so
the order is reproducible and an interrupted run resumes on the same batches; a batch
copies only its own rows out of the store, into an array from the caller's `alloc` (the
trainer on a GPU gives page-locked memory, so the copy to the device needs no second one).
For mixup the same generator then draws each example's partner uniformly, with
replacement, from the training rows (the authors' dataset-level mixing: any training clip,
the example itself included), so a batch also carries its partners' rows, one gathered
row per example. With mel-band jitter (`recipe.mel_jitter`) the same generator then draws
each example's and each partner's band edges (east_ray.data.meljitter), after the order
and the partners, which therefore stay the same; a training batch then also carries its
clips' STFT magnitudes (`TrialData.spectra`, the training clips only), from which the
trainer computes their log-mels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from east_ray.analysis.stats import ScoredClips
from east_ray.catalog import regularizer
from east_ray.catalog.teachers import get_teacher, member_weights, members
from east_ray.config import Cell, TeacherLRRecipe
from east_ray.data.meljitter import JitterRanges, draw_jitter
from east_ray.data.parquet import LabelTable, column_chunks, column_numpy
from east_ray.data.prepared import PreparedData
from east_ray.data.spectra import read_spectra
from east_ray.errors import BadValueError
from east_ray.teachers.stored import load_embeddings
from east_ray.train.teacher_lr import load_teacher_logits

# An empty array of a shape and dtype: where a batch's spectrograms are gathered.
Alloc = Callable[[tuple[int, ...], np.dtype], np.ndarray]


class SpectrogramStore(Protocol):
    """Row-addressable log-mel spectrograms `(N, F, T)` float16."""

    @property
    def clip_ids(self) -> list[str]: ...

    @property
    def row_shape(self) -> tuple[tuple[int, ...], np.dtype]:
        """One spectrogram's shape `(F, T)` and dtype."""
        ...

    def gather(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Spectrograms `rows` `(len(rows), F, T)`, written into `out` when given."""
        ...


@dataclass(frozen=True)
class ArrayStore:
    """Spectrograms in one array (process memory, or a zero-copy object-store view)."""

    clip_ids: list[str]
    values: np.ndarray

    @property
    def row_shape(self) -> tuple[tuple[int, ...], np.dtype]:
        return self.values.shape[1:], self.values.dtype

    def gather(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        return np.take(self.values, rows, axis=0, out=out)


class BlockStore:
    """Spectrograms spread over Arrow blocks (e.g. Ray object-store blocks), not copied:
    each chunk of each block is viewed in place (joining a block's chunks would copy it).
    `column` names the tensor column: the log-mels, or the spectra's magnitudes."""

    def __init__(self, blocks: Sequence[pa.Table], column: str = "logmel") -> None:
        self._arrays = [a for b in blocks for a in column_chunks(b[column])]
        self._clip_ids = [c for b in blocks for c in b["clip_id"].to_pylist()]
        sizes = [len(a) for a in self._arrays]
        self._block = np.repeat(np.arange(len(sizes)), sizes)
        self._offset = np.concatenate([np.arange(n) for n in sizes]) if sizes else np.zeros(0, int)

    @property
    def clip_ids(self) -> list[str]:
        return self._clip_ids

    @property
    def row_shape(self) -> tuple[tuple[int, ...], np.dtype]:
        first = self._arrays[0]
        return first.shape[1:], first.dtype

    def gather(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            shape, dtype = self.row_shape
            out = np.empty((len(rows), *shape), dtype=dtype)
        for i, r in enumerate(rows):
            out[i] = self._arrays[self._block[r]][self._offset[r]]
        return out


def read_spectrograms(data_dir: Path) -> ArrayStore:
    """All spectrograms of a prepared dataset into process memory (no Ray)."""
    table = pq.read_table(Path(data_dir) / "clips", columns=["clip_id", "logmel"])
    return ArrayStore(table["clip_id"].to_pylist(), column_numpy(table["logmel"]))


@dataclass(frozen=True)
class TrialData:
    """Arrays of one trial, all in the row order of `labels` (the clip table)."""

    labels: LabelTable
    store: SpectrogramStore
    store_rows: np.ndarray  # label row → store row
    train_rows: np.ndarray  # after the data-fraction subset
    valid_rows: np.ndarray
    test_rows: np.ndarray
    # one (N, T', D) per teacher of the cell (a set has several); () when none is read
    teacher_seqs: tuple[np.ndarray, ...]
    teacher_logits: np.ndarray | None  # (N, C)
    # each teacher's frame hop (None: clip-level) and seconds to the centre of its frame 0
    teacher_hops: tuple[float | None, ...] = ()
    teacher_first_centres: tuple[float, ...] = ()
    teacher_weights: tuple[float, ...] = ()  # each one's share of the regularizer
    # the training clips' STFT magnitudes `(n_fft // 2, frames)`, for mel-band jitter
    spectra: SpectrogramStore | None = None
    spectra_rows: np.ndarray | None = None  # label row → spectra row, -1 where none


def build_trial_data(
    cell: Cell,
    labels: LabelTable,
    store: SpectrogramStore,
    teacher_seqs: Sequence[np.ndarray] = (),
    teacher_logits: np.ndarray | None = None,
    *,
    spectra: SpectrogramStore | None = None,
) -> TrialData:
    """Assemble a trial's arrays (all in `labels` row order) and its training subset;
    `spectra` (mel-band jitter only) holds the training clips' STFT magnitudes."""
    teachers = members(cell.teacher) if cell.teacher else ()
    read = teachers if teacher_seqs else ()  # the teachers whose sequences the trial holds
    if teacher_seqs and len(teacher_seqs) != len(teachers):
        raise ValueError(
            f"teacher_seqs: got {len(teacher_seqs)} arrays for the teachers {list(teachers)}"
        )
    position = {c: i for i, c in enumerate(store.clip_ids)}
    missing = [c for c in labels.clip_ids if c not in position]
    if missing:
        raise BadValueError(
            f"the prepared spectrograms miss {len(missing)} labelled clips, e.g. {missing[:3]}; "
            "prepare the dataset again"
        )
    return TrialData(
        labels=labels,
        store=store,
        store_rows=np.array([position[c] for c in labels.clip_ids], dtype=np.int64),
        train_rows=labels.training_rows(cell.fraction, cell.seed),
        valid_rows=labels.rows("valid"),
        test_rows=labels.rows("test"),
        teacher_seqs=tuple(teacher_seqs),
        teacher_logits=teacher_logits,
        teacher_hops=tuple(get_teacher(t).hop_seconds for t in read),
        teacher_first_centres=tuple(get_teacher(t).first_centre_seconds for t in read),
        teacher_weights=member_weights(cell.teacher) if cell.teacher and read else (),
        spectra=spectra,
        spectra_rows=None if spectra is None else _rows_in(spectra, labels.clip_ids),
    )


def _rows_in(store: SpectrogramStore, clip_ids: list[str]) -> np.ndarray:
    """Each of `clip_ids`' row in `store`, -1 where it has none."""
    position = {c: i for i, c in enumerate(store.clip_ids)}
    return np.array([position.get(c, -1) for c in clip_ids], dtype=np.int64)


def needs_teacher_seq(cell: Cell) -> bool:
    return regularizer(cell.regularizer).reads_sequence


def needs_teacher_logits(cell: Cell) -> bool:
    return regularizer(cell.regularizer).reads_logits


@dataclass(frozen=True)
class TeacherArrays:
    """The teacher arrays some cells read, in the label table's row order: embeddings
    `(N, T, D)` by teacher and Teacher_LR logits `(N, C)` by (teacher, fraction, seed),
    each of a set's members on its own."""

    seqs: dict[str, np.ndarray]
    logits: dict[tuple[str, float, int], np.ndarray]

    def for_cell(self, cell: Cell) -> tuple[tuple[np.ndarray, ...], np.ndarray | None]:
        """`cell`'s teacher embeddings, one per member of its teacher (set), and its
        logits: a set's are those of its members' mean probability (() and None where
        its regularizer reads none)."""
        teachers = members(cell.teacher) if cell.teacher else ()
        seqs = tuple(self.seqs[t] for t in teachers) if needs_teacher_seq(cell) else ()
        logits = None
        if needs_teacher_logits(cell):
            assert cell.teacher is not None
            logits = mean_probability_logits(
                [self.logits[(t, cell.fraction, cell.seed)] for t in teachers],
                member_weights(cell.teacher),
            )
        return seqs, logits


def mean_probability_logits(
    logits: Sequence[np.ndarray], weights: Sequence[float] | None = None
) -> np.ndarray:
    """The logits of the (`weights`-weighted) mean of the sigmoid probabilities of
    `logits` (one array as it is)."""
    if len(logits) == 1:
        return logits[0]
    probabilities = [1.0 / (1.0 + np.exp(-z.astype(np.float64))) for z in logits]
    p = np.average(probabilities, axis=0, weights=weights)
    p = np.clip(p, 1e-7, 1 - 1e-7)
    out: np.ndarray = np.log(p / (1 - p)).astype(logits[0].dtype)
    return out


def load_teacher_arrays(
    data: PreparedData,
    cells: Sequence[Cell],
    *,
    teacher_lr: TeacherLRRecipe | None = None,
    fits: Path | None = None,
) -> TeacherArrays:
    """Every teacher array `cells` read, each once: a KD cell's logits are those of the
    Teacher_LR fit made with `teacher_lr` into `fits` (`fit_teacher_lr`'s)."""
    clip_ids = data.labels.clip_ids
    seqs = {
        t: load_embeddings(data.root, t, clip_ids)
        for t in sorted(
            {t for c in cells if c.teacher and needs_teacher_seq(c) for t in members(c.teacher)}
        )
    }
    logits = {
        (t, c.fraction, c.seed): load_teacher_logits(
            data.root, t, c.fraction, c.seed, clip_ids, recipe=teacher_lr, fits=fits
        )
        for c in cells
        if c.teacher and needs_teacher_logits(c)
        for t in members(c.teacher)
    }
    return TeacherArrays(seqs, logits)


def load_trial_data(
    data: PreparedData | Path,
    cell: Cell,
    *,
    spectra: bool = False,
    teacher_lr: TeacherLRRecipe | None = None,
    fits: Path | None = None,
) -> TrialData:
    """Everything `cell` trains and evaluates on, read from disk (no Ray); with `spectra`
    (mel-band jitter) the training clips' STFT magnitudes too; its teacher arrays as
    `load_teacher_arrays` reads them."""
    data = PreparedData.of(data)
    teachers = load_teacher_arrays(data, [cell], teacher_lr=teacher_lr, fits=fits)
    magnitudes = ArrayStore(*read_spectra(data.root)) if spectra else None
    store = read_spectrograms(data.root)
    return build_trial_data(cell, data.labels, store, *teachers.for_cell(cell), spectra=magnitudes)


@dataclass(frozen=True)
class Batch:
    """numpy arrays of one batch; `rows` are label-table rows."""

    rows: np.ndarray
    logmel: np.ndarray  # (B, F, T) float16
    labels: np.ndarray  # (B, C)
    mask: np.ndarray  # (B, C) bool
    teacher_seqs: tuple[np.ndarray, ...]  # one (B, T', D) per teacher
    teacher_logits: np.ndarray | None
    partner: Batch | None = None  # row i's mixup partner is row i of `partner`
    # with mel-band jitter: STFT magnitudes (B, n_fft // 2, frames) float16 and each row's
    # jitter (B, 2) int64 (Hz added to f_min, taken from f_max)
    magnitude: np.ndarray | None = None
    jitter: np.ndarray | None = None


def make_batch(
    data: TrialData,
    rows: np.ndarray,
    partner_rows: np.ndarray | None = None,
    alloc: Alloc = np.empty,
    *,
    jitter: np.ndarray | None = None,
    partner_jitter: np.ndarray | None = None,
) -> Batch:
    """The batch of label-table `rows`, with the batch of `partner_rows` as its partners;
    the spectrograms are gathered into `alloc((len(rows), F, T), dtype)`. With `jitter`
    `(len(rows), 2)` (and `partner_jitter` for the partners) the rows' STFT magnitudes
    are gathered too."""
    shape, dtype = data.store.row_shape
    logmel = data.store.gather(data.store_rows[rows], alloc((len(rows), *shape), dtype))
    partner = None
    if partner_rows is not None:
        partner = make_batch(data, partner_rows, alloc=alloc, jitter=partner_jitter)
    return Batch(
        rows=rows,
        logmel=logmel,
        labels=data.labels.labels[rows],
        mask=data.labels.mask[rows],
        teacher_seqs=tuple(seq[rows] for seq in data.teacher_seqs),
        teacher_logits=None if data.teacher_logits is None else data.teacher_logits[rows],
        partner=partner,
        magnitude=None if jitter is None else _magnitudes(data, rows, alloc),
        jitter=jitter,
    )


def _magnitudes(data: TrialData, rows: np.ndarray, alloc: Alloc) -> np.ndarray:
    """The STFT magnitudes of label-table `rows` `(len(rows), n_fft // 2, frames)`."""
    if data.spectra is None or data.spectra_rows is None:
        raise ValueError(
            "mel-band jitter needs the training clips' STFT magnitudes: "
            "build_trial_data(..., spectra=...) or load_trial_data(..., spectra=True)"
        )
    at = data.spectra_rows[rows]
    if (at < 0).any():
        missing = [data.labels.clip_ids[r] for r in rows[at < 0][:3]]
        raise BadValueError(
            f"no stored STFT magnitudes for clips {missing} (only training clips have them); "
            "prepare the spectra again: python -m east_ray.data spectra --data DIR"
        )
    shape, dtype = data.spectra.row_shape
    return data.spectra.gather(at, alloc((len(rows), *shape), dtype))


def batches_per_epoch(n_train: int, batch_size: int, drop_last: bool) -> int:
    """How many training batches an epoch of `n_train` clips has (`epoch_batches`)."""
    return n_train // batch_size if drop_last else -(-n_train // batch_size)


def epoch_batches(
    data: TrialData,
    batch_size: int,
    seed: int,
    epoch: int,
    start: int = 0,
    *,
    partners: bool = False,
    drop_last: bool = False,
    alloc: Alloc = np.empty,
    mel_jitter: JitterRanges | None = None,
) -> Iterator[Batch]:
    """Shuffled training batches of `epoch` (reproducible from seed and epoch), from batch
    index `start` on; the last one holds the remaining clips (as the authors' loader does),
    or is left out with `drop_last`. With `partners`, each batch carries one mixup partner
    per example, drawn uniformly from the training rows after the order (which stays the
    same with or without them, and so do the first batches' partners with or without
    `drop_last`). With `mel_jitter`, each example's and then each partner's band edges
    are drawn last, and the batches carry the clips' STFT magnitudes."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(data.train_rows)
    n_batches = batches_per_epoch(len(order), batch_size, drop_last)
    partner_rows = rng.choice(data.train_rows, (n_batches, batch_size)) if partners else None
    # drawn last: the order and the partners are those of a run without jitter
    slots = n_batches * batch_size
    jitter = None if mel_jitter is None else draw_jitter(rng, slots, mel_jitter)
    partner_jitter = None
    if mel_jitter is not None and partners:
        partner_jitter = draw_jitter(rng, slots, mel_jitter)
    for b in range(start, n_batches):
        rows = order[b * batch_size : (b + 1) * batch_size]
        partner = None if partner_rows is None else partner_rows[b, : len(rows)]
        at = slice(b * batch_size, b * batch_size + len(rows))
        yield make_batch(
            data,
            rows,
            partner,
            alloc,
            jitter=None if jitter is None else jitter[at],
            partner_jitter=None if partner_jitter is None else partner_jitter[at],
        )


def eval_batches(
    data: TrialData, rows: np.ndarray, batch_size: int, alloc: Alloc = np.empty
) -> Iterator[Batch]:
    """`rows` in order, in batches (the last one may be smaller)."""
    for start in range(0, len(rows), batch_size):
        yield make_batch(data, rows[start : start + batch_size], alloc=alloc)


def scored_clips(data: TrialData, scores: np.ndarray, threshold: float) -> ScoredClips:
    """The test clips' scores with their ids, class names, labels and label mask."""
    rows, table = data.test_rows, data.labels
    return ScoredClips(
        clip_ids=np.asarray(table.clip_ids, dtype=str)[rows],
        classes=table.classes,
        scores=scores,
        labels=table.labels[rows],
        mask=table.mask[rows],
        threshold=threshold,
    )
