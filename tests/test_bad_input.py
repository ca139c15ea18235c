"""Bad input is refused at the shared loaders: one line ``error: ...`` naming the value, exit 2, fast.

One test per class of bad input from issue 10 (the YAML reader, zoo options, shapes, capture, the dataset
readers, seeds, models compress cannot train); each runs the CLI as a user would, through ``main``.
"""

from __future__ import annotations

import gzip
import struct
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch.nn as nn

from nntailor import zoo
from nntailor.cli import main
from nntailor.data import read_cifar10_bin, read_idx, write_idx
from nntailor.errors import UserError
from nntailor.graph import capture
from nntailor.models import parse_shape
from nntailor.yamlfile import MAX_BYTES, read_yaml

MODELS = '''
import torch
import torch.nn as nn


def deep():
    model = nn.Linear(4, 4)
    for _ in range(1500):
        model = nn.Sequential(model)
    return model


class DictOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return {"logits": self.fc(x.flatten(1))}


class TupleOut(DictOut):
    def forward(self, x):
        y = self.fc(x.flatten(1))
        return y, y


def half():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).half()


def digits_mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
'''

RECIPE = "steps:\n  - step: finetune\n    epochs: 1\n"


def _one_line_error(capsys, args: list[str], *named: str) -> str:
    code = main(args)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for text in named:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def models(tmp_path: Path) -> Path:
    path = tmp_path / "models.py"
    path.write_text(MODELS)
    return path


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE)
    return path


# ---------------------------------------------------------------------------------------- the YAML reader

def _bomb(levels: int = 9, fan: int = 9) -> str:
    """The "billion laughs": each level lists the previous one ``fan`` times; 9 x 9 expands to 9^9 nodes."""
    lines = ["a0: &a0 [" + ", ".join(['"lol"'] * fan) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fan) + "]")
    return "\n".join(lines) + "\n"


def test_yaml_binary_junk_is_one_line(tmp_path, capsys):
    path = tmp_path / "junk.yaml"
    path.write_bytes(bytes(range(256)) * 8)
    _one_line_error(capsys, ["analyze", "zoo:lenet5", "--target", str(path)], str(path), "not UTF-8")


def test_yaml_duplicate_key_names_key_and_lines(tmp_path, capsys):
    path = tmp_path / "dup.yaml"
    path.write_text("steps:\n  - step: finetune\n    epochs: 1\n    epochs: 3\n")
    line = _one_line_error(capsys, ["compress", "zoo:lenet5", "-r", str(path), "-d", "digits", "-o", str(tmp_path)],
                           "duplicate key 'epochs'")
    assert "line 4" in line and "first at line 3" in line


def test_yaml_merge_keys_may_be_overridden(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  x: 5\n")
    assert read_yaml(path, "recipe") == {"base": {"x": 1, "y": 2}, "c": {"x": 5, "y": 2}}  # YAML merge spec


def test_yaml_alias_bomb_is_refused_fast(tmp_path, capsys):
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb() + "steps:\n  - step: *a8\n")
    start = time.perf_counter()
    _one_line_error(capsys, ["compress", "zoo:lenet5", "-r", str(path), "-d", "digits", "-o", str(tmp_path)],
                    str(path), "expands to more than")
    assert time.perf_counter() - start < 2.0


def test_yaml_alias_count_and_recursion_are_bounded(tmp_path):
    many = tmp_path / "many.yaml"
    many.write_text("a: &a 1\nb: [" + ", ".join(["*a"] * 1001) + "]\n")
    with pytest.raises(UserError, match="more than 1000 aliases"):
        read_yaml(many, "recipe")
    recursive = tmp_path / "rec.yaml"
    recursive.write_text("a: &x [1, *x]\n")
    with pytest.raises(UserError, match="contains it"):
        read_yaml(recursive, "recipe")


def test_yaml_oversize_file_is_refused_without_reading_it(tmp_path, capsys):
    path = tmp_path / "big.yaml"
    path.write_text("# padding\n" * (MAX_BYTES // 10 + 1))
    _one_line_error(capsys, ["analyze", "zoo:lenet5", "--target", str(path)], str(path), "larger than 1024 KiB")


# ------------------------------------------------------------------------------------------- zoo options

@pytest.mark.parametrize("spec, named", [
    ("zoo:lenet5?num_classes=1000000000", "num_classes=1000000000"),
    ("zoo:mobilenet_v1?width=1000", "width=1000"),
    ("zoo:mobilenet_v1?width=1e-9", "width=1e-09"),
    ("zoo:mobilenet_v1?resolution=100000", "resolution=100000"),
])
def test_zoo_option_out_of_range_is_refused_fast(capsys, spec, named):
    start = time.perf_counter()
    line = _one_line_error(capsys, ["analyze", spec, "--no-layers"], named)
    assert time.perf_counter() - start < 2.0
    assert ".." in line  # the range is named


def test_zoo_parameter_memory_is_estimated_before_building(monkeypatch):
    # VGG-16 has 138,357,544 parameters (Simonyan & Zisserman 2015, Table 2: 138 M; torchvision's count):
    # 553,430,176 bytes in float32, estimated on the meta device without allocating them
    assert zoo.param_bytes("vgg16") == 138_357_544 * 4
    monkeypatch.setattr("nntailor.hostmem.available_bytes", lambda: 100_000_000)
    start = time.perf_counter()
    with pytest.raises(UserError, match=r"zoo:vgg16: its parameters need 553\.4 MB, more than 100\.0 MB"):
        zoo.get("vgg16")
    assert time.perf_counter() - start < 2.0


# ------------------------------------------------------------------------------------------------ shapes

@pytest.mark.parametrize("shape, named", [
    ("1,1,99999999999999999999,28", "dimension 2 = 99999999999999999999"),
    ("", "input shape '' is empty"),
    (" , ", "is empty"),
    ("100000,100000,4", "40,000,000,000 elements"),
])
def test_bad_input_shape_names_the_value(capsys, shape, named):
    _one_line_error(capsys, ["analyze", "zoo:lenet5", "--input-shape", shape, "--no-layers"], named)


def test_parse_shape_keeps_good_shapes():
    assert parse_shape("1,3,32,32") == (1, 3, 32, 32)
    assert parse_shape("1x1x28x28") == (1, 1, 28, 28)


# ----------------------------------------------------------------------------------------------- capture

capture_module = sys.modules["nntailor.graph.capture"]  # the package re-exports capture(), hiding the module


def test_deeply_nested_model_is_one_line(models, capsys):
    _one_line_error(capsys, ["analyze", f"{models}:deep", "--input-shape", "1,4"], "nested too deep")


def test_deeply_nested_model_at_capture(capsys):
    model = nn.Linear(4, 4)
    for _ in range(400):  # eval() copes with this depth; torch.fx's tracer does not
        model = nn.Sequential(model)
    with pytest.raises(UserError, match="model nested too deep for torch.fx"):
        capture(model, (1, 4))


def test_huge_mismatched_input_reports_the_shape_error_without_a_real_forward(monkeypatch, capsys):
    real_runs = []
    run = capture_module._run

    def spy(root, graph, inputs, meta, env=None):
        if not meta:
            real_runs.append([tuple(t.shape) for t in inputs])
        return run(root, graph, inputs, meta, env)

    monkeypatch.setattr(capture_module, "_run", spy)
    # ResNet-8 wants 3 channels; at 4000 x 4000 a real forward would need gigabytes before failing
    line = _one_line_error(capsys, ["analyze", "zoo:resnet8", "--input-shape", "1,1,4000,4000", "--no-layers"],
                           "does not run on input shape (1, 1, 4000, 4000)", "conv1")
    assert "allocate" not in line
    assert real_runs == []


class _NeedsRealForward(nn.Module):
    """``.item()`` has no meta kernel: shapes can only come from a real forward."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.fc = nn.Linear(n, 2)

    def forward(self, x):
        return self.fc(x) * x.mean().item()


def test_real_forward_fallback_only_when_small(monkeypatch):
    real_runs = []
    run = capture_module._run

    def spy(root, graph, inputs, meta, env=None):
        if not meta:
            real_runs.append([tuple(t.shape) for t in inputs])
        return run(root, graph, inputs, meta, env)

    monkeypatch.setattr(capture_module, "_run", spy)
    graph = capture(_NeedsRealForward(16), (1, 16))  # 64 bytes of input: the fallback decides
    assert real_runs == [[(1, 16)]] and graph.layer("fc").output_shape == (1, 2)
    # 2 x 40,000,000 floats = 320 MB of input alone: over the 256 MiB bound, never run for real
    with pytest.raises(UserError, match="does not run on input shape .* real forward would need"):
        capture(_NeedsRealForward(40_000_000), (2, 40_000_000))
    assert len(real_runs) == 1


# ------------------------------------------------------------------------------- models compress can't train

@pytest.mark.parametrize("attr, named", [("DictOut", "returns a dict"), ("TupleOut", "returns a tuple"),
                                         ("half", "float16")])
def test_compress_refuses_untrainable_models(models, recipe, tmp_path, capsys, attr, named):
    out = tmp_path / "out"
    _one_line_error(capsys, ["compress", f"{models}:{attr}", "-r", str(recipe), "-d", "digits", "-o", str(out),
                             "--no-progress"], named)
    assert not (out / "checkpoints").exists()  # refused before any training


# ----------------------------------------------------------------------------------------------- seeds

@pytest.mark.parametrize("seed", ["-1", str(2**40), str(2**32)])
def test_seed_outside_numpy_range(models, recipe, tmp_path, capsys, seed):
    _one_line_error(capsys, ["compress", f"{models}:digits_mlp", "-r", str(recipe), "-d", "digits",
                             "-o", str(tmp_path / "out"), f"--seed={seed}"], f"--seed {seed}")


# --------------------------------------------------------------------------------------------- datasets

def _mnist_dir(root: Path, train_labels: np.ndarray) -> Path:
    rng = np.random.default_rng(0)
    write_idx(root / "train-images-idx3-ubyte", rng.integers(0, 256, (len(train_labels), 28, 28)))
    write_idx(root / "train-labels-idx1-ubyte", train_labels)
    write_idx(root / "t10k-images-idx3-ubyte", rng.integers(0, 256, (3, 28, 28)))
    write_idx(root / "t10k-labels-idx1-ubyte", np.array([0, 1, 2]))
    return root


def test_idx_labels_outside_0_to_9(models, recipe, tmp_path, capsys):
    (tmp_path / "mnist").mkdir()
    data = _mnist_dir(tmp_path / "mnist", np.array([3, 9, 12, 250, 1]))
    _one_line_error(capsys, ["compress", "zoo:lenet5", "-r", str(recipe), "-d", f"mnist:{data}",
                             "-o", str(tmp_path / "out")], "label 12 at index 2", "0..9")


def test_truncated_gzip_idx(tmp_path, capsys):
    root = tmp_path / "mnist"
    root.mkdir()
    _mnist_dir(root, np.arange(20) % 10)
    raw = (root / "train-images-idx3-ubyte").read_bytes()
    (root / "train-images-idx3-ubyte").unlink()
    packed = gzip.compress(raw)
    (root / "train-images-idx3-ubyte.gz").write_bytes(packed[: len(packed) // 2])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    _one_line_error(capsys, ["compress", "zoo:lenet5", "-r", str(recipe), "-d", f"mnist:{root}",
                             "-o", str(tmp_path / "out")], "train-images-idx3-ubyte.gz: truncated gzip file")


def _gzip_zeros(path: Path, header: bytes, zeros: int) -> None:
    """A gzip file of ``header`` then ``zeros`` zero bytes, streamed (never held in memory whole)."""
    chunk = bytes(1 << 20)
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(header)
        for _ in range(zeros // len(chunk)):
            f.write(chunk)


def _bounded(read, path: Path) -> tuple[str, float, int]:
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(UserError) as excinfo:
            read(path)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return str(excinfo.value), elapsed, peak


def test_gzip_bomb_is_refused_from_its_header(tmp_path):
    # a header promising 65536 x 256 x 256 = 4 GiB, with 64 MiB of zeros behind it (64 kB compressed)
    bomb = tmp_path / "bomb-idx3-ubyte.gz"
    _gzip_zeros(bomb, bytes([0, 0, 8, 3]) + struct.pack(">3I", 65536, 256, 256), 64 << 20)
    assert bomb.stat().st_size < 1 << 20
    message, elapsed, peak = _bounded(read_idx, bomb)
    assert "4,294,967,296 bytes" in message
    assert elapsed < 2.0 and peak < 1 << 20
    # a header within bounds that the compressed size cannot back: 256 MiB from ~64 kB is past deflate's 1032:1
    liar = tmp_path / "liar-idx3-ubyte.gz"
    _gzip_zeros(liar, bytes([0, 0, 8, 3]) + struct.pack(">3I", 4096, 256, 256), 1 << 20)
    message, elapsed, peak = _bounded(read_idx, liar)
    assert "holds at most" in message and elapsed < 2.0 and peak < 1 << 20


def test_gzip_bomb_behind_a_small_header_stops_at_what_the_header_promises(tmp_path):
    # the header promises 10 labels; 64 MiB of zeros follow: read 10 bytes and one more, never the rest
    bomb = tmp_path / "labels-idx1-ubyte.gz"
    _gzip_zeros(bomb, bytes([0, 0, 8, 1]) + struct.pack(">I", 10), 64 << 20)
    message, elapsed, peak = _bounded(read_idx, bomb)
    assert "file has more than 10" in message and elapsed < 2.0 and peak < 1 << 20
    cifar = tmp_path / "data_batch_1.bin"
    _gzip_zeros(cifar, b"", 256 << 20)  # past the 60,000-record cap
    message, elapsed, _ = _bounded(read_cifar10_bin, cifar)
    assert "all 60,000 CIFAR-10 images" in message


def test_corrupt_gzip_is_one_line(tmp_path):
    path = tmp_path / "x-idx1-ubyte.gz"
    packed = bytearray(gzip.compress(bytes([0, 0, 8, 1]) + struct.pack(">I", 3) + b"\x01\x02\x03"))
    packed[12:20] = b"\xff" * 8  # inside the deflate stream
    path.write_bytes(bytes(packed))
    with pytest.raises(UserError, match="x-idx1-ubyte.gz: (corrupt|truncated) gzip file"):
        read_idx(path)


def test_good_idx_still_reads(tmp_path):
    path = tmp_path / "ok-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 1]) + struct.pack(">I", 3) + b"\x01\x02\x03"))
    assert read_idx(path).tolist() == [1, 2, 3]


# --------------------------------------------------------------------------------------- the CLI's mapping

def test_eof_error_is_not_reported_as_interrupted(monkeypatch, capsys):
    def eof(name):
        raise EOFError("Compressed file ended before the end-of-stream marker was reached")

    monkeypatch.setattr("nntailor.targets.load", eof)
    with pytest.raises(EOFError):  # a bug keeps its traceback (exit 1), click's Abort wrapper is undone
        main(["analyze", "zoo:lenet5"])
    assert "interrupted" not in capsys.readouterr().err



def test_unreadable_files_are_one_line(tmp_path, monkeypatch):
    # root reads any file whatever its mode: make the open itself fail, as a permission or I/O error does
    path = tmp_path / "x.yaml"
    path.write_text("a: 1\n")

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(UserError, match="x.yaml: cannot read: Permission denied"):
        read_yaml(path, "target")
    with pytest.raises(UserError, match="x.yaml: cannot read: Permission denied"):
        read_idx(path)


def test_seeds_inside_a_recipe_are_range_checked(tmp_path):
    # numpy's RandomState (KMeans, tensorly) takes 0..2**32-1; a recipe seed outside fails at the step otherwise
    from nntailor.compress.recipe import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text("steps:\n  - {step: cluster, bits: 4, seed: -1}\n")
    with pytest.raises(UserError, match=r"step 1 \(cluster\): seed: Input should be greater than or equal to 0"):
        load_recipe(path)
    path.write_text(f"steps:\n  - {{step: low_rank, seed: {2**40}}}\n")
    with pytest.raises(UserError, match=r"step 1 \(low_rank\): seed: Input should be less than or equal to 4294967295"):
        load_recipe(path)


def test_a_structure_as_step_name_is_shown_short(tmp_path):
    from nntailor.compress.recipe import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text("steps:\n  - step: [" + ", ".join(["x" * 20] * 500) + "]\n")
    with pytest.raises(UserError) as err:
        load_recipe(path)
    message = str(err.value)
    assert "unknown step ['xxxxxxxx" in message and "... (list)" in message and len(message) < 400
