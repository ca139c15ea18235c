"""Readers for the dataset file formats users point us at. Bytes in, arrays out; never unpickles.

- IDX (LeCun's MNIST files): big-endian magic 0x0000 0803 (images, 3 dims) or 0x0000 0801 (labels),
  then one uint32 per dimension, then uint8 data. Optionally gzipped.
- CIFAR-10 binary (``data_batch_N.bin``, ``test_batch.bin``): records of 1 label byte + 3072 pixel bytes
  (1024 red, 1024 green, 1024 blue, row-major 32x32). The pickled "python version" is refused.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from nntailor.errors import UserError

CIFAR_RECORD = 1 + 3 * 32 * 32
# The largest IDX or CIFAR file we read: EMNIST ByClass, the biggest IDX set in use, holds 547 MB of
# training images; a header promising more is a corrupt file (or a decompression bomb).
MAX_DATA_BYTES = 1 << 30
# CIFAR-10 has no header to check first: a file may hold at most the whole set (60,000 records) in one batch.
MAX_CIFAR_BYTES = 60_000 * CIFAR_RECORD
# Deflate cannot compress better than 1032:1 (zlib's technical notes: a 258-byte match per 2 bits at
# best), so a gzip file of n bytes holds at most ~1032 n bytes: a header promising more is a lie.
MAX_DEFLATE_RATIO = 1032
_GZIP_MAGIC = b"\x1f\x8b"


def _open(path: Path) -> tuple[BinaryIO, bool]:
    """The file as a stream of its (decompressed) bytes, and whether it is gzipped. Nothing is read ahead:
    the caller reads a header, checks it, then reads exactly what it promises."""
    try:
        with path.open("rb") as f:
            gz = f.read(2) == _GZIP_MAGIC
        return (gzip.open(path, "rb") if gz else path.open("rb")), gz
    except OSError as err:
        raise UserError(f"{path}: cannot read: {err.strerror or err}") from None


def _read_exactly(stream: BinaryIO, n: int, path: Path) -> bytes:
    """``n`` bytes, with gzip's errors (a cut-off download, a corrupt stream) as one line naming the file."""
    try:
        return stream.read(n)
    except EOFError:
        raise UserError(f"{path}: truncated gzip file") from None
    except (gzip.BadGzipFile, zlib.error) as err:
        raise UserError(f"{path}: corrupt gzip file: {err}") from None


def read_idx(path: str | Path) -> np.ndarray:
    path = Path(path)
    stream, gz = _open(path)
    with stream:
        data = _read_exactly(stream, 4, path)
        if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
            raise UserError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
        ndim = data[3]
        if ndim not in (1, 3):
            raise UserError(f"{path}: IDX with {ndim} dimensions; expected 1 (labels) or 3 (images)")
        header = 4 + 4 * ndim
        raw_dims = _read_exactly(stream, 4 * ndim, path)
        if len(raw_dims) < 4 * ndim:
            raise UserError(f"{path}: IDX header is truncated")
        dims = struct.unpack(f">{ndim}I", raw_dims)
        expected = math.prod(dims)
        on_disk = path.stat().st_size
        holds = on_disk * MAX_DEFLATE_RATIO if gz else on_disk - header
        if expected > MAX_DATA_BYTES or expected > holds:
            limit = f"a {on_disk:,}-byte gzip file holds at most ~{holds:,}" if gz else f"the file has {holds:,}"
            if expected > MAX_DATA_BYTES:
                limit = f"the most we read is {MAX_DATA_BYTES:,}"
            raise UserError(f"{path}: IDX header says {dims} = {expected:,} bytes; {limit}")
        data = _read_exactly(stream, expected, path)
        extra = len(_read_exactly(stream, 1, path))
    if len(data) != expected or extra:
        has = f"{len(data):,}" if not extra else f"more than {expected:,}"
        raise UserError(f"{path}: IDX header says {dims} = {expected:,} bytes, file has {has}")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def read_cifar10_bin(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 N x 3 x 32 x 32, labels int64 N)."""
    path = Path(path)
    stream, _ = _open(path)
    with stream:  # no header: read at most the cap, never the whole of a bomb
        data = _read_exactly(stream, MAX_CIFAR_BYTES + 1, path)
    if len(data) > MAX_CIFAR_BYTES:
        raise UserError(f"{path}: more than {MAX_CIFAR_BYTES:,} bytes, all 60,000 CIFAR-10 images; not one batch")
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
