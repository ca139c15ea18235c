"""Random single-op IntModels (shapes, strides, paddings, dilations, scales, zero points, biases) for the
property test against TFLM (tests/test_deploy_layers.py) and the deploy benchmark."""

from __future__ import annotations

import numpy as np

from nntailor.deploy.intmodel import IntModel, IntOp, QTensor, same_padding, valid_size

KINDS = ("conv", "depthwise", "fully_connected", "add", "mul", "avgpool", "maxpool", "mean", "concat", "pad",
         "reshape", "softmax", "logistic")


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
        value = int(rng.integers(-128, 128)) if rng.integers(0, 2) else None  # PADV2's constant, or PAD
        op = IntOp("layer", kind, inputs, "y", paddings=paddings, pad_value=value)
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


def random_inputs(rng: np.random.Generator, model: IntModel, n: int) -> list[np.ndarray]:
    return [rng.integers(-128, 128, (n,) + model.tensors[name].shape[1:]).astype(np.int8) for name in model.inputs]
