"""MLPerf Tiny v1.0 reference models, rebuilt in PyTorch layer for layer from the reference .tflite files.

Batch norm is kept unfolded (Conv/Dense with bias, then BN), Keras' training-only Dropout layers are left
out, and TF 'same' padding is reproduced exactly: where TF pads asymmetrically (stride 2 on an even input
pads bottom/right only; the DS-CNN stem pads 4 rows above and 5 below) an explicit ``nn.ZeroPad2d`` comes
before a conv with ``padding=0``, so weights ported from the Keras models give the same outputs.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from nntailor.zoo._common import check_num_classes


def _conv_bn_relu(conv: nn.Conv2d, pad: nn.ZeroPad2d | None = None) -> nn.Sequential:
    """``[pad,] conv, bn, relu`` with readable names."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if pad is not None:
        layers["pad"] = pad
    layers["conv"] = conv
    layers["bn"] = nn.BatchNorm2d(conv.out_channels)
    layers["relu"] = nn.ReLU(inplace=True)
    return nn.Sequential(layers)


def _tf_same_3x3(in_channels: int, out_channels: int, stride: int, groups: int = 1) -> nn.Sequential:
    """3x3 conv + BN + ReLU with TF 'same' padding: symmetric for stride 1, bottom/right only for stride 2."""
    if stride == 1:
        return _conv_bn_relu(nn.Conv2d(in_channels, out_channels, 3, 1, 1, groups=groups))
    return _conv_bn_relu(nn.Conv2d(in_channels, out_channels, 3, stride, 0, groups=groups),
                         nn.ZeroPad2d((0, 1, 0, 1)))


class DepthwiseSeparable(nn.Sequential):
    """``dw``: 3x3 depthwise + BN + ReLU; ``pw``: 1x1 pointwise + BN + ReLU (convs with bias)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__(OrderedDict(
            dw=_tf_same_3x3(in_channels, in_channels, stride, groups=in_channels),
            pw=_conv_bn_relu(nn.Conv2d(in_channels, out_channels, 1)),
        ))


# ---------------------------------------------------------------------------------------------- DS-CNN


class DSCNN(nn.Module):
    """Keyword spotting DS-CNN (MLPerf Tiny ``kws_ref_model``). Input 1x1x49x10 (49 frames x 10 MFCC).

    Conv 64@10x4 stride 2 ('same': 4/5 rows, 1/1 columns of padding) -> 25x5x64, BN, ReLU;
    4 x depthwise-separable (64 channels); AvgPool 25x5; FC 12.
    """

    def __init__(self, num_classes: int = 12, filters: int = 64, blocks: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            _conv_bn_relu(nn.Conv2d(1, filters, (10, 4), stride=2), nn.ZeroPad2d((1, 1, 4, 5)))
        ]
        layers += [DepthwiseSeparable(filters, filters) for _ in range(blocks)]
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AvgPool2d((25, 5))
        self.classifier = nn.Linear(filters, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


# --------------------------------------------------------------------------------------------- ResNet-8


class ResNet8Block(nn.Module):
    """[3x3 conv (stride s) + BN + ReLU, 3x3 conv + BN] + shortcut, ReLU.

    With stride 2 the first conv pads bottom/right only (TF 'same') and the shortcut is a strided 1x1
    conv with bias and no BN, as in the reference Keras model; with stride 1 it is the identity.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.pad = nn.ZeroPad2d((0, 1, 0, 1)) if stride != 1 else None
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 0 if stride != 1 else 1)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride) if stride != 1 else None
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = x if self.pad is None else self.pad(x)
        out = self.relu1(self.bn1(self.conv1(out)))
        out = self.bn2(self.conv2(out))
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.relu2(out + identity)


class ResNet8(nn.Module):
    """Image classification ResNet-8 (MLPerf Tiny ``pretrainedResnet``, CIFAR-10). Input 1x3x32x32.

    Conv3x3-16 + BN + ReLU; ``stack1`` 16 (identity shortcut), ``stack2`` 32 /2, ``stack3`` 64 /2;
    AvgPool 8x8; FC 10.
    """

    def __init__(self, num_classes: int = 10, filters: tuple[int, int, int] = (16, 32, 64)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, filters[0], 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(filters[0])
        self.relu = nn.ReLU(inplace=True)
        self.stack1 = ResNet8Block(filters[0], filters[0], 1)
        self.stack2 = ResNet8Block(filters[0], filters[1], 2)
        self.stack3 = ResNet8Block(filters[1], filters[2], 2)
        self.avgpool = nn.AvgPool2d(8)
        self.fc = nn.Linear(filters[2], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.stack3(self.stack2(self.stack1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ------------------------------------------------------------------------------------ VWW MobileNet v1

# (output channels, depthwise stride) at alpha = 0.25
_VWW_LAYERS: list[tuple[int, int]] = [
    (16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2),
    (128, 1), (128, 1), (128, 1), (128, 1), (128, 1),
    (256, 2), (256, 1),
]


class VWWMobileNet(nn.Module):
    """Visual wake words MobileNet v1, alpha 0.25 (MLPerf Tiny ``vww_96``). Input 1x3x96x96, 2 classes.

    Conv3x3-8 stride 2 -> 48x48, 13 depthwise-separable pairs -> 3x3x256, AvgPool 3x3, FC 2. Every conv
    has a bias and is followed by BN + ReLU (plain ReLU, not ReLU6, as in the reference model).
    """

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        in_channels = 8
        layers: list[nn.Module] = [_tf_same_3x3(3, in_channels, 2)]
        for out, stride in _VWW_LAYERS:
            layers.append(DepthwiseSeparable(in_channels, out, stride))
            in_channels = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AvgPool2d(3)
        self.classifier = nn.Linear(in_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


# ----------------------------------------------------------------------------------- AD autoencoder


def _dense_bn_relu(in_features: int, out_features: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict(
        fc=nn.Linear(in_features, out_features),
        bn=nn.BatchNorm1d(out_features),
        relu=nn.ReLU(inplace=True),
    ))


class ADAutoencoder(nn.Module):
    """Anomaly detection autoencoder (MLPerf Tiny ``ad01``, ToyADMOS). Input 1x640 (5 frames x 128 mels).

    ``encoder``: Dense 128 x 4, bottleneck Dense 8; ``decoder``: Dense 128 x 4, Dense 640. Every hidden
    layer is Dense + BatchNorm1d + ReLU; the output layer is linear.
    """

    def __init__(self, input_dim: int = 640, hidden: int = 128, bottleneck: int = 8) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            _dense_bn_relu(input_dim, hidden),
            _dense_bn_relu(hidden, hidden),
            _dense_bn_relu(hidden, hidden),
            _dense_bn_relu(hidden, hidden),
            _dense_bn_relu(hidden, bottleneck),
        )
        self.decoder = nn.Sequential(
            _dense_bn_relu(bottleneck, hidden),
            _dense_bn_relu(hidden, hidden),
            _dense_bn_relu(hidden, hidden),
            _dense_bn_relu(hidden, hidden),
            nn.Linear(hidden, input_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


# ---------------------------------------------------------------------------------------- factories


def ds_cnn(num_classes: int = 12) -> DSCNN:
    return DSCNN(check_num_classes(num_classes))


def resnet8(num_classes: int = 10) -> ResNet8:
    return ResNet8(check_num_classes(num_classes))


def vww_mobilenet(num_classes: int = 2) -> VWWMobileNet:
    return VWWMobileNet(check_num_classes(num_classes))


def ad_autoencoder() -> ADAutoencoder:
    return ADAutoencoder()
