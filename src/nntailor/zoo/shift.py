"""The Shift operation and a small ShiftNet (Wu et al., CVPR 2018, "Shift: A Zero FLOP, Zero Parameter
Alternative to Spatial Convolutions").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nntailor.zoo._common import check_num_classes


class Shift(nn.Module):
    """Shift channel groups spatially: zero FLOPs, zero parameters.

    The ``channels`` inputs are split, in order, into ``kernel_size**2`` groups of
    ``channels // kernel_size**2`` channels, one per offset ``(dy, dx)`` in
    ``range(-r, r + 1) x range(-r, r + 1)`` (``r = kernel_size // 2``, row-major, so for 3x3 the fifth
    group is the unshifted centre). The ``channels % kernel_size**2`` leftover channels join the centre
    group. Group ``(dy, dx)`` moves its content by ``dy`` rows down and ``dx`` columns right:
    ``out[:, c, y, x] = in[:, c, y - dy, x - dx]``, zero where that falls outside the image.

    It is built from channel slices, ``F.pad`` with a positive/negative pair per axis (pad one side,
    crop the other) and one ``torch.cat``: no parameters and no multiplications, and the channel split is
    fixed at construction so ``torch.fx`` could trace it as plain slice/pad/cat nodes; ``op_kind`` makes
    nntailor's capture keep it as one zero-FLOP "shift" op instead, as the paper prices it.
    """

    op_kind = "shift"  # priced by nntailor.graph as one op: zero MACs, zero parameters

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        if channels <= 0:
            raise ValueError(f"Shift needs channels > 0, got {channels}")
        if kernel_size <= 0 or kernel_size % 2 == 0:
            raise ValueError(f"Shift needs an odd positive kernel_size, got {kernel_size}")
        self.channels = channels
        self.kernel_size = kernel_size
        r = kernel_size // 2
        offsets = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
        group = channels // len(offsets)
        sizes = [group] * len(offsets)
        sizes[len(offsets) // 2] += channels - group * len(offsets)  # leftovers stay in place
        self.shifts: list[tuple[int, int, int, int]] = []  # (start, stop, dy, dx), empty groups dropped
        start = 0
        for (dy, dx), size in zip(offsets, sizes, strict=True):
            if size:
                self.shifts.append((start, start + size, dy, dx))
            start += size

    def forward(self, x: Tensor) -> Tensor:
        parts: list[Tensor] = []
        for start, stop, dy, dx in self.shifts:
            part = x[:, start:stop]
            if dy or dx:
                part = F.pad(part, (dx, -dx, dy, -dy))  # pad one side, crop the other: a zero-fill shift
            parts.append(part)
        return torch.cat(parts, 1)

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}"


class ShiftBlock(nn.Module):
    """CSC residual block: 1x1 conv + BN + ReLU, Shift, 1x1 conv (carries the stride) + BN, add, ReLU.

    The hidden width is ``out_channels * expansion``. When the stride or width changes, the shortcut is a
    1x1 strided conv + BN (as ShiftResNet does); otherwise it is the identity.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, expansion: int = 3,
                 kernel_size: int = 3) -> None:
        super().__init__()
        hidden = out_channels * expansion
        self.conv1 = nn.Conv2d(in_channels, hidden, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.relu1 = nn.ReLU(inplace=True)
        self.shift = Shift(hidden, kernel_size)
        self.conv2 = nn.Conv2d(hidden, out_channels, kernel_size=1, stride=stride, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.shift(self.relu1(self.bn1(self.conv1(x))))
        out = self.bn2(self.conv2(out))
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.relu2(out + identity)


class ShiftNet(nn.Module):
    """A small CIFAR-size ShiftNet (input 1x3x32x32), laid out like ShiftResNet-20:

    * ``conv1``/``bn1``/``relu``: 3x3 conv 3->16, BN, ReLU at 32x32 (the stem stays a real conv, as in the
      paper's ShiftResNets);
    * ``layer1``: 3 ShiftBlocks, 16 channels, 32x32 (hidden 48);
    * ``layer2``: 3 ShiftBlocks, 32 channels, the first with stride 2 -> 16x16 (hidden 96);
    * ``layer3``: 3 ShiftBlocks, 64 channels, the first with stride 2 -> 8x8 (hidden 192);
    * global average pool, ``fc`` 64 -> ``num_classes`` (10).

    Every ShiftBlock uses expansion 3 and a 3x3 Shift. Params 95,642; MACs 16,433,792 (checked by the
    tests): apart from the stem, every multiply-accumulate is in a 1x1 conv or the fc.
    """

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (16, 32, 64),
                 blocks_per_stage: int = 3, expansion: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        in_channels = widths[0]
        stages: list[nn.Sequential] = []
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            blocks = [ShiftBlock(in_channels, width, stride, expansion)]
            blocks += [ShiftBlock(width, width, 1, expansion) for _ in range(blocks_per_stage - 1)]
            stages.append(nn.Sequential(*blocks))
            in_channels = width
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def shiftnet(num_classes: int = 10) -> ShiftNet:
    return ShiftNet(check_num_classes(num_classes))
