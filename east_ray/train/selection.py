"""Model selection and early stopping, as both training loops (the trainer and Teacher_LR)
do it, as the authors did: the epoch with the best validation mAP is the model kept;
training stops after `patience` epochs in a row without a lower validation loss (the
trainer's `recipe.early_stop` says which loss, or that none stops it)."""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass
class Selection:
    """The best epoch so far and the early-stopping count (part of a checkpoint)."""

    best_map: float = -math.inf
    best_epoch: int = 0
    best_val_loss: float = math.inf
    epochs_since_best_loss: int = 0

    def update(
        self, epoch: int, val_map: float, val_loss: float, patience: int | None
    ) -> tuple[bool, bool]:
        """Record epoch `epoch`'s validation; returns (it is the best by mAP so far, the
        loss has not improved for `patience` epochs; never with `patience` None)."""
        best = val_map > self.best_map
        if best:
            self.best_map, self.best_epoch = val_map, epoch
        if val_loss < self.best_val_loss:
            self.best_val_loss, self.epochs_since_best_loss = val_loss, 0
        else:
            self.epochs_since_best_loss += 1
        return best, patience is not None and self.epochs_since_best_loss >= patience
