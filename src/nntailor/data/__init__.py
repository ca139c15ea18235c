"""Dataset loaders: bundled (digits, MNIST 5k sample) and files the user points at (MNIST IDX, CIFAR-10 binary)."""

from nntailor.data.datasets import Datasets, cifar10, digits, load_dataset, mnist_idx, mnist_sample
from nntailor.data.formats import read_cifar10_bin, read_idx, write_cifar10_bin, write_idx

__all__ = [
    "Datasets", "cifar10", "digits", "load_dataset", "mnist_idx", "mnist_sample", "read_cifar10_bin", "read_idx",
    "write_cifar10_bin", "write_idx",
]
