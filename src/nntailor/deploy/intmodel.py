"""IntModel: an integer-only graph in the TFLite int8 spec, with every constant computed once (TFLM's Prepare).

Tensors are int8, per-tensor scale and zero point, activations NHWC. Conv, depthwise and fully connected ops
carry int8 weights symmetric per output channel (conv axis 0 [O, KH, KW, I], depthwise axis 3 [1, KH, KW, C*M],
fully connected axis 0 [O, I]) and int32 biases at scale s_in s_w[c]. ``prepare`` computes, as TFLM's kernels
do in their Prepare: per-channel multipliers and shifts (effective scale in double, QuantizeMultiplier), ADD's
input and output multipliers (left shift 20), MUL's multiplier, and the fused-activation clamps. The reference
interpreter (``reference.py``), the .tflite exporter and the C generator read these constants; none recomputes
them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from nntailor.compress.quant.arith import (
    calculate_input_radius,
    logistic_input_multiplier,
    preprocess_softmax_scaling,
    quantize_multiplier,
)
from nntailor.cost.fusion import tf_same_padding
from nntailor.errors import UserError

# TFLite builtin ops this IR holds (kind -> what it is)
OPS = frozenset({
    "conv", "depthwise", "fully_connected", "add", "mul", "concat", "avgpool", "maxpool", "mean", "pad", "reshape",
    "softmax", "logistic",
})
MAC_OPS = frozenset({"conv", "depthwise", "fully_connected"})
ACTIVATIONS = ("none", "relu", "relu6")
INT8_MIN, INT8_MAX = -128, 127
ADD_LEFT_SHIFT = 20  # TFLM add.cc: int8 inputs are scaled up by 2^20 before their multipliers
SOFTMAX_DIFF_INTEGER_BITS = 5  # softmax.cc: input differences in Q5.26
SOFTMAX_OUTPUT = (1.0 / 256, -128)  # the int8 softmax output the TFLite spec fixes: scale 1/256, zero point -128
LOGISTIC_INPUT_INTEGER_BITS = 4  # logistic.cc: the input in Q4.27


@dataclass
class QTensor:
    """An int8 tensor: real = (q - zero_point) scale. ``scale`` is the float32 value the .tflite stores."""

    name: str
    shape: tuple[int, ...]
    scale: float
    zero_point: int

    def __post_init__(self) -> None:
        self.scale = float(np.float32(self.scale))
        self.zero_point = int(self.zero_point)
        if not self.scale > 0 or not math.isfinite(self.scale):
            raise UserError(f"tensor {self.name!r}: scale must be positive and finite, got {self.scale}")
        if not INT8_MIN <= self.zero_point <= INT8_MAX:
            raise UserError(f"tensor {self.name!r}: int8 zero point must be in [-128, 127], got {self.zero_point}")


@dataclass
class IntOp:
    """One TFLite op. Geometry and constants as the .tflite holds them; ``prepare`` fills the Prepare fields."""

    name: str  # the layer (module path) it comes from: what errors and per-layer checks name
    kind: str
    inputs: list[str]
    output: str
    activation: str = "none"
    weight: np.ndarray | None = None  # int8
    weight_scale: np.ndarray | None = None  # float32, one per output channel (or one for the tensor)
    bias: np.ndarray | None = None  # int32
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    padding: str = "valid"  # TFLite Padding: "same" (floor(total/2) top/left) or "valid"
    filter: tuple[int, int] = (1, 1)  # pools
    depth_multiplier: int = 1
    paddings: tuple[tuple[int, int], ...] = ()  # PAD: (before, after) per NHWC axis
    pad_value: int | None = None  # PAD: None pads with the zero point (PAD); an int8 value makes it PADV2
    axis: int = -1  # CONCATENATION
    axes: tuple[int, ...] = ()  # MEAN: reduced NHWC axes
    keep_dims: bool = False  # MEAN
    # Prepare
    multiplier: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    shift: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    act_min: int = INT8_MIN
    act_max: int = INT8_MAX
    input_multipliers: tuple[tuple[int, int], ...] = ()  # ADD: (multiplier, shift) of each input
    diff_min: int = 0  # SOFTMAX: input differences below it give exp = 0; LOGISTIC: minus the input radius

    def __post_init__(self) -> None:
        if self.kind not in OPS:
            raise UserError(f"{self.name}: unsupported int8 op {self.kind!r}; supported: {', '.join(sorted(OPS))}")
        if self.activation not in ACTIVATIONS:
            raise UserError(f"{self.name}: fused activation must be one of {ACTIVATIONS}, got {self.activation!r}")


@dataclass
class IntModel:
    """Tensors by name, ops in execution order, graph inputs and outputs (tensor names)."""

    tensors: dict[str, QTensor]
    ops: list[IntOp]
    inputs: list[str]
    outputs: list[str]
    name: str = "model"

    def prepare(self) -> IntModel:
        for op in self.ops:
            prepare_op(op, self.tensors)
        return self

    def run(self, *inputs: np.ndarray, rounding: str = "double") -> dict[str, np.ndarray]:
        """Every tensor's int8 value by name, from the numpy reference interpreter."""
        from nntailor.deploy.reference import interpret

        return interpret(self, list(inputs), rounding=rounding)

    def quantize_input(self, x: np.ndarray, index: int = 0) -> np.ndarray:
        """Float NHWC input to the int8 the model reads: round half to even, as the compress layer's quantize."""
        t = self.tensors[self.inputs[index]]
        q = np.round(np.asarray(x, np.float32) / np.float32(t.scale)) + t.zero_point
        return np.clip(q, INT8_MIN, INT8_MAX).astype(np.int8)

    def dequantize(self, q: np.ndarray, name: str) -> np.ndarray:
        t = self.tensors[name]
        return (q.astype(np.float32) - t.zero_point) * np.float32(t.scale)


def activation_range(activation: str, tensor: QTensor) -> tuple[int, int]:
    """TFLM's CalculateActivationRangeQuantized: zp + round-half-away(f / scale), f / scale in float32."""

    def quantize(f: float) -> int:
        ratio = float(np.float32(f) / np.float32(tensor.scale))
        return tensor.zero_point + int(math.copysign(math.floor(abs(ratio) + 0.5), ratio))

    if activation == "relu":
        return max(INT8_MIN, quantize(0.0)), INT8_MAX
    if activation == "relu6":
        return max(INT8_MIN, quantize(0.0)), min(INT8_MAX, quantize(6.0))
    return INT8_MIN, INT8_MAX


def prepare_op(op: IntOp, tensors: dict[str, QTensor]) -> None:
    out = tensors[op.output]
    op.act_min, op.act_max = activation_range(op.activation, out)
    if op.kind in MAC_OPS:
        s_in = tensors[op.inputs[0]].scale
        scales = np.asarray(op.weight_scale, np.float32).reshape(-1)
        if len(scales) == 1 and op.kind == "fully_connected":
            # per-tensor fully connected (GetQuantizedConvolutionMultipler): the product in float32, then double
            effective = [float(np.float32(s_in) * scales[0]) / out.scale]
        else:  # PopulateConvolutionQuantizationParams / per-channel FC: all in double
            effective = [s_in * float(s) / out.scale for s in scales]
        _check_accumulator(op, tensors[op.inputs[0]])
        pairs = [quantize_multiplier(e) for e in effective]
        op.multiplier = np.array([m for m, _ in pairs], np.int64)
        op.shift = np.array([s for _, s in pairs], np.int64)
    elif op.kind == "add":
        s1, s2 = (tensors[name].scale for name in op.inputs)
        twice_max = 2.0 * max(s1, s2)
        op.input_multipliers = (quantize_multiplier(s1 / twice_max), quantize_multiplier(s2 / twice_max))
        m, s = quantize_multiplier(twice_max / ((1 << ADD_LEFT_SHIFT) * out.scale))
        op.multiplier, op.shift = np.array([m], np.int64), np.array([s], np.int64)
    elif op.kind == "mul":
        s1, s2 = (tensors[name].scale for name in op.inputs)
        m, s = quantize_multiplier(s1 * s2 / out.scale)
        op.multiplier, op.shift = np.array([m], np.int64), np.array([s], np.int64)
    elif op.kind == "softmax":
        if (out.scale, out.zero_point) != SOFTMAX_OUTPUT:
            raise UserError(f"{op.name}: an int8 softmax output must have scale 1/256 and zero point -128, got "
                            f"({out.scale}, {out.zero_point})")
        # softmax.cc CalculateSoftmaxParams (beta 1): PreprocessSoftmaxScaling and CalculateInputRadius
        m, left = preprocess_softmax_scaling(1.0, tensors[op.inputs[0]].scale, SOFTMAX_DIFF_INTEGER_BITS)
        op.multiplier, op.shift = np.array([m], np.int64), np.array([left], np.int64)
        op.diff_min = -calculate_input_radius(SOFTMAX_DIFF_INTEGER_BITS, left)
    elif op.kind == "logistic":
        if (out.scale, out.zero_point) != SOFTMAX_OUTPUT:
            raise UserError(f"{op.name}: an int8 logistic output must have scale 1/256 and zero point -128, got "
                            f"({out.scale}, {out.zero_point})")
        m, left = logistic_input_multiplier(tensors[op.inputs[0]].scale, LOGISTIC_INPUT_INTEGER_BITS)
        op.multiplier, op.shift = np.array([m], np.int64), np.array([left], np.int64)
        op.diff_min = -calculate_input_radius(LOGISTIC_INPUT_INTEGER_BITS, left)
    elif op.kind == "mean":
        # reduce.cc PrepareMeanOrSum: s_in / s_out in double; QuantizedMeanOrSum then folds 1/n into it:
        # shift_n = floor(log2 n) (at most 32 and 31 + shift), M' = (M 2^shift_n) / n truncated, shift - shift_n
        x = tensors[op.inputs[0]]
        m, s = quantize_multiplier(x.scale / out.scale)
        n = math.prod(x.shape[a] for a in op.axes)
        shift_n = min(n.bit_length() - 1, 32, 31 + s)
        op.multiplier = np.array([(m << shift_n) // n], np.int64)
        op.shift = np.array([s - shift_n], np.int64)
    elif op.kind in ("concat", "avgpool", "maxpool", "pad", "reshape"):
        # TFLite's int8 kernels for these do not rescale: input and output share scale and zero point
        for name in op.inputs:
            t = tensors[name]
            if (t.scale, t.zero_point) != (out.scale, out.zero_point):
                raise UserError(f"{op.name}: {op.kind} needs input {name!r} and output {op.output!r} at the same "
                                f"scale and zero point, got ({t.scale}, {t.zero_point}) and "
                                f"({out.scale}, {out.zero_point})")


def _check_accumulator(op: IntOp, x: QTensor) -> None:
    """The int32 accumulator's worst case, sum |w| max|x - zp| + |bias| per channel, must stay below 2^31 (TFLM
    accumulates in int32 and a wrap there is undefined behaviour in C): otherwise name the layer."""
    span = max(INT8_MAX - x.zero_point, x.zero_point - INT8_MIN)
    w = np.abs(np.asarray(op.weight, np.int64))
    axes = {"conv": (1, 2, 3), "depthwise": (0, 1, 2), "fully_connected": (1,)}[op.kind]
    bound = w.sum(axis=axes) * span
    if op.bias is not None:
        bound = bound + np.abs(np.asarray(op.bias, np.int64))
    worst = int(bound.max()) if bound.size else 0
    if worst > (1 << 31) - 1:
        channel = int(np.argmax(bound))
        raise UserError(f"{op.name}: the int32 accumulator of output channel {channel} can reach {worst} > 2^31 - 1; "
                        "its bias or input range is too large for its weight scale")


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int, int]:
    """(output size, padding before, padding after) of TF 'same': floor(total/2) before (ComputePadding). The
    padding is the cost model's own (``cost.fusion.tf_same_padding``), so deploy and analyze fold pads alike."""
    before, after = tf_same_padding(size, kernel, stride, dilation)
    return -(-size // stride), before, after


def valid_size(size: int, kernel: int, stride: int, dilation: int = 1) -> int:
    effective = (kernel - 1) * dilation + 1
    return (size - effective + stride) // stride
