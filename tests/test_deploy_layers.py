"""Single random int8 layers: the numpy reference equals TFLM (the tflite-micro wheel's interpreter) bit for bit.

A seeded property test: random shapes, strides, paddings, dilations, depth multipliers, fused activations,
scales (effective multipliers above and below one), zero points and biases, for every op of the IntModel. The
golden output is TFLM's, run on the .tflite the exporter writes.
"""

from __future__ import annotations

import numpy as np
import pytest

from nntailor.deploy.intmodel import IntModel, IntOp, QTensor, same_padding, valid_size
from nntailor.deploy.tflite import run_tflm, to_tflite
from nntailor.errors import UserError

KINDS = ("conv", "depthwise", "fully_connected", "add", "mul", "avgpool", "maxpool", "mean", "concat", "pad",
         "reshape", "softmax", "logistic")
_ARENA = 1 << 18


def _scale(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _tensor(rng: np.random.Generator, name: str, shape: tuple[int, ...], like: QTensor | None = None) -> QTensor:
    if like is not None:
        return QTensor(name, shape, like.scale, like.zero_point)
    return QTensor(name, shape, _scale(rng, 1e-3, 1.0), int(rng.integers(-128, 128)))


def _spatial(rng: np.random.Generator, kernel: tuple[int, int], dilation: tuple[int, int], stride: tuple[int, int],
             padding: str, h: int, w: int) -> tuple[int, int]:
    if padding == "same":
        return same_padding(h, kernel[0], stride[0], dilation[0])[0], same_padding(w, kernel[1], stride[1],
                                                                                    dilation[1])[0]
    return valid_size(h, kernel[0], stride[0], dilation[0]), valid_size(w, kernel[1], stride[1], dilation[1])


def random_case(rng: np.random.Generator, kind: str) -> IntModel:
    """One random single-op IntModel of ``kind`` (batch 1, NHWC)."""
    h, w, c = (int(v) for v in rng.integers(1, 11, 3))
    x = _tensor(rng, "x", (1, h, w, c))
    tensors = {"x": x}
    activation = str(rng.choice(["none", "relu", "relu6"]))
    inputs = ["x"]
    if kind in ("conv", "depthwise"):
        dilation = tuple(int(d) for d in rng.integers(1, 3, 2))
        kernel = tuple(int(rng.integers(1, 1 + max(1, min(4, (n - 1) // d + 1)))) for n, d in zip((h, w), dilation,
                                                                                                     strict=True))
        stride = tuple(int(s) for s in rng.integers(1, 4, 2))
        padding = str(rng.choice(["same", "valid"]))
        oh, ow = _spatial(rng, kernel, dilation, stride, padding, h, w)
        multiplier = int(rng.integers(1, 4)) if kind == "depthwise" else 1
        out_c = c * multiplier if kind == "depthwise" else int(rng.integers(1, 9))
        shape = (out_c, *kernel, c) if kind == "conv" else (1, *kernel, out_c)
        weight = rng.integers(-127, 128, shape).astype(np.int8)
        op = IntOp("layer", kind, inputs, "y", activation, weight=weight,
                   weight_scale=np.array([_scale(rng, 1e-4, 0.1) for _ in range(out_c)], np.float32),
                   bias=rng.integers(-(1 << 20), 1 << 20, out_c).astype(np.int32), stride=stride, dilation=dilation,
                   padding=padding, depth_multiplier=multiplier)
        out_shape = (1, oh, ow, out_c)
    elif kind == "fully_connected":
        features, out_c = h * w, int(rng.integers(1, 17))
        x = tensors["x"] = _tensor(rng, "x", (1, features))
        per_channel = bool(rng.integers(0, 2))
        scales = [_scale(rng, 1e-4, 0.1) for _ in range(out_c if per_channel else 1)]
        op = IntOp("layer", kind, inputs, "y", activation,
                   weight=rng.integers(-127, 128, (out_c, features)).astype(np.int8),
                   weight_scale=np.array(scales, np.float32),
                   bias=rng.integers(-(1 << 16), 1 << 16, out_c).astype(np.int32))
        out_shape = (1, out_c)
    elif kind in ("add", "mul"):
        tensors["x2"] = _tensor(rng, "x2", x.shape)
        inputs = ["x", "x2"]
        op = IntOp("layer", kind, inputs, "y", activation)
        out_shape = x.shape
    elif kind in ("avgpool", "maxpool"):
        kernel = (int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1)))
        stride = tuple(int(s) for s in rng.integers(1, 4, 2))
        padding = str(rng.choice(["same", "valid"]))
        oh, ow = _spatial(rng, kernel, (1, 1), stride, padding, h, w)
        op = IntOp("layer", kind, inputs, "y", activation, filter=kernel, stride=stride, padding=padding)
        out_shape = (1, oh, ow, c)
        tensors["y"] = _tensor(rng, "y", out_shape, like=x)
    elif kind == "mean":
        axes = tuple(sorted({int(a) for a in rng.choice([1, 2, 3], int(rng.integers(1, 4)), replace=False)}))
        if rng.integers(0, 2):
            axes = (1, 2)  # global average pooling, the common case
        keep = bool(rng.integers(0, 2))
        op = IntOp("layer", kind, inputs, "y", axes=axes, keep_dims=keep)
        out_shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape)) if keep else tuple(
            d for i, d in enumerate(x.shape) if i not in axes)
        if rng.integers(0, 4) == 0:
            tensors["y"] = _tensor(rng, "y", out_shape, like=x)  # same scale and zero point
    elif kind == "concat":
        axis = int(rng.integers(1, 4))
        parts = int(rng.integers(2, 4))
        inputs = []
        size = 0
        for i in range(parts):
            shape = list(x.shape)
            shape[axis] = int(rng.integers(1, 5))
            size += shape[axis]
            name = f"x{i}"
            tensors[name] = _tensor(rng, name, tuple(shape), like=x)
            inputs.append(name)
        del tensors["x"]
        op = IntOp("layer", kind, inputs, "y", axis=axis)
        out = list(x.shape)
        out[axis] = size
        out_shape = tuple(out)
        tensors["y"] = _tensor(rng, "y", out_shape, like=x)
    elif kind == "pad":
        paddings = ((0, 0),) + tuple((int(rng.integers(0, 3)), int(rng.integers(0, 3))) for _ in range(3))
        op = IntOp("layer", kind, inputs, "y", paddings=paddings)
        out_shape = tuple(d + b + a for d, (b, a) in zip(x.shape, paddings, strict=True))
        tensors["y"] = _tensor(rng, "y", out_shape, like=x)
    elif kind == "softmax":
        x = tensors["x"] = QTensor("x", (1, int(rng.integers(1, 40))), _scale(rng, 1e-3, 2.0),
                                   int(rng.integers(-128, 128)))
        op = IntOp("layer", kind, inputs, "y")
        out_shape = x.shape
        tensors["y"] = QTensor("y", out_shape, 1.0 / 256, -128)
    elif kind == "logistic":
        x = tensors["x"] = QTensor("x", (1, h, w, c), _scale(rng, 1e-3, 0.3), int(rng.integers(-128, 128)))
        op = IntOp("layer", kind, inputs, "y")
        out_shape = x.shape
        tensors["y"] = QTensor("y", out_shape, 1.0 / 256, -128)
    else:  # reshape
        op = IntOp("layer", kind, inputs, "y")
        out_shape = (1, h * w * c)
        tensors["y"] = _tensor(rng, "y", out_shape, like=x)
    tensors.setdefault("y", _tensor(rng, "y", out_shape))
    return IntModel(tensors, [op], inputs, ["y"], name=kind).prepare()


def _inputs(rng: np.random.Generator, model: IntModel, n: int) -> list[np.ndarray]:
    return [rng.integers(-128, 128, (n,) + model.tensors[name].shape[1:]).astype(np.int8) for name in model.inputs]


@pytest.mark.parametrize("kind", KINDS)
def test_random_layers_are_bit_exact_against_tflm(kind: str) -> None:
    rng = np.random.default_rng(KINDS.index(kind))
    cases = 60
    for case in range(cases):
        model = random_case(rng, kind)
        x = _inputs(rng, model, 3)
        ours = model.run(*x)["y"]
        theirs = run_tflm(to_tflite(model), x, arena_size=_ARENA)[0]
        assert ours.shape == theirs.shape, (kind, case)
        diff = np.flatnonzero(ours.reshape(-1) != theirs.reshape(-1))
        assert diff.size == 0, f"{kind} case {case}: {diff.size} of {ours.size} outputs differ, ops {model.ops[0]}"


@pytest.mark.parametrize(("s_in", "s_w", "s_out", "expected"), [
    # s_in s_w / s_out = 0.5 (1 - 2^-46): M rounds up to 2^31 and is halved, shift + 1 (TFLite: 0.5 - 1e-10)
    (1 + 2.0 ** -23, 1 - 2.0 ** -23, 2.0, (1073741824, 0)),
    (1.0, 2.0 ** -33, 1.0, (0, 0)),  # shift -32 < -31: the multiplier underflows to zero
    (1.0, 2.0 ** -32, 1.0, (1073741824, -31)),
    (1.0, 1.25, 1.0, (1342177280, 1)),  # above one: a left shift
])
def test_multipliers_are_tflm_figures_for_edge_scales(s_in: float, s_w: float, s_out: float,
                                                       expected: tuple[int, int]) -> None:
    x, y = QTensor("x", (1, 4), s_in, 3), QTensor("y", (1, 4), s_out, -2)
    # per channel (two different scales), so the effective scale is computed in double as TFLM does
    op = IntOp("fc", "fully_connected", ["x"], "y", weight=np.eye(4, dtype=np.int8) * 100,
               weight_scale=np.array([s_w, s_w, s_w, 0.5], np.float32), bias=np.zeros(4, np.int32))
    model = IntModel({"x": x, "y": y}, [op], ["x"], ["y"]).prepare()
    assert (int(op.multiplier[0]), int(op.shift[0])) == expected
    q = np.array([[-128, -1, 1, 127]], np.int8)
    assert (model.run(q)["y"] == run_tflm(to_tflite(model), [q], arena_size=_ARENA)[0]).all()


def test_reference_rejects_wrong_input() -> None:
    model = random_case(np.random.default_rng(0), "add")
    with pytest.raises(UserError, match="int8 of shape"):
        model.run(np.zeros(model.tensors["x"].shape, np.float32), np.zeros(model.tensors["x2"].shape, np.int8))


def test_rescaling_ops_need_shared_quantization() -> None:
    x = QTensor("x", (1, 2, 2, 1), 0.1, 0)
    y = QTensor("y", (1, 2, 2, 1), 0.2, 0)
    with pytest.raises(UserError, match="same scale and zero point"):
        IntModel({"x": x, "y": y}, [IntOp("pool", "maxpool", ["x"], "y")], ["x"], ["y"]).prepare()


def test_an_accumulator_that_could_overflow_int32_is_named() -> None:
    # 70,000 taps of |w| = 127 on inputs 255 away from the zero point: 2.27e9 > 2^31 - 1
    x, y = QTensor("x", (1, 70000), 0.01, -128), QTensor("y", (1, 1), 1.0, 0)
    op = IntOp("head.fc", "fully_connected", ["x"], "y", weight=np.full((1, 70000), 127, np.int8),
               weight_scale=np.array([1e-3], np.float32), bias=np.zeros(1, np.int32))
    with pytest.raises(UserError, match=r"head.fc: the int32 accumulator of output channel 0 can reach 2266950000"):
        IntModel({"x": x, "y": y}, [op], ["x"], ["y"]).prepare()
