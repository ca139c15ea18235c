"""`nntailor deploy`: end to end (zoo:lenet5 on the bundled MNIST sample, a compress output folder rebuilt
exactly), the files and report.json, and one-line errors (exit 2, nothing written) for every bad input."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from nntailor import run_deploy, zoo
from nntailor.cli import main
from nntailor.compress.base import Context
from nntailor.compress.recipe import load_recipe, run_recipe
from nntailor.data import load_dataset
from nntailor.deploy.tflite import run_tflm
from nntailor.run_compress import compress_model
from nntailor.targets import load as load_target

NET = """
import torch
import torch.nn as nn

class Small(nn.Module):
    input_shape = (1, 1, 8, 8)

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv(x)))
        return self.fc(x.flatten(1))

def small():
    return Small()

def gelu():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.GELU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))

def wide():
    # 70,000 inputs whose int8 weights are all 127, inputs in [0, 1] (zero point -128, so x - zp spans 255):
    # 127 * 255 * 70,000 > 2^31, the int32 accumulator could wrap
    m = nn.Linear(70000, 1)
    nn.init.constant_(m.weight, 0.01)
    return nn.Sequential(m)
"""


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "net.py").write_text(NET)
    return tmp_path


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _report(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text())


def test_deploy_lenet5_end_to_end(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "deploy", "zoo:lenet5", "--target", "stm32l476", "--calib", "mnist",
                            "--out", str(out))
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["c", "model.onnx", "model.tflite", "report.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left beside it
    report = _report(out)
    assert report["producer"] == run_deploy.MARKER
    c = report["checks"]["c"]
    assert c["bit_exact"] is True and c["outputs"] == {"classifier.2": True}
    assert (out / "c" / "model_host").is_file() and (out / "c" / "Makefile").is_file()
    assert c["arena_bytes"] == report["analyze"]["peak_sram_bytes"]  # one planner: the C's arena is analyze's
    tflite = report["checks"]["tflite"]
    assert tflite["bit_exact"] is True and all(tflite["layers"].values())
    assert set(tflite["layers"]) == {"features.0", "features.1", "features.2", "features.3", "flatten",
                                     "classifier.0", "classifier.2"}
    onnx = report["checks"]["onnx"]["outputs"]["classifier.2"]
    assert onnx["values"] == 16 * 10 and onnx["max_lsb"] <= 2
    a = report["analyze"]
    assert a["fits"] is True and a["arena_bytes"] == a["peak_sram_bytes"] + a["arena_tail_bytes"]
    assert a["peak_sram_bytes"] <= tflite["arena"]["head"]  # our planner is TFLM's: never more than its head
    assert tflite["bytes"] == (out / "model.tflite").stat().st_size
    assert "TFLM output bit-exact over 16 inputs" in stdout and "yes" in stdout
    # the written .tflite runs in the wheel's interpreter and gives the reference's output
    data = load_dataset("mnist")
    x = data.test.tensors[0][:4].numpy().transpose(0, 2, 3, 1)
    buf = (out / "model.tflite").read_bytes()
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(buf)
    details = interpreter.get_input_details(0)
    assert tuple(details["shape"]) == (1, 28, 28, 1) and details["dtype"] == np.int8
    scale, zero_point = details["quantization_parameters"]["scales"][0], \
        details["quantization_parameters"]["zero_points"][0]
    q = np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)
    (got,) = run_tflm(buf, [q])
    assert got.shape == (4, 10)
    # rerun into our own folder: replaced without --overwrite
    code, _, err = run(capsys, "deploy", "zoo:lenet5", "--target", "stm32l476", "--calib", "mnist", "--out",
                       str(out), "--format", "tflite")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["model.tflite", "report.json"]


def test_deploy_from_a_compress_folder_rebuilds_the_pruned_model_exactly(tmp_path: Path, capsys) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"steps": [
        {"step": "prune", "sparsity": 0.5},
        {"step": "prune_channels", "sparsity": 0.5, "input_shape": [1, 1, 28, 28]},
    ]}))
    steps = load_recipe(recipe)
    data = load_dataset("mnist")
    target = load_target("stm32l476")
    torch.manual_seed(3)
    model = zoo.get("lenet5")
    expected = run_recipe(copy.deepcopy(model), steps, Context(train=data.train, test=data.test,
                                                               input_shape=data.input_shape, target=target))
    folder = tmp_path / "compressed"
    compress_model(model, steps, data, target, folder, name="lenet5", progress=False)
    rebuilt, name, shape = run_deploy.rebuild_compressed(folder)
    assert name == "lenet5" and shape == (1, 1, 28, 28)
    assert rebuilt.features[0].out_channels < zoo.get("lenet5").features[0].out_channels  # channels removed
    x = data.test.tensors[0][:8]
    with torch.no_grad():
        assert torch.equal(rebuilt(x), expected.eval()(x))
    out = tmp_path / "out"
    code, _, err = run(capsys, "deploy", str(folder), "--target", "stm32l476", "--calib", "mnist", "--out",
                       str(out), "--format", "tflite")
    assert code == 0, err
    report = _report(out)
    assert report["model"] == "lenet5" and report["checks"]["tflite"]["bit_exact"] is True


def _compress(tmp_path: Path, steps_yaml: list[dict]) -> tuple[Path, torch.nn.Module]:
    """A real ``nntailor compress`` output folder of zoo:lenet5 on MNIST, and the same recipe run in memory."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"steps": steps_yaml}))
    steps = load_recipe(recipe)
    data, target = load_dataset("mnist"), load_target("stm32l476")
    torch.manual_seed(3)
    model = zoo.get("lenet5")
    expected = run_recipe(copy.deepcopy(model), steps, Context(train=data.train, test=data.test,
                                                               input_shape=data.input_shape, target=target))
    folder = tmp_path / "compressed"
    compress_model(model, steps, data, target, folder, name="lenet5", progress=False)
    return folder, expected.eval()


def test_a_compress_folder_that_quantized_is_rebuilt_with_its_ranges(tmp_path: Path, capsys) -> None:
    folder, expected = _compress(tmp_path, [
        {"step": "prune_channels", "sparsity": 0.5, "input_shape": [1, 1, 28, 28]}, {"step": "quantize"}])
    rebuilt, _, _ = run_deploy.rebuild_compressed(folder)
    x = load_dataset("mnist").test.tensors[0][:8]
    with torch.no_grad():
        assert torch.equal(rebuilt(x), expected(x))
    saved = rebuilt.features[0].input_quant
    assert float(saved.scale) == float(expected.features[0].input_quant.scale)
    out = tmp_path / "out"
    code, _, err = run(capsys, "deploy", str(folder), "--target", "stm32l476", "--calib", "mnist", "--out",
                       str(out), "--format", "tflite")
    assert code == 0, err
    report = _report(out)
    assert report["checks"]["tflite"]["bit_exact"] is True
    # the deployed input tensor is quantized with the range compress calibrated, not a new one
    import tflite_micro.python.tflite_micro.runtime as runtime

    details = runtime.Interpreter.from_bytes((out / "model.tflite").read_bytes()).get_input_details(0)
    assert np.float32(details["quantization_parameters"]["scales"][0]) == np.float32(float(saved.scale))
    assert details["quantization_parameters"]["zero_points"][0] == int(saved.zero_point)


def test_a_compress_folder_whose_modules_were_replaced_is_refused(tmp_path: Path, capsys) -> None:
    folder, _ = _compress(tmp_path, [{"step": "low_rank", "energy": 0.5, "layers": ["classifier.0"]}])
    line = _fails(capsys, tmp_path, str(folder), "--target", "stm32l476", "--calib", "mnist")
    assert "does not fit lenet5 after its recipe (low_rank)" in line


def test_a_compress_folder_of_a_model_file_is_refused(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "compressed"
    folder.mkdir()
    (folder / "compress.json").write_text(json.dumps({"model": "make", "steps": []}))
    line = _fails(capsys, tmp_path, str(folder), "--target", "stm32l476", "--calib", "mnist")
    assert "'make' is not a zoo model" in line


def test_deploy_writes_only_the_formats_asked_for(files: Path, capsys) -> None:
    out = files / "out"
    code, _, err = run(capsys, "deploy", f"{files}/net.py:small", "--target", "stm32l476", "--calib", "digits",
                       "--out", str(out), "--format", "onnx")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "report.json"]
    report = _report(out)
    assert report["formats"] == ["onnx"] and list(report["checks"]) == ["onnx"]
    assert set(report["checks"]["onnx"]["layers"]) == {"conv", "pool", "flatten", "fc"}


def _fails(capsys, files: Path, *args: str, out: Path | None = None) -> str:
    out = out or files / "out"
    code, _, err = run(capsys, "deploy", *args, "--out", str(out))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert not any((out / name).exists() for name in ("model.tflite", "model.onnx", "report.json"))
    for folder in {files, out.parent}:  # no temporary folder left
        assert not folder.is_dir() or not [p for p in folder.iterdir() if p.name.startswith(".")]
    return lines[0]


def _npy(files: Path, array: np.ndarray) -> str:
    path = files / "calib.npy"
    np.save(path, array)
    return str(path)


@pytest.mark.parametrize("array, match", [
    (np.zeros((4, 1, 7, 8), np.float32), "shaped (N, 1, 8, 8)"),
    (np.zeros((4, 1, 8, 8), np.float64), "float32, got float64"),
    (np.zeros((4, 1, 8, 8), np.int8), "float32, got int8"),
    (np.zeros((0, 1, 8, 8), np.float32), "holds no inputs"),
    (np.full((4, 1, 8, 8), np.nan, np.float32), "NaN or infinite"),
    (np.full((4, 1, 8, 8), np.inf, np.float32), "NaN or infinite"),
])
def test_bad_calibration_arrays_are_refused(files: Path, capsys, array: np.ndarray, match: str) -> None:
    line = _fails(capsys, files, f"{files}/net.py:small", "--target", "stm32l476", "--calib", _npy(files, array))
    assert match in line


def test_a_npy_with_objects_is_refused_without_unpickling(files: Path, capsys) -> None:
    path = files / "calib.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    line = _fails(capsys, files, f"{files}/net.py:small", "--target", "stm32l476", "--calib", str(path))
    assert "not a readable .npy" in line


def test_a_dataset_of_the_wrong_shape_is_refused(files: Path, capsys) -> None:
    line = _fails(capsys, files, "zoo:lenet5", "--target", "stm32l476", "--calib", "digits")
    assert "1x8x8" in line and "1x28x28" in line


def test_an_unsupported_op_is_named_with_its_module_path(files: Path, capsys) -> None:
    line = _fails(capsys, files, f"{files}/net.py:gelu", "--target", "stm32l476", "--calib", "digits",
                  "--input-shape", "1,1,8,8")
    assert "layer '1' (GELU, op gelu) has no int8 TFLite kernel" in line


def test_an_accumulator_that_could_overflow_int32_is_named(files: Path, capsys) -> None:
    calib = _npy(files, np.random.default_rng(0).uniform(0, 1, (4, 70000)).astype(np.float32))
    line = _fails(capsys, files, f"{files}/net.py:wide", "--target", "stm32h743", "--calib", calib,
                  "--input-shape", "1,70000", "--format", "tflite")
    assert "int32 accumulator" in line and "output channel 0" in line


def _tiny_target(files: Path) -> Path:
    spec = yaml.safe_load((Path(run_deploy.__file__).parent / "targets/catalog/stm32l476.yaml").read_text())
    spec["name"], spec["memories"][0]["size_bytes"] = "tiny", 1024
    path = files / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_a_model_that_does_not_fit_is_refused_unless_forced(files: Path, capsys) -> None:
    tiny = str(_tiny_target(files))
    line = _fails(capsys, files, f"{files}/net.py:small", "--target", tiny, "--calib", "digits")
    assert "does not fit tiny" in line and "exceeds" in line and "--force" in line
    out = files / "out"
    code, stdout, err = run(capsys, "deploy", f"{files}/net.py:small", "--target", tiny, "--calib", "digits",
                            "--out", str(out), "--format", "tflite", "--force")
    assert code == 0, err
    report = _report(out)
    assert report["analyze"]["fits"] is False and report["analyze"]["forced"] is True
    assert report["analyze"]["violations"] and "does NOT fit" in stdout


def test_a_folder_that_is_not_ours_is_refused_unless_overwrite(files: Path, capsys) -> None:
    out = files / "theirs"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    line = _fails(capsys, files, f"{files}/net.py:small", "--target", "stm32l476", "--calib", "digits", out=out)
    assert "not an nntailor deploy folder" in line and "--overwrite" in line
    assert (out / "keep.txt").read_text() == "mine"
    code, _, err = run(capsys, "deploy", f"{files}/net.py:small", "--target", "stm32l476", "--calib", "digits",
                       "--out", str(out), "--format", "tflite", "--overwrite")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["model.tflite", "report.json"]


def test_bad_formats_are_refused(files: Path, capsys) -> None:
    line = _fails(capsys, files, f"{files}/net.py:small", "--target", "stm32l476", "--calib", "digits",
                  "--format", "keras")
    assert "--format 'keras'" in line and "c, tflite, onnx" in line


def test_an_interrupted_deploy_leaves_nothing(files: Path, monkeypatch) -> None:
    def interrupted(model, folder, inputs):
        (folder / "half.bin").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setitem(run_deploy.EXPORTERS, "onnx", interrupted)
    out = files / "out"
    with pytest.raises(KeyboardInterrupt):
        run_deploy.deploy_model(f"{files}/net.py:small", "stm32l476", "digits", out)
    assert not out.exists()
    assert not [p for p in files.iterdir() if p.name.startswith(".")]


def test_an_out_under_a_file_is_refused_before_any_work(files: Path, capsys) -> None:
    (files / "plain").write_text("x")
    line = _fails(capsys, files, "zoo:lenet5", "--target", "stm32l476", "--calib", "mnist",
                  out=files / "plain" / "out")
    assert "plain" in line and "is a file" in line
    line = _fails(capsys, files, "zoo:lenet5", "--target", "stm32l476", "--calib", "mnist", out=files / "plain")
    assert "is a file, not a folder" in line
