"""LeNet-300-100 and the Caffe LeNet-5 (as used by the Deep Compression / pruning literature)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nntailor.zoo._common import check_num_classes


class LeNet300(nn.Module):
    """LeNet-300-100: an MLP 784-300-100-10 with ReLU. Input 1x1x28x28."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.classifier = nn.Sequential(
            nn.Linear(28 * 28, 300),
            nn.ReLU(inplace=True),
            nn.Linear(300, 100),
            nn.ReLU(inplace=True),
            nn.Linear(100, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(x, 1))


class LeNet5(nn.Module):
    """Caffe's LeNet-5: conv20 5x5, maxpool 2, conv50 5x5, maxpool 2, fc500, ReLU, fc10.

    As in Caffe's ``lenet_train_test.prototxt`` there is no activation after the convolutions.
    Input 1x1x28x28.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 20, kernel_size=5),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(20, 50, kernel_size=5),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(50 * 4 * 4, 500),
            nn.ReLU(inplace=True),
            nn.Linear(500, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        return self.classifier(torch.flatten(x, 1))


def lenet300(num_classes: int = 10) -> LeNet300:
    return LeNet300(check_num_classes(num_classes))


def lenet5(num_classes: int = 10) -> LeNet5:
    return LeNet5(check_num_classes(num_classes))
