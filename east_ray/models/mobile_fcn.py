"""Mobile FCN, the MagnaTagATune student: the FCN of Choi et al. (2016) with layers 3-8
depthwise-separable, as the EAsT authors configured it.

Input `(B, F, T)` log-mel with F = 96 (or 128). Stage maps: after layer 4
`(B, 128, 4, T/48)`, after layer 6 `(B, 256, 1, T/96)`, after layer 8 `(B, 256, 1, T/96)`;
dropout 0.5 after each stage; global mean; linear head. 314,098 parameters at 96 mels,
50 tags. PyTorch's default initialisation.
"""

import torch
from torch import Tensor, nn

from east_ray.models.common import Student, StudentOutput


def _conv(c_in: int, c_out: int, pool: tuple[int, int]) -> nn.Sequential:
    """3×3 conv → BN → ReLU → max-pool."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
        nn.MaxPool2d(pool),
    )


def _dw_separable(c_in: int, c_out: int, pool: tuple[int, int]) -> nn.Sequential:
    """Depthwise 3×3 → BN → ReLU → pointwise 1×1 → BN → ReLU → max-pool."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False),
        nn.BatchNorm2d(c_in),
        nn.ReLU(),
        nn.Conv2d(c_in, c_out, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
        nn.MaxPool2d(pool),
    )


class MobileFCN(Student):
    """Mobile FCN; `forward` returns logits `(B, K)` and three stage maps."""

    def __init__(self, num_classes: int, n_mels: int = 96, dropout: float = 0.5) -> None:
        super().__init__()
        # The fourth frequency pool brings 96 or 128 mel bands to 4 rows.
        freq_pool_4 = {96: 3, 128: 4}
        if n_mels not in freq_pool_4:
            raise ValueError(f"n_mels: got {n_mels}, expected one of 96, 128")
        self.stages = nn.ModuleList(
            [
                nn.Sequential(
                    _conv(1, 64, (2, 4)),
                    _conv(64, 128, (2, 3)),
                    _dw_separable(128, 128, (2, 2)),
                    _dw_separable(128, 128, (freq_pool_4[n_mels], 2)),
                ),
                nn.Sequential(_dw_separable(128, 128, (4, 2)), _dw_separable(128, 256, (1, 1))),
                nn.Sequential(_dw_separable(256, 256, (1, 1)), _dw_separable(256, 256, (1, 1))),
            ]
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(256, num_classes)
        self.time_strides = (4 * 3 * 2 * 2, 4 * 3 * 2 * 2 * 2, 4 * 3 * 2 * 2 * 2)

    def forward(self, x: Tensor) -> StudentOutput:
        h = x.unsqueeze(1)
        maps = []
        for stage in self.stages:
            h = stage(h)
            maps.append(h)
            h = self.dropout(h)
        logits = self.head(torch.mean(h, dim=(2, 3)))
        return StudentOutput(logits, maps)
