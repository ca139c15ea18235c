"""`nntailor analyze` end to end: output, JSON, and one-line errors with exit code 2 for every bad input."""

import json
import subprocess
import sys

import pytest

from nntailor.cli import main

MODEL_FILE = """
import torch.nn as nn

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(x)

def make():
    return Tiny()

def broken():
    raise RuntimeError("no weights here")

def not_a_model():
    return 42
"""


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(MODEL_FILE)
    return path


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_analyze_zoo_model_writes_json(capsys, tmp_path):
    out_json = tmp_path / "r.json"
    code, out, err = run(capsys, "analyze", "zoo:lenet5", "--target", "stm32l476", "--json", str(out_json))
    assert code == 0, err
    assert "2,293,000" in out and "FITS" in out
    data = json.loads(out_json.read_text())
    assert data["totals"]["macs"] == 2_293_000 and data["totals"]["params"] == 431_080
    assert data["target"] == "stm32l476" and data["fits"] is True


def test_analyze_file_model_with_shape(capsys, model_file):
    code, out, err = run(capsys, "analyze", f"{model_file}:make", "--input-shape", "1,8", "--no-layers")
    assert code == 0, err
    assert "32" in out  # 8 x 4 MACs


def test_zoo_options_and_does_not_fit(capsys):
    code, out, _ = run(capsys, "analyze", "zoo:mobilenet_v2", "--target", "stm32l476", "--no-layers")
    assert code == 0 and "DOES NOT FIT" in out and "exceeds sram" in out
    code, out, _ = run(capsys, "analyze", "zoo:mobilenet_v1?width=0.25&resolution=128", "--no-layers")
    assert code == 0


BAD = [
    (["analyze", "zoo:nosuchnet"], "unknown zoo model 'nosuchnet'"),
    (["analyze", "zoo:mobilenet_v1?depth=3"], "unknown option 'depth'"),
    (["analyze", "missing/net.py:make"], "model file not found"),
    (["analyze", "{file}:nothing"], "has no 'nothing'"),
    (["analyze", "{file}:broken", "--input-shape", "1,8"], "raised RuntimeError: no weights here"),
    (["analyze", "{file}:not_a_model", "--input-shape", "1,8"], "not a torch.nn.Module"),
    (["analyze", "{file}:make"], "give --input-shape"),
    (["analyze", "{file}:make", "--input-shape", "1,9"], "does not run on input shape"),
    (["analyze", "{file}:make", "--input-shape", "1,0"], "positive sizes"),
    (["analyze", "{file}:make", "--input-shape", "one,two"], "comma-separated integers"),
    (["analyze", "zoo:lenet5", "--target", "nochip"], "unknown target 'nochip'"),
    (["analyze", "zoo:lenet5", "--target", "{yaml}"], "memories.0.size_bytes"),
    (["analyze", "zoo:lenet5", "--bits", "24"], "bits must be 1 to 16 or 32"),
    (["analyze", "zoo:lenet5", "--count-like", "flopzilla"], "--count-like 'flopzilla'"),
    (["analyze", "zoo:lenet5", "--no-such-flag"], "no-such-flag"),
]


@pytest.mark.parametrize("args, message", BAD)
def test_bad_input_is_one_line_exit_2(capsys, tmp_path, model_file, args, message):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text(
        "name: x\nkind: mcu\nclock_hz: 1.0e6\ncompute: {cycles_per_mac: {default: {int8: 1}}}\n"
        "memories:\n  - {name: m, size_bytes: 0, read_pj_per_byte: 1, holds: [weights, activations]}\n"
    )
    args = [a.format(file=model_file, yaml=bad_yaml) for a in args]
    code, out, err = run(capsys, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0]
    assert "Traceback" not in err + out


def test_strict_turns_unpriced_into_an_error(capsys, tmp_path):
    path = tmp_path / "odd.py"
    path.write_text("import torch, torch.nn as nn\nclass Odd(nn.Module):\n    def forward(self, x):\n"
                    "        return torch.cumsum(x, 1)\n")
    code, out, _ = run(capsys, "analyze", f"{path}:Odd", "--input-shape", "1,4", "--no-layers")
    assert code == 0 and "unpriced ops" in out and "cumsum" in out
    code, _, err = run(capsys, "analyze", f"{path}:Odd", "--input-shape", "1,4", "--strict")
    assert code == 2 and "cumsum" in err


def test_debug_shows_the_traceback():
    with pytest.raises(Exception, match="unknown target"):
        main(["--debug", "analyze", "zoo:lenet5", "--target", "nochip"])


def test_console_script_exit_code():
    proc = subprocess.run(
        [sys.executable, "-m", "nntailor.cli", "analyze", "zoo:nosuchnet"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: unknown zoo model")
