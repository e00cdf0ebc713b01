"""CP-ResNet (Koutini et al. 2019), the OpenMIC student, as the EAsT authors configured it.

Input `(B, F, T)` log-mel. A 5×5 stride-2 stem, then three stages of four residual blocks
(`c`, `2c`, `4c` channels) with 2×2 max-pools after blocks 1, 2 and 4 of stage 1 only;
global mean; linear head. ρ sets the receptive field by switching kernels between 3×3 and
1×1 (ρ = 7: 5,534,612 parameters at c = 128, 20 classes; every stage map 8×62 for a
128×1000 input).

Initialisation is Fixup-style: each block's second conv starts at zero, the first is He
init scaled by `n_blocks ** -0.5`. `n_blocks` is this model's own block count; the
original read a process-wide counter, so the second model built in a process (Ray
reuses actors) got different scaling.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from east_ray.models.common import Student, StudentOutput

# A kernel is 3 when rho - 7 >= threshold, else 1 (-inf: always 3, inf: always 1).
# Rows: stage 1, 2, 3; each (conv1 thresholds of blocks 1-4, conv2 thresholds of blocks 1-4).
_INF = math.inf
_KERNEL_THRESHOLDS: tuple[tuple[tuple[float, ...], tuple[float, ...]], ...] = (
    ((-_INF, -6, -4, -2), (_INF, -5, -3, -1)),
    ((0, 2, 4, 6), (_INF, -5, -3, -1)),
    ((8, 10, 12, 14), (9, 11, 13, 15)),
)
_STAGE1_POOL_AFTER = (1, 2, 4)


def _kernels(rho: int, thresholds: tuple[float, ...]) -> list[int]:
    return [3 if rho - 7 >= t else 1 for t in thresholds]


class _Block(nn.Module):
    """conv-BN-ReLU-conv-BN plus (projected) shortcut, then ReLU."""

    def __init__(self, c_in: int, c_out: int, k1: int, k2: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, k1, padding=k1 // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, k2, padding=k2 // 2, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class CPResNet(Student):
    """CP-ResNet; `forward` returns logits `(B, K)` and three stage maps `(B, C, F/16, T/16)`."""

    def __init__(self, num_classes: int, rho: int = 7, base_channels: int = 128) -> None:
        super().__init__()
        if base_channels < 1:
            raise ValueError(f"base_channels: got {base_channels}, expected an integer >= 1")
        c = base_channels
        self.stem = nn.Sequential(
            nn.Conv2d(1, c, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(c), nn.ReLU()
        )
        widths = ((c, c), (c, 2 * c), (2 * c, 4 * c))
        stages = []
        for s, ((c_in, c_out), (t1, t2)) in enumerate(zip(widths, _KERNEL_THRESHOLDS, strict=True)):
            layers: list[nn.Module] = []
            for b, (k1, k2) in enumerate(zip(_kernels(rho, t1), _kernels(rho, t2), strict=True)):
                layers.append(_Block(c_in if b == 0 else c_out, c_out, k1, k2))
                if s == 0 and b + 1 in _STAGE1_POOL_AFTER:
                    layers.append(nn.MaxPool2d(2))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.head = nn.Linear(4 * c, num_classes)
        self.time_strides = (2 * 2 ** len(_STAGE1_POOL_AFTER),) * 3
        self._init_weights()

    def _init_weights(self) -> None:
        blocks = [m for m in self.modules() if isinstance(m, _Block)]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.head.bias)
        for block in blocks:
            conv1 = block.conv1
            fan_out = conv1.kernel_size[0] * conv1.kernel_size[1] * conv1.out_channels
            std = len(blocks) ** -0.5 * math.sqrt(2.0 / fan_out)
            nn.init.normal_(conv1.weight, 0.0, std)
            nn.init.zeros_(block.conv2.weight)
            if len(block.shortcut) > 0:
                proj = block.shortcut[0]
                assert isinstance(proj, nn.Conv2d)
                nn.init.normal_(proj.weight, 0.0, math.sqrt(2.0 / proj.out_channels))

    def forward(self, x: Tensor) -> StudentOutput:
        h = self.stem(x.unsqueeze(1))
        maps = []
        for stage in self.stages:
            h = stage(h)
            maps.append(h)
        logits = self.head(torch.mean(h, dim=(2, 3)))
        return StudentOutput(logits, maps)
