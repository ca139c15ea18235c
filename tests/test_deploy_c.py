"""The generated C99 (deploy/c.py + kernels): built with the host cc, its output bytes equal our numpy reference
and TFLM (the tflite-micro wheel's interpreter) bit for bit, for random single layers of every op and for the
zoo's MLPerf Tiny models and LeNet-5; the arena is analyze's peak_sram_bytes; the sources are -Wall -Wextra
-Werror clean on the host and for Cortex-M (SIMD path), sanitizer clean, and free of malloc and floating point.

The kernels are compiled once per session into object files; each model links its model.c and main.c to them.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from deploy_cases import KINDS, random_case, random_inputs

from nntailor import zoo
from nntailor.cost.report import analyze
from nntailor.deploy.build import build_int_model
from nntailor.deploy.c import HOST_FLAGS, SANITIZE_FLAGS, CProject, host_speed, kernel_sources, run_host, write_c
from nntailor.deploy.intmodel import IntModel, IntOp, QTensor, same_padding
from nntailor.deploy.tflite import run_tflm, to_tflite
from nntailor.errors import UserError

ACLE_HOST = Path(__file__).parent / "acle_host"
ZOO = ["lenet5", "ds_cnn", "resnet8", "vww_mobilenet", "ad_autoencoder"]
_TFLM_ARENA = 1 << 18


def _cc(args: list[str]) -> None:
    result = subprocess.run(["cc", *args], capture_output=True, text=True)
    assert result.returncode == 0, f"cc {' '.join(args)}:\n{result.stderr}"


@pytest.fixture(scope="session")
def kernels(tmp_path_factory):
    """Kernel object files by variant, compiled on first use: plain, single rounding, sanitized, SIMD path."""
    out = tmp_path_factory.mktemp("kernels")
    source = str(kernel_sources()[1])
    variants = {"double": [], "single": ["-DNNT_SINGLE_ROUNDING"], "sanitize": shlex.split(SANITIZE_FLAGS),
                "simd": ["-D__ARM_FEATURE_SIMD32", "-I", str(ACLE_HOST)]}
    made: dict[str, Path] = {}

    def get(variant: str) -> Path:
        if variant not in made:
            obj = out / f"nnt_kernels_{variant}.o"
            _cc([*shlex.split(HOST_FLAGS), *variants[variant], "-c", source, "-o", str(obj)])
            made[variant] = obj
        return made[variant]

    return get


def _link(project: CProject, kernels, variant: str = "double") -> Path:
    d = project.out_dir
    binary = d / f"model_host_{variant}"
    flags = shlex.split(SANITIZE_FLAGS) if variant == "sanitize" else []
    _cc([*shlex.split(HOST_FLAGS), *flags, "-o", str(binary), str(d / "model.c"), str(d / "main.c"),
         str(kernels(variant))])
    return binary


def _check(model: IntModel, binary: Path, x: list[np.ndarray], tflm: bool = True, rounding: str = "double") -> None:
    out = model.outputs[0]
    ours = run_host(binary, x, model.tensors[out].shape)
    reference = model.run(*x, rounding=rounding)[out]
    assert ours.shape == reference.shape
    assert (ours == reference).all(), f"{(ours != reference).sum()} of {ours.size} C outputs differ from ours"
    if tflm:
        theirs = run_tflm(to_tflite(model), x, arena_size=_TFLM_ARENA)[0]
        assert (ours == theirs.reshape(ours.shape)).all(), f"{(ours != theirs).sum()} C outputs differ from TFLM"


@pytest.mark.parametrize("kind", KINDS)
def test_random_layers_are_bit_exact_against_reference_and_tflm(kind: str, kernels, tmp_path: Path) -> None:
    rng = np.random.default_rng(1000 + KINDS.index(kind))
    for case in range(3):
        model = random_case(rng, kind)
        project = write_c(model, tmp_path / f"{kind}{case}")
        _check(model, _link(project, kernels), random_inputs(rng, model, 3))


def _window_model(kind: str, hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
                  dilation: tuple[int, int], channels: int, seed: int) -> IntModel:
    rng = np.random.default_rng(seed)
    multiplier = 2 if kind == "depthwise" and channels < 16 else 1
    out_c = channels * multiplier if kind == "depthwise" else 5
    oh, ow = (same_padding(n, k, s, d)[0] for n, k, s, d in zip(hw, kernel, stride, dilation, strict=True))
    shape = (out_c, *kernel, channels) if kind == "conv" else (1, *kernel, out_c)
    op = IntOp("layer", kind, ["x"], "y", weight=rng.integers(-127, 128, shape).astype(np.int8),
               weight_scale=np.full(out_c, 0.004, np.float32), bias=rng.integers(-500, 500, out_c).astype(np.int32),
               stride=stride, dilation=dilation, padding="same", depth_multiplier=multiplier)
    tensors = {"x": QTensor("x", (1, *hw, channels), 0.05, 7), "y": QTensor("y", (1, oh, ow, out_c), 0.1, -3)}
    return IntModel(tensors, [op], ["x"], ["y"]).prepare()


# SAME padding with dilation 2 and an odd padding before (kernel 2 or 4 on 4, 5 or 7 pixels): the first tap inside
# is not the first tap, so the tap range must round up, ceil(pad / dilation)
_GEOMETRIES = [((4, 4), (2, 2), (1, 1), (2, 2)), ((7, 5), (4, 2), (1, 2), (2, 2)), ((5, 7), (4, 4), (3, 1), (2, 3))]


@pytest.mark.parametrize("kind", ["conv", "depthwise"])
@pytest.mark.parametrize("channels", [3, 21])  # conv: gathered window / filter rows; depthwise: x2 / 16-blocks
def test_dilated_windows_skip_exactly_the_padded_taps(kind: str, channels: int, kernels, tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for i, geometry in enumerate(_GEOMETRIES):
        model = _window_model(kind, *geometry, channels=channels, seed=i)
        project = write_c(model, tmp_path / str(i))
        _check(model, _link(project, kernels), random_inputs(rng, model, 3))


@pytest.mark.parametrize("kind", ["conv", "depthwise", "fully_connected"])
def test_the_simd_path_equals_the_portable_one(kind: str, kernels, tmp_path: Path) -> None:
    """The SMLAD inner product, built on the host against an ACLE test double (tests/acle_host), gives the same
    bytes as the reference: packing, offsets and the 4-wide loop with its tail."""
    rng = np.random.default_rng(7)
    models = [random_case(rng, kind) for _ in range(4)]
    if kind != "fully_connected":  # filter rows of 21 and 84 int8: the 4-wide loop and its tail
        models += [_window_model(kind, *geometry, channels=21, seed=i) for i, geometry in enumerate(_GEOMETRIES)]
    for case, model in enumerate(models):
        project = write_c(model, tmp_path / f"{kind}{case}")
        _check(model, _link(project, kernels, "simd"), random_inputs(rng, model, 3), tflm=False)


def test_single_rounding_follows_the_reference(kernels, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    for case, kind in enumerate(["conv", "fully_connected", "add", "mul", "mean", "softmax", "logistic"] * 2):
        model = random_case(rng, kind)
        project = write_c(model, tmp_path / f"s{case}", rounding="single")
        assert "-DNNT_SINGLE_ROUNDING" in (project.out_dir / "Makefile").read_text()
        _check(model, _link(project, kernels, "single"), random_inputs(rng, model, 4), tflm=False, rounding="single")


@pytest.mark.parametrize(("rounding", "expected"), [("double", [1, 2, 0, 1]), ("single", [0, 1, 0, 1])])
def test_the_two_roundings_part_where_double_rounding_errs(rounding: str, expected: list[int], kernels,
                                                           tmp_path: Path) -> None:
    """Effective scale 1/4, so M = 2^30, shift -1. Accumulators 1, 5, -1, 3 are 0.25, 1.25, -0.25, 0.75 real.
    Double rounding: SRDHM rounds 0.5 and 2.5 up to 1 and 3, RDBPOT then 0.5 and 1.5 up again: 1, 2, 0, 1.
    Single rounding rounds the exact product once: 0, 1, 0, 1."""
    x, y = QTensor("x", (1, 4), 1.0, 0), QTensor("y", (1, 4), 1.0, 0)
    op = IntOp("fc", "fully_connected", ["x"], "y", weight=np.eye(4, dtype=np.int8),
               weight_scale=np.array([0.25], np.float32), bias=np.zeros(4, np.int32))
    model = IntModel({"x": x, "y": y}, [op], ["x"], ["y"]).prepare()
    assert (int(op.multiplier[0]), int(op.shift[0])) == (1 << 30, -1)
    project = write_c(model, tmp_path, rounding=rounding)
    q = np.array([[1, 5, -1, 3]], np.int8)
    assert run_host(_link(project, kernels, rounding), [q], (1, 4)).tolist() == [expected]


_ZOO_CACHE: dict[str, tuple[IntModel, torch.nn.Module]] = {}


def _zoo_model(name: str) -> tuple[IntModel, torch.nn.Module]:
    if name not in _ZOO_CACHE:
        torch.manual_seed(1)
        model = zoo.get(name).eval()
        shape = zoo.input_shape(name)
        calibration = torch.randn((8,) + tuple(shape[1:]))
        _ZOO_CACHE[name] = build_int_model(model, calibration, shape, batch_size=8), model
    return _ZOO_CACHE[name]


@pytest.mark.parametrize("name", ZOO)
def test_zoo_models_are_bit_exact_and_the_arena_is_analyzes(name: str, kernels, tmp_path: Path) -> None:
    int_model, model = _zoo_model(name)
    project = write_c(int_model, tmp_path)
    rng = np.random.default_rng(5)
    _check(int_model, _link(project, kernels), random_inputs(rng, int_model, 3))
    # one cost model: the static arena is the peak SRAM analyze prices for the same float model
    peak = analyze(model, zoo.input_shape(name)).totals["peak_sram_bytes"]
    header = (project.out_dir / "model.h").read_text()
    assert int(re.search(r"#define NNT_ARENA_BYTES (\d+)", header).group(1)) == peak == project.arena_bytes
    assert "static int8_t arena[NNT_ARENA_BYTES] NNT_ALIGNED16;" in (project.out_dir / "model.c").read_text()
    project.planner.check_no_overlap()


def test_the_makefile_builds_the_harness_that_reads_one_input(tmp_path: Path) -> None:
    int_model, _ = _zoo_model("ds_cnn")
    project = write_c(int_model, tmp_path)
    binary = project.build_host()
    assert binary == tmp_path / "model_host"
    x = random_inputs(np.random.default_rng(9), int_model, 1)
    result = subprocess.run([str(binary)], input=x[0].tobytes(), capture_output=True)
    assert result.returncode == 0, result.stderr
    expected = run_tflm(to_tflite(int_model), x)[0]
    assert result.stdout == expected.astype(np.int8).tobytes()
    short = subprocess.run([str(binary)], input=x[0].tobytes()[:-1], capture_output=True)
    assert short.returncode == 1 and b"input 0: expected 490 int8 bytes on stdin, got 489" in short.stderr
    partial = subprocess.run([str(binary)], input=x[0].tobytes() * 2 + b"\x01", capture_output=True)
    assert partial.returncode == 1 and b"input 2: expected 490 int8 bytes on stdin, got 1" in partial.stderr
    speed = host_speed(binary, to_tflite(int_model), random_inputs(np.random.default_rng(1), int_model, 4), repeats=1)
    assert speed["bit_exact"] and speed["ours_s"] > 0 and speed["speedup"] == speed["tflm_s"] / speed["ours_s"]


def test_sanitizer_builds_run_clean(kernels, tmp_path: Path) -> None:
    """-fsanitize=undefined,address -fno-sanitize-recover=all: any UB or out-of-bounds access exits non-zero."""
    rng = np.random.default_rng(11)
    models = [_zoo_model("lenet5")[0], _zoo_model("ds_cnn")[0]]
    models += [random_case(rng, kind) for kind in ("conv", "depthwise", "softmax", "logistic", "pad", "concat")]
    for i, model in enumerate(models):
        project = write_c(model, tmp_path / str(i))
        # the extremes of int8 first (every x - zp at its largest), then random inputs
        x = [np.concatenate([np.full((1,) + r.shape[1:], -128, np.int8), np.full((1,) + r.shape[1:], 127, np.int8), r])
             for r in random_inputs(rng, model, 2)]
        _check(model, _link(project, kernels, "sanitize"), x, tflm=False)


def _code(path: Path) -> str:
    """The C source without its comments and string literals."""
    text = re.sub(r"/\*.*?\*/", " ", path.read_text(), flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return re.sub(r'"(\\.|[^"\\])*"', '""', text)


def test_eval_code_has_no_malloc_and_no_floating_point(tmp_path: Path) -> None:
    project = write_c(_zoo_model("ds_cnn")[0], tmp_path)
    for name in ("model.c", "model.h", "nnt_kernels.c", "nnt_kernels.h", "main.c"):
        found = re.findall(r"\b(malloc|calloc|realloc|free|float|double|alloca)\b", _code(project.out_dir / name))
        assert not found, f"{name}: {found}"


@pytest.mark.parametrize(("cpu", "simd"), [("cortex-m4", True), ("cortex-m0", False)])
def test_kernels_compile_clean_for_cortex_m(cpu: str, simd: bool, tmp_path: Path) -> None:
    obj = tmp_path / "k.o"
    result = subprocess.run(["arm-none-eabi-gcc", f"-mcpu={cpu}", "-mthumb", "-std=c99", "-O2", "-Wall", "-Wextra",
                             "-Werror", "-c", str(kernel_sources()[1]), "-o", str(obj)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    disassembly = subprocess.run(["arm-none-eabi-objdump", "-d", str(obj)], capture_output=True, text=True).stdout
    assert ("smlad" in disassembly) == simd  # the M4 build takes the SIMD path, the M0 (no DSP) the portable one


def test_bad_options_are_refused_before_writing(tmp_path: Path) -> None:
    model = random_case(np.random.default_rng(0), "conv")
    with pytest.raises(UserError, match="rounding must be 'double' or 'single', got 'nearest'"):
        write_c(model, tmp_path / "a", rounding="nearest")
    x, y = QTensor("x", (1, 600), 0.1, 0), QTensor("y", (1, 600), 1.0 / 256, -128)
    wide = IntModel({"x": x, "y": y}, [IntOp("head.softmax", "softmax", ["x"], "y")], ["x"], ["y"]).prepare()
    with pytest.raises(UserError, match="head.softmax: softmax over 600 values"):
        write_c(wide, tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("core", ["cortex-m4", "cortex-m0", "cortex-m55"])
def test_generated_c_is_bit_exact_on_cortex_m_under_qemu(core: str, tmp_path: Path) -> None:
    """The same sources on the core (deploy.cortexm: arm-none-eabi-gcc, QEMU, semihosting): the M4 and M55 take
    the SMLAD path, the M0 the portable one; two inputs in one run, the outputs equal TFLM's."""
    from nntailor.deploy import cortexm

    int_model, _ = _zoo_model("ds_cnn")
    project = write_c(int_model, tmp_path / "c")
    elf = cortexm.build([project.out_dir / name for name in ("model.c", "nnt_kernels.c", "main.c")], core,
                        tmp_path / core)
    x = random_inputs(np.random.default_rng(13), int_model, 2)
    result = cortexm.run(elf, core, stdin_bytes=x[0].tobytes(), timeout=120)
    assert result.exit_code == 0, result.stderr
    expected = run_tflm(to_tflite(int_model), x)[0]
    assert result.stdout_bytes == expected.astype(np.int8).tobytes()


def test_a_missing_host_compiler_is_one_line_naming_the_package(tmp_path: Path, monkeypatch) -> None:
    project = write_c(_zoo_model("ds_cnn")[0], tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # neither make nor cc on the path
    with pytest.raises(UserError, match=r"^make not found: the C host build needs it \(Debian package make\)$"):
        project.build_host()
