"""Training subsets for the limited-data axis: nested, reproducible, stratified, by group.

Each unit (a group such as an artist when there is one, else a clip) gets a priority from
a hash of `(seed, unit)` alone, so the subset does not depend on file order or sharding.
Units are taken in priority order until the subset holds `fraction` of the clips, which
makes the subsets nested: the 5% subset is a prefix of the 10% one. Stratification: for
every class that has labelled positives in the full set but none in the subset, the
highest-priority unit holding such a positive is added; that unit lies inside every
larger subset already (it precedes any other unit with that positive), so nesting holds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def _priority(seed: int, unit: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}\0{unit}".encode()).digest()[:8], "big")


def training_subset(
    clip_ids: Sequence[str],
    labels: np.ndarray,
    mask: np.ndarray,
    *,
    fraction: float,
    seed: int,
    groups: Sequence[str] | None = None,
) -> np.ndarray:
    """Boolean selection `(N,)` over the clips of the training split.

    `labels`/`mask` `(N, C)`: positives are labelled entries with label > 0.5.
    `groups`: clips sharing a group are taken or left together.
    """
    n = len(clip_ids)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction: got {fraction}, expected a number in (0, 1]")
    if labels.shape[0] != n or mask.shape != labels.shape:
        raise ValueError(
            f"labels, mask: got shapes {labels.shape}, {mask.shape}, expected ({n}, C) each"
        )
    if groups is not None and len(groups) != n:
        raise ValueError(f"groups: got {len(groups)} entries, expected {n}")
    if fraction == 1.0:
        return np.ones(n, dtype=bool)
    units = list(groups) if groups is not None else [str(c) for c in clip_ids]
    unit_names = sorted(set(units))
    index_of = {u: i for i, u in enumerate(unit_names)}
    unit_of = np.array([index_of[u] for u in units], dtype=int)
    order = sorted(
        range(len(unit_names)), key=lambda u: (_priority(seed, unit_names[u]), unit_names[u])
    )
    rank = np.empty(len(unit_names), dtype=int)
    rank[order] = np.arange(len(unit_names))
    clip_rank = rank[unit_of]
    sizes = np.bincount(clip_rank, minlength=len(unit_names))
    # Smallest prefix of units whose clips reach the target count.
    target = max(1, round(fraction * n))
    n_units = int(np.searchsorted(np.cumsum(sizes), target) + 1)
    chosen: np.ndarray = clip_rank < n_units
    positive = (labels > 0.5) & mask
    for c in np.flatnonzero(positive.any(axis=0) & ~positive[chosen].any(axis=0)):
        best = clip_rank[positive[:, c]].min()
        chosen |= clip_rank == best
    return chosen
