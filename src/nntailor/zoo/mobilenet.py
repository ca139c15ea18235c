"""MobileNet v1 (Howard et al. 2017) and MobileNet v2 (Sandler et al. 2018, as torchvision builds it)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from nntailor.zoo._common import check_num_classes, check_resolution, check_width


class ConvBNAct(nn.Sequential):
    """Conv (no bias, symmetric padding) + BN + activation, like torchvision's Conv2dNormActivation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1, activation: type[nn.Module] = nn.ReLU) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, groups=groups,
                      bias=False),
            nn.BatchNorm2d(out_channels),
            activation(inplace=True),
        )


# ------------------------------------------------------------------------------------------ MobileNet v1

# (output channels, depthwise stride) of the 13 depthwise-separable layers of Table 1 of the paper. The
# paper lists the 13th depthwise conv as "s2" but its input and output are both 7x7: every implementation
# (and the paper's own MAC total) uses stride 1 there.
_V1_LAYERS: list[tuple[int, int]] = [
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
]


class DepthwiseSeparable(nn.Sequential):
    """3x3 depthwise conv + BN + ReLU, then 1x1 pointwise conv + BN + ReLU (Figure 3 of the paper)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__(OrderedDict(
            dw=ConvBNAct(in_channels, in_channels, 3, stride, groups=in_channels),
            pw=ConvBNAct(in_channels, out_channels, 1),
        ))


class MobileNetV1(nn.Module):
    """MobileNet v1 from Table 1 of Howard et al. 2017: BN + ReLU after every conv, no conv bias.

    ``width`` is the width multiplier alpha: every layer gets ``max(8, int(channels * width))`` channels
    (the TF-Slim rule, ``min_depth=8``). The resolution multiplier only changes the input size: the
    global pooling is adaptive, so the same module runs at 224, 192, 160, 128, ...

    At width 1.0 and 224x224 (checked by the tests):

    * params 4,231,976 = conv weights 3,185,088 + BN gamma/beta 21,888 (2 x 10,944 channels)
      + FC 1,024,000 weights + 1,000 biases. (Keras reports 4,253,864 "total" because it also counts
      the 21,888 BN running means/variances, which are buffers here.)
    * MACs 568,740,352 = the 27 conv layers of Table 1, 567,716,352 (conv1 3x3 10,838,016; depthwise
      17,385,984; pointwise 539,492,352), + FC 1,024,000. This is the paper's "569 M" (Tables 4 and 8); its
      Table 2 shares check out against it: 1x1 94.86%, depthwise 3.06%, FC 0.18%.
    """

    def __init__(self, num_classes: int = 1000, width: float = 1.0, resolution: int = 224) -> None:
        super().__init__()
        self.resolution = resolution  # default input size (H = W), see nntailor.zoo.input_shape

        def ch(c: int) -> int:
            return max(8, int(c * width))

        in_channels = ch(32)
        layers: list[nn.Module] = [ConvBNAct(3, in_channels, 3, stride=2)]
        for out, stride in _V1_LAYERS:
            layers.append(DepthwiseSeparable(in_channels, ch(out), stride))
            in_channels = ch(out)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Linear(in_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


# ------------------------------------------------------------------------------------------ MobileNet v2


def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:  # do not round down by more than 10%
        new_v += divisor
    return new_v


class InvertedResidual(nn.Module):
    """Expand 1x1 (skipped when t=1) -> depthwise 3x3 -> linear 1x1 projection; residual when shapes match."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(inp, hidden, 1, activation=nn.ReLU6))
        layers += [
            ConvBNAct(hidden, hidden, 3, stride, groups=hidden, activation=nn.ReLU6),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:  # fixed at construction: fx traces one branch
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNet v2 1.0 as torchvision builds it: ReLU6, last channel 1280, Dropout(0.2) + Linear."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        settings = [  # t, c, n, s
            [1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2],
            [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1],
        ]
        input_channel, last_channel = 32, 1280
        features: list[nn.Module] = [ConvBNAct(3, input_channel, 3, stride=2, activation=nn.ReLU6)]
        for t, c, n, s in settings:
            for i in range(n):
                features.append(InvertedResidual(input_channel, c, s if i == 0 else 1, t))
                input_channel = c
        features.append(ConvBNAct(input_channel, last_channel, 1, activation=nn.ReLU6))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(last_channel, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


# ---------------------------------------------------------------------------------------- factories


def mobilenet_v1(num_classes: int = 1000, width: float = 1.0, resolution: int = 224) -> MobileNetV1:
    return MobileNetV1(check_num_classes(num_classes), check_width(width),
                       check_resolution(resolution))


def mobilenet_v2(num_classes: int = 1000) -> MobileNetV2:
    return MobileNetV2(check_num_classes(num_classes))
