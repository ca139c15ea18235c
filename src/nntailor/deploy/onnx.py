"""QDQ ONNX export of an IntModel, built with the ``onnx`` helper API and run with onnxruntime as a peer.

Every int8 tensor of the IntModel is an int8 ONNX tensor of the same name, quantized with the IntModel's exact
float32 scale and int8 zero point. Ops that rescale (conv, depthwise, fully connected, add, mul, average pool,
mean, softmax, logistic) are written as the QDQ format has them (onnxruntime's "Quantize-Dequantize" format):
DequantizeLinear on each int8 input, the float op, the fused ReLU / Clip(0, 6), QuantizeLinear. Weights are int8
with a per-channel DequantizeLinear (``axis`` 0 of ONNX's [O, I/g, KH, KW] / [O, I]), biases int32 at scale
s_in s_w[c] with zero point 0 (the TFLite int8 spec's bias). Ops that only move int8 values (reshape, pad,
concatenation, max pool) act on the int8 tensors directly: TFLite ties their input and output quantization,
so nothing is requantized.

Activations of rank 4 are NCHW inside the graph (ONNX's Conv layout); the graph's inputs and outputs are NHWC
int8, as the .tflite's, with a Transpose after the input and before the output. onnxruntime fuses DQ-op-Q into
its integer kernels (QLinearConv, ...) and requantizes in float, rounding half to even; TFLM requantizes in
fixed point (SaturatingRoundingDoublingHighMul + RoundingDivideByPOT), rounding half away from zero. The two
disagree by an LSB now and then: ``compare_onnx`` counts where and by how much.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nntailor.deploy.intmodel import IntModel, IntOp, QTensor, same_padding
from nntailor.errors import UserError

OPSET = 17  # per-channel DequantizeLinear needs 13; ReduceMean still takes ``axes`` as an attribute at 17
_NHWC_TO_NCHW = {0: 0, 1: 2, 2: 3, 3: 1}  # an NHWC axis of a rank-4 tensor -> its axis in the NCHW graph


class _Builder:
    def __init__(self, model: IntModel) -> None:
        import onnx
        from onnx import helper

        self.onnx, self.helper, self.model = onnx, helper, model
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.count = 0

    def fresh(self, stem: str) -> str:
        self.count += 1
        return f"{stem}#{self.count}"

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op_type: str, inputs: list[str], output: str | None = None, stem: str = "", **attrs) -> str:
        output = output or self.fresh(stem or op_type)
        self.nodes.append(self.helper.make_node(op_type, inputs, [output], name=self.fresh(op_type), **attrs))
        return output

    def qparams(self, t: QTensor) -> tuple[str, str]:
        scale = self.const(self.fresh(f"{t.name}/scale"), np.array(t.scale, np.float32))
        zero_point = self.const(self.fresh(f"{t.name}/zero_point"), np.array(t.zero_point, np.int8))
        return scale, zero_point

    def dequantize(self, name: str) -> str:
        return self.node("DequantizeLinear", [name, *self.qparams(self.model.tensors[name])], stem=f"{name}/dq")

    def quantize(self, value: str, name: str) -> None:
        self.node("QuantizeLinear", [value, *self.qparams(self.model.tensors[name])], output=name)

    def activation(self, value: str, op: IntOp) -> str:
        if op.activation == "relu":
            return self.node("Relu", [value])
        if op.activation == "relu6":
            lo = self.const(self.fresh("relu6/min"), np.array(0.0, np.float32))
            hi = self.const(self.fresh("relu6/max"), np.array(6.0, np.float32))
            return self.node("Clip", [value, lo, hi])
        return value


def _rank(model: IntModel, name: str) -> int:
    return len(model.tensors[name].shape)


def _axis(model: IntModel, name: str, axis: int) -> int:
    """The graph's axis for an NHWC ``axis`` of tensor ``name`` (rank-4 tensors are NCHW in the graph)."""
    rank = _rank(model, name)
    axis = axis % rank
    return _NHWC_TO_NCHW[axis] if rank == 4 else axis


def _spatial_pads(op: IntOp, h: int, w: int) -> list[int]:
    """ONNX ``pads`` [top, left, bottom, right] equal to TFLite's padding (SAME: floor(total / 2) before)."""
    if op.padding != "same":
        return [0, 0, 0, 0]
    kh, kw = op.weight.shape[1:3] if op.kind in ("conv", "depthwise") else op.filter
    (sh, sw), (dh, dw) = op.stride, op.dilation
    _, top, bottom = same_padding(h, kh, sh, dh)
    _, left, right = same_padding(w, kw, sw, dw)
    return [top, left, bottom, right]


def _mac(b: _Builder, op: IntOp) -> str:
    model = b.model
    x = b.dequantize(op.inputs[0])
    scales = np.asarray(op.weight_scale, np.float32).reshape(-1)
    weight = np.asarray(op.weight, np.int8)
    if op.kind == "conv":
        weight = weight.transpose(0, 3, 1, 2)  # [O, KH, KW, I] -> [O, I, KH, KW]
    elif op.kind == "depthwise":
        weight = weight[0].transpose(2, 0, 1)[:, None]  # [1, KH, KW, C*M] -> [C*M, 1, KH, KW]
    channels = weight.shape[0]
    if len(scales) == 1:  # per-tensor (a fully connected layer may be): a scalar scale, no axis
        w_scale, w_zp, axis = np.array(scales[0], np.float32), np.array(0, np.int8), {}
    else:
        w_scale, w_zp, axis = scales, np.zeros(channels, np.int8), {"axis": 0}
    w_name = b.const(f"{op.name}/weight", weight)
    w = b.node("DequantizeLinear", [w_name, b.const(f"{op.name}/weight_scale", w_scale),
                                    b.const(f"{op.name}/weight_zero_point", w_zp)], stem=f"{op.name}/weight/dq",
               **axis)
    inputs = [x, w]
    if op.bias is not None:
        s_in = np.float32(model.tensors[op.inputs[0]].scale)
        bias_scale = (s_in * np.broadcast_to(scales, (channels,))).astype(np.float32)  # s_in s_w[c], as the .tflite
        bias = b.node("DequantizeLinear", [b.const(f"{op.name}/bias", np.asarray(op.bias, np.int32)),
                                           b.const(f"{op.name}/bias_scale", bias_scale),
                                           b.const(f"{op.name}/bias_zero_point", np.zeros(channels, np.int32))],
                      stem=f"{op.name}/bias/dq", axis=0)
        inputs.append(bias)
    if op.kind == "fully_connected":
        if _rank(model, op.inputs[0]) == 4:  # TFLite flattens NHWC: back to NHWC before the flatten
            inputs[0] = b.node("Transpose", [inputs[0]], perm=[0, 2, 3, 1])
        flat = b.node("Flatten", [inputs[0]], axis=1)
        return b.node("Gemm", [flat, w] + inputs[2:], transB=1)
    _, h, w_, c = model.tensors[op.inputs[0]].shape
    attrs = {"strides": list(op.stride), "dilations": list(op.dilation), "pads": _spatial_pads(op, h, w_)}
    if op.kind == "depthwise":
        attrs["group"] = c
    return b.node("Conv", inputs, **attrs)


def _pool(b: _Builder, op: IntOp, x: str) -> str:
    _, h, w, _ = b.model.tensors[op.inputs[0]].shape
    attrs = {"kernel_shape": list(op.filter), "strides": list(op.stride), "pads": _spatial_pads(op, h, w)}
    if op.kind == "maxpool":  # padded taps never win in ONNX MaxPool, as in TFLM's (they are skipped)
        return b.node("MaxPool", [x], **attrs)
    return b.node("AveragePool", [x], count_include_pad=0, **attrs)  # TFLM divides by the taps inside


def _data_movement(b: _Builder, op: IntOp) -> None:
    """Reshape, pad, concatenation, max pool: on the int8 values, quantization shared (TFLite ties it)."""
    model = b.model
    if op.kind == "maxpool":
        y = _pool(b, op, op.inputs[0])
        b.node("Clip", [y, b.const(b.fresh("act_min"), np.array(op.act_min, np.int8)),
                        b.const(b.fresh("act_max"), np.array(op.act_max, np.int8))], output=op.output)
    elif op.kind == "concat":
        b.node("Concat", list(op.inputs), output=op.output, axis=_axis(model, op.inputs[0], op.axis))
    elif op.kind == "pad":
        rank = _rank(model, op.inputs[0])
        order = [0, 3, 1, 2] if rank == 4 else list(range(rank))  # NCHW axes in NHWC terms
        pairs = [op.paddings[a] for a in order]
        pads = np.array([p[0] for p in pairs] + [p[1] for p in pairs], np.int64)
        value = model.tensors[op.output].zero_point if op.pad_value is None else op.pad_value
        b.node("Pad", [op.inputs[0], b.const(f"{op.name}/pads", pads),
                       b.const(f"{op.name}/value", np.array(value, np.int8))], output=op.output, mode="constant")
    elif op.kind == "reshape":
        x = op.inputs[0]
        if _rank(model, x) == 4:
            x = b.node("Transpose", [x], perm=[0, 2, 3, 1])
        out_shape = model.tensors[op.output].shape
        shape = b.const(f"{op.name}/shape", np.array((-1,) + tuple(out_shape[1:]), np.int64))
        if len(out_shape) == 4:
            y = b.node("Reshape", [x, shape])
            b.node("Transpose", [y], output=op.output, perm=[0, 3, 1, 2])
        else:
            b.node("Reshape", [x, shape], output=op.output)


def _op(b: _Builder, op: IntOp) -> None:
    model = b.model
    if op.kind in ("reshape", "pad", "concat", "maxpool"):
        _data_movement(b, op)
        return
    if op.kind in ("conv", "depthwise", "fully_connected"):
        y = _mac(b, op)
    elif op.kind in ("add", "mul"):
        y = b.node("Add" if op.kind == "add" else "Mul", [b.dequantize(name) for name in op.inputs])
    elif op.kind == "avgpool":
        y = _pool(b, op, b.dequantize(op.inputs[0]))
    elif op.kind == "mean":
        axes = [_axis(model, op.inputs[0], a) for a in op.axes]
        rank = _rank(model, op.inputs[0])
        if rank == 4 and not op.keep_dims:  # what remains must be in NHWC order: reduce, back to NHWC, squeeze
            y = b.node("ReduceMean", [b.dequantize(op.inputs[0])], axes=axes, keepdims=1)
            y = b.node("Transpose", [y], perm=[0, 2, 3, 1])
            squeeze = np.array(sorted(a % rank for a in op.axes), np.int64)
            y = b.node("Squeeze", [y, b.const(f"{op.name}/axes", squeeze)])
        else:
            y = b.node("ReduceMean", [b.dequantize(op.inputs[0])], axes=axes, keepdims=int(op.keep_dims))
    elif op.kind == "softmax":
        y = b.node("Softmax", [b.dequantize(op.inputs[0])], axis=_axis(model, op.inputs[0], -1))
    elif op.kind == "logistic":
        y = b.node("Sigmoid", [b.dequantize(op.inputs[0])])
    else:
        raise UserError(f"{op.name}: no ONNX mapping for {op.kind!r}")
    b.quantize(b.activation(y, op), op.output)


def _value_info(helper, onnx, name: str, t: QTensor):
    shape = ["N", *t.shape[1:]]  # NHWC, batch free
    return helper.make_tensor_value_info(name, onnx.TensorProto.INT8, shape)


def onnx_model(model: IntModel):
    """The QDQ ``onnx.ModelProto`` of ``model``, checked by ``onnx.checker`` (full check, shapes inferred)."""
    b = _Builder(model)
    onnx, helper = b.onnx, b.helper
    inputs = []
    for name in model.inputs:
        t = model.tensors[name]
        if len(t.shape) == 4:  # graph input NHWC (the .tflite's), NCHW inside
            inputs.append(_value_info(helper, onnx, f"{name}/nhwc", t))
            b.node("Transpose", [f"{name}/nhwc"], output=name, perm=[0, 3, 1, 2])
        else:
            inputs.append(_value_info(helper, onnx, name, t))
    for op in model.ops:
        _op(b, op)
    outputs = []
    for name in model.outputs:
        t = model.tensors[name]
        if len(t.shape) == 4:
            b.node("Transpose", [name], output=f"{name}/nhwc", perm=[0, 2, 3, 1])
            outputs.append(_value_info(helper, onnx, f"{name}/nhwc", t))
        else:
            outputs.append(_value_info(helper, onnx, name, t))
    graph = helper.make_graph(b.nodes, model.name, inputs, outputs, b.initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="nntailor")
    proto.ir_version = 8  # the IR of opset 17; onnxruntime reads it
    onnx.checker.check_model(proto, full_check=True)
    return proto


def to_onnx(model: IntModel) -> bytes:
    """The serialized QDQ .onnx of ``model`` (int8 NHWC inputs and outputs, batch dimension free)."""
    return onnx_model(model).SerializeToString()


def _session(buf: bytes):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(buf, options, providers=["CPUExecutionProvider"])


def run_onnx(buf: bytes, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """onnxruntime's outputs (int8, NHWC) for the batched int8 NHWC ``inputs``."""
    session = _session(buf)
    feeds = {i.name: np.ascontiguousarray(x) for i, x in zip(session.get_inputs(), inputs, strict=True)}
    return session.run(None, feeds)


def _lsb(ours: np.ndarray, theirs: np.ndarray) -> dict[str, int]:
    diff = np.abs(ours.astype(np.int64) - theirs.astype(np.int64))
    return {"values": int(diff.size), "differ": int((diff > 0).sum()), "max_lsb": int(diff.max()) if diff.size else 0}


def _single_op(model: IntModel, op: IntOp) -> IntModel:
    names = list(dict.fromkeys([*op.inputs, op.output]))
    return IntModel({n: model.tensors[n] for n in names}, [op], list(dict.fromkeys(op.inputs)), [op.output],
                    name=op.name)


def compare_onnx(model: IntModel, inputs: np.ndarray | list[np.ndarray]) -> dict[str, Any]:
    """LSB differences between onnxruntime on the QDQ .onnx and our reference, for the int8 NHWC ``inputs``.

    ``outputs``: per graph output, the whole model run by onnxruntime (differences accumulate through layers).
    ``layers``: per op, that op alone in onnxruntime fed the reference's own inputs to it, so each count is
    what that op's float requantization causes by itself. Each entry: values compared, how many differ, the
    largest difference in LSB, and the op kind.
    """
    inputs = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
    ours = model.run(*inputs)
    theirs = run_onnx(to_onnx(model), inputs)
    outputs = {name: _lsb(ours[name], got) for name, got in zip(model.outputs, theirs, strict=True)}
    layers: dict[str, dict[str, Any]] = {}
    for op in model.ops:
        single = _single_op(model, op)
        got = run_onnx(to_onnx(single), [ours[name] for name in single.inputs])[0]
        layers[op.name] = {"kind": op.kind, **_lsb(ours[op.output], got)}
    return {"runtime": _runtime_name(), "samples": int(len(inputs[0])), "outputs": outputs, "layers": layers}


def _runtime_name() -> str:
    import onnxruntime as ort

    return f"onnxruntime {ort.__version__} (CPUExecutionProvider, default graph optimizations)"
