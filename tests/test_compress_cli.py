"""`nntailor compress`: end to end on digits, resume from checkpoints, and one-line errors for bad input."""

import json

import pytest
from safetensors.torch import load_file

from nntailor.cli import main

MODEL = """
import torch.nn as nn

def make():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

def twelve():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 12))
"""

RECIPE = """
steps:
  - {step: finetune, epochs: 4, lr: 0.003}
  - {step: prune, sparsity: 0.75}
  - {step: finetune, epochs: 1}
  - {step: cluster, bits: 4}
  - {step: finetune, epochs: 1, optimizer: sgd, lr: 0.0001}
"""


@pytest.fixture
def files(tmp_path):
    (tmp_path / "net.py").write_text(MODEL)
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    return tmp_path


def run(capsys, *args):
    code = main([*args, "--no-progress"] if args[0] == "compress" else list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_compress_end_to_end_and_resume(files, capsys):
    args = ["compress", f"{files}/net.py:make", "--recipe", f"{files}/recipe.yaml", "--data", "digits",
            "--out", f"{files}/out"]
    code, out, err = run(capsys, *args)
    assert code == 0, err
    result = json.loads((files / "out" / "compress.json").read_text())
    before, after = result["before"], result["after"]
    assert before["params"] == after["params"] == 64 * 32 + 32 + 32 * 10 + 10
    assert after["nz_params"] < 0.35 * before["nz_params"]
    assert after["compressed_bytes"] < before["compressed_bytes"] / 5
    assert before["accuracy"] > 0.8 and after["accuracy"] > 0.6
    state = load_file(files / "out" / "model.safetensors")
    assert (state["1.weight"] == 0).float().mean() == pytest.approx(0.75, abs=0.01)
    assert len(state["1.weight"].unique()) <= 17  # 16 centroids and zero
    assert "accuracy (%)" in out and "compressed (" in out

    # a second run resumes from the finished checkpoints and reproduces the same model
    code, _, err = run(capsys, *args)
    assert code == 0, err
    assert json.loads((files / "out" / "compress.json").read_text()) == result


@pytest.mark.parametrize(
    "recipe, message",
    [
        ("steps:\n  - {step: prun, sparsity: 0.5}\n", "unknown step 'prun'; valid: "),
        ("steps:\n  - {step: prune, sparsity: 1.0}\n", "sparsity: Value error, sparsity must be in [0, 1)"),
        ("steps:\n  - {step: prune, sparsity: 0.5, colour: red}\n", "colour: Extra inputs"),
        ("steps: []\n", "non-empty list of steps"),
        ("steps: [unclosed\n", "not valid YAML"),
        ("steps:\n  - {step: prune, granularity: nm, n: 2, m: 5}\n", "multiple of 5"),
        ("steps:\n  - {step: mixed_precision, budget: 1200, act_bit_options: [1, 8]}\n",
         "act_bit_options: Value error, bits must be in 2..16, got 1"),
    ],
)
def test_bad_recipes(files, capsys, recipe, message):
    (files / "bad.yaml").write_text(recipe)
    code, _, err = run(capsys, "compress", f"{files}/net.py:make", "--recipe", f"{files}/bad.yaml",
                       "--data", "digits", "--out", f"{files}/out")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], err


def test_bad_data_model_and_checkpoint(files, capsys):
    base = ["--recipe", f"{files}/recipe.yaml", "--out", f"{files}/out"]
    code, _, err = run(capsys, "compress", f"{files}/net.py:make", *base, "--data", "imagenet")
    assert code == 2 and "unknown dataset" in err
    (files / "notmnist").mkdir()
    (files / "notmnist" / "train-images-idx3-ubyte").write_bytes(b"garbage!")
    code, _, err = run(capsys, "compress", f"{files}/net.py:make", *base, "--data", f"mnist:{files}/notmnist")
    assert code == 2 and "bad magic" in err
    code, _, err = run(capsys, "compress", f"{files}/net.py:twelve", *base, "--data", "digits")
    assert code == 2 and "12 outputs but digits has 10 classes" in err
    (files / "out" / "checkpoints").mkdir(parents=True)
    (files / "out" / "checkpoints" / "step1.pt").write_bytes(b"half a checkpoint")
    code, _, err = run(capsys, "compress", f"{files}/net.py:make", *base, "--data", "digits")
    assert code == 2 and "corrupt" in err


def test_quantized_result_is_priced_at_its_widths(files, capsys):
    # the float "before" row at 32/32; after a 4-bit LogNet step 4-bit weights as shifts: BOPs at w4/a8
    (files / "log.yaml").write_text("steps:\n  - {step: finetune, epochs: 2, lr: 0.003}\n"
                                    "  - {step: quantize, scheme: log2, weight_bits: 4}\n")
    code, out, err = run(capsys, "compress", f"{files}/net.py:make", "--recipe", f"{files}/log.yaml", "--data",
                         "digits", "--out", f"{files}/log")
    assert code == 0, err
    result = json.loads((files / "log" / "compress.json").read_text())
    macs = 64 * 32 + 32 * 10
    assert result["bits"] is None
    assert result["before"]["bops"] == macs * 32 * 32
    assert result["after"]["bops"] == macs * 4 * 8
    assert result["after"]["energy_pj"] < result["before"]["energy_pj"]
    assert "BOPs" in out
