"""Readers for the dataset file formats users point us at. Bytes in, arrays out; never unpickles.

- IDX (LeCun's MNIST files): big-endian magic 0x0000 0803 (images, 3 dims) or 0x0000 0801 (labels),
  then one uint32 per dimension, then uint8 data. Optionally gzipped.
- CIFAR-10 binary (``data_batch_N.bin``, ``test_batch.bin``): records of 1 label byte + 3072 pixel bytes
  (1024 red, 1024 green, 1024 blue, row-major 32x32). The pickled "python version" is refused.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from nntailor.errors import UserError

CIFAR_RECORD = 1 + 3 * 32 * 32


def _read(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def read_idx(path: str | Path) -> np.ndarray:
    path = Path(path)
    data = _read(path)
    if len(data) < 8 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise UserError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
    ndim = data[3]
    if ndim not in (1, 3):
        raise UserError(f"{path}: IDX with {ndim} dimensions; expected 1 (labels) or 3 (images)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{path}: IDX header is truncated")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims))
    if len(data) - header != expected:
        raise UserError(f"{path}: IDX header says {dims} = {expected} bytes, file has {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_cifar10_bin(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 N x 3 x 32 x 32, labels int64 N)."""
    path = Path(path)
    data = _read(path)
    if data[:1] == b"\x80":
        raise UserError(f"{path}: this is the pickled CIFAR-10 'python version'; use the binary version (*.bin)")
    if not data or len(data) % CIFAR_RECORD:
        raise UserError(f"{path}: {len(data)} bytes is not a whole number of {CIFAR_RECORD}-byte CIFAR-10 records")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise UserError(f"{path}: label {labels.max()} outside 0..9: not a CIFAR-10 binary batch")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """The inverse of read_idx (for tests and for users exporting data)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    Path(path).write_bytes(header + array.tobytes())


def write_cifar10_bin(path: str | Path, images: np.ndarray, labels: np.ndarray) -> None:
    records = np.concatenate(
        [np.asarray(labels, dtype=np.uint8)[:, None], np.asarray(images, dtype=np.uint8).reshape(len(labels), -1)],
        axis=1,
    )
    Path(path).write_bytes(records.tobytes())
