"""Bad input is refused at the shared loaders: one line ``error: ...`` naming the value, exit 2, fast.

One test per class of bad input from issue 10 (the YAML reader, zoo options, shapes, capture, the dataset
readers, seeds, models compress cannot train); each runs the CLI as a user would, through ``main``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from nntailor import zoo
from nntailor.cli import main
from nntailor.errors import UserError
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
