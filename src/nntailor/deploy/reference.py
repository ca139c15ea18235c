"""The numpy reference interpreter of an IntModel: integers only, with TFLM's loop semantics (Eval).

Follows TFLM's reference integer kernels (integer_ops/conv.h, depthwise_conv.h, fully_connected.h, add.h,
mul.h, pooling.h; concatenation, pad, reshape): accumulate sum w (x - zp_in) in int32 (wrapping, as the int32 C
does), add the bias, requantize with the channel's multiplier and shift (``arith.multiply_by_quantized_multiplier``,
TFLM's double rounding by default, single rounding as an option), add the output zero point, clamp to the
fused activation's range. Padded taps are skipped, which is the same as padding with the input zero point
(x - zp = 0 there). Every tensor is kept, so a layer's output can be read by its name.
"""

from __future__ import annotations

import numpy as np

from nntailor.compress.quant.arith import (
    exp_on_negative_values,
    get_reciprocal,
    logistic_fixed_point,
    multiply_by_quantized_multiplier,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
    wrap_int32,
)
from nntailor.deploy.intmodel import (
    INT8_MAX,
    INT8_MIN,
    LOGISTIC_INPUT_INTEGER_BITS,
    SOFTMAX_DIFF_INTEGER_BITS,
    IntModel,
    IntOp,
    same_padding,
)
from nntailor.errors import UserError


def _spatial_pads(op: IntOp, h: int, w: int) -> tuple[int, int, int, int, int, int]:
    """(out_h, out_w, top, bottom, left, right): input padding that makes every tap of every output exist."""
    kh, kw = op.weight.shape[1:3] if op.kind in ("conv", "depthwise") else op.filter
    (sh, sw), (dh, dw) = op.stride, op.dilation
    if op.padding == "same":
        oh, top, _ = same_padding(h, kh, sh, dh)
        ow, left, _ = same_padding(w, kw, sw, dw)
    else:
        oh, ow, top, left = (h - (kh - 1) * dh - 1) // sh + 1, (w - (kw - 1) * dw - 1) // sw + 1, 0, 0
    bottom = max(0, (oh - 1) * sh + (kh - 1) * dh + 1 - h - top)
    right = max(0, (ow - 1) * sw + (kw - 1) * dw + 1 - w - left)
    return oh, ow, top, bottom, left, right


def _taps(x: np.ndarray, op: IntOp, pad_value: int):
    """Yield (ky, kx, strided input window [N, OH, OW, C]) over the filter taps, on the padded input."""
    n, h, w, c = x.shape
    oh, ow, top, bottom, left, right = _spatial_pads(op, h, w)
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=pad_value)
    kh, kw = op.weight.shape[1:3] if op.kind in ("conv", "depthwise") else op.filter
    (sh, sw), (dh, dw) = op.stride, op.dilation
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dh, kx * dw
            yield ky, kx, xp[:, y0:y0 + (oh - 1) * sh + 1:sh, x0:x0 + (ow - 1) * sw + 1:sw, :]


def _requantize(acc: np.ndarray, op: IntOp, zp_out: int, rounding: str) -> np.ndarray:
    y = multiply_by_quantized_multiplier(wrap_int32(acc), op.multiplier, op.shift, rounding) + zp_out
    return np.clip(y, op.act_min, op.act_max).astype(np.int8)


def _conv(x: np.ndarray, op: IntOp, zp_in: int, zp_out: int, rounding: str) -> np.ndarray:
    xs = x.astype(np.int64) - zp_in  # padded with 0 below: a skipped tap
    w = op.weight.astype(np.int64)  # [O, KH, KW, I]
    acc = None
    for ky, kx, window in _taps(xs, op, 0):
        part = window @ w[:, ky, kx, :].T
        acc = part if acc is None else acc + part
    if op.bias is not None:
        acc = acc + op.bias.astype(np.int64)
    return _requantize(acc, op, zp_out, rounding)


def _depthwise(x: np.ndarray, op: IntOp, zp_in: int, zp_out: int, rounding: str) -> np.ndarray:
    xs = x.astype(np.int64) - zp_in
    w = op.weight.astype(np.int64)[0]  # [KH, KW, C*M]; output channel ic*M + m reads input channel ic
    acc = None
    for ky, kx, window in _taps(xs, op, 0):
        part = np.repeat(window, op.depth_multiplier, axis=-1) * w[ky, kx]
        acc = part if acc is None else acc + part
    if op.bias is not None:
        acc = acc + op.bias.astype(np.int64)
    return _requantize(acc, op, zp_out, rounding)


def _fully_connected(x: np.ndarray, op: IntOp, zp_in: int, zp_out: int, rounding: str) -> np.ndarray:
    rows = x.reshape(-1, op.weight.shape[1]).astype(np.int64) - zp_in
    acc = rows @ op.weight.astype(np.int64).T
    if op.bias is not None:
        acc = acc + op.bias.astype(np.int64)
    return _requantize(acc, op, zp_out, rounding)


def _add(a: np.ndarray, b: np.ndarray, op: IntOp, zps: tuple[int, int, int], rounding: str) -> np.ndarray:
    from nntailor.deploy.intmodel import ADD_LEFT_SHIFT

    (m1, s1), (m2, s2) = op.input_multipliers
    # int32 in C: (x - zp) 2^20 stays below 2^28, no wrap
    x1 = (a.astype(np.int64) - zps[0]) << ADD_LEFT_SHIFT
    x2 = (b.astype(np.int64) - zps[1]) << ADD_LEFT_SHIFT
    total = (multiply_by_quantized_multiplier(x1, m1, s1, rounding)
             + multiply_by_quantized_multiplier(x2, m2, s2, rounding))
    return _requantize(total, op, zps[2], rounding)


def _mul(a: np.ndarray, b: np.ndarray, op: IntOp, zps: tuple[int, int, int], rounding: str) -> np.ndarray:
    product = (a.astype(np.int64) - zps[0]) * (b.astype(np.int64) - zps[1])
    return _requantize(product, op, zps[2], rounding)


def _avgpool(x: np.ndarray, op: IntOp) -> np.ndarray:
    """integer_ops/pooling.h AveragePool: sum of the taps inside the image, divided by their count with
    rounding half away from zero ((sum +- count/2) / count, C's truncating division)."""
    n, h, w, c = x.shape
    inside = np.ones((1, h, w, 1), np.int64)
    total = count = None
    for (_, _, window), (_, _, ones) in zip(_taps(x.astype(np.int64), op, 0), _taps(inside, op, 0), strict=True):
        total = window if total is None else total + window
        count = ones if count is None else count + ones
    half = count // 2
    rounded = np.where(total > 0, (total + half) // count, -((-total + half) // count))
    return np.clip(rounded, op.act_min, op.act_max).astype(np.int8)


def _maxpool(x: np.ndarray, op: IntOp) -> np.ndarray:
    best = None
    for _, _, window in _taps(x.astype(np.int64), op, np.iinfo(np.int64).min):
        best = window if best is None else np.maximum(best, window)
    return np.clip(best, op.act_min, op.act_max).astype(np.int8)


def _softmax(x: np.ndarray, op: IntOp, rounding: str) -> np.ndarray:
    """reference/softmax.h, int8 in and out, over the last axis: differences from the row maximum rescaled to
    Q5.26, exp in Q0.31 (gemmlowp), summed in Q12.19, one reciprocal, each exp times it, scaled to 1/256 - 128."""
    xs = x.astype(np.int64)
    diff = xs - xs.max(axis=-1, keepdims=True)
    inside = diff >= op.diff_min
    # MultiplyByQuantizedMultiplierGreaterThanOne: the shift is a left shift, no rounding divide
    scaled = multiply_by_quantized_multiplier(diff, op.multiplier, op.shift, rounding)
    exps = exp_on_negative_values(scaled, SOFTMAX_DIFF_INTEGER_BITS)
    total = np.where(inside, rounding_divide_by_pot(exps, 12), 0).sum(axis=-1, keepdims=True)  # Rescale<12>
    reciprocal, bits_over_unit = get_reciprocal(total, 12)
    out = rounding_divide_by_pot(saturating_rounding_doubling_high_mul(reciprocal, exps), bits_over_unit + 31 - 8)
    out = np.clip(out - 128, INT8_MIN, INT8_MAX)
    return np.where(inside, out, INT8_MIN).astype(np.int8)


def _logistic(x: np.ndarray, op: IntOp, zp_in: int, rounding: str) -> np.ndarray:
    """integer_ops/logistic.h: inputs beyond the radius saturate; inside, Q4.27, gemmlowp's logistic in Q0.31,
    then to 1/256 steps minus 128."""
    diff = x.astype(np.int64) - zp_in
    q4 = multiply_by_quantized_multiplier(diff, op.multiplier, op.shift, rounding)
    y = rounding_divide_by_pot(logistic_fixed_point(q4, LOGISTIC_INPUT_INTEGER_BITS), 31 - 8) - 128
    y = np.clip(y, INT8_MIN, INT8_MAX)
    radius = -op.diff_min
    return np.where(diff <= -radius, INT8_MIN, np.where(diff >= radius, INT8_MAX, y)).astype(np.int8)


def run_op(op: IntOp, values: dict[str, np.ndarray], model: IntModel, rounding: str = "double") -> np.ndarray:
    args = [values[name] for name in op.inputs]
    zps = [model.tensors[name].zero_point for name in op.inputs]
    out = model.tensors[op.output]
    if op.kind == "conv":
        return _conv(args[0], op, zps[0], out.zero_point, rounding)
    if op.kind == "depthwise":
        return _depthwise(args[0], op, zps[0], out.zero_point, rounding)
    if op.kind == "fully_connected":
        return _fully_connected(args[0], op, zps[0], out.zero_point, rounding).reshape(
            (-1,) + out.shape[1:])
    if op.kind in ("add", "mul"):
        if args[0].shape != args[1].shape:
            raise UserError(f"{op.name}: {op.kind} of shapes {args[0].shape} and {args[1].shape}: broadcasting is "
                            "not supported")
        fn = _add if op.kind == "add" else _mul
        return fn(args[0], args[1], op, (zps[0], zps[1], out.zero_point), rounding)
    if op.kind == "avgpool":
        return _avgpool(args[0], op)
    if op.kind == "maxpool":
        return _maxpool(args[0], op)
    if op.kind == "softmax":
        return _softmax(args[0], op, rounding)
    if op.kind == "logistic":
        return _logistic(args[0], op, zps[0], rounding)
    if op.kind == "mean":  # reduce.h QuantizedMeanOrSum: int32 sum, minus n zp_in, then the folded multiplier
        n = int(np.prod([args[0].shape[a] for a in op.axes]))
        total = args[0].astype(np.int64).sum(axis=op.axes, keepdims=op.keep_dims) - zps[0] * n
        y = multiply_by_quantized_multiplier(wrap_int32(total), op.multiplier, op.shift, rounding) + out.zero_point
        return np.clip(y, INT8_MIN, INT8_MAX).astype(np.int8)
    if op.kind == "concat":
        return np.concatenate(args, axis=op.axis)
    if op.kind == "pad":  # TFLM pad.cc: the pad value is the output zero point unless PADV2 gives one
        value = out.zero_point if op.pad_value is None else op.pad_value
        return np.pad(args[0], op.paddings, constant_values=value).astype(np.int8)
    if op.kind == "reshape":
        return args[0].reshape((args[0].shape[0],) + out.shape[1:])
    raise UserError(f"{op.name}: no reference kernel for {op.kind!r}")


def interpret(model: IntModel, inputs: list[np.ndarray], rounding: str = "double") -> dict[str, np.ndarray]:
    """Run the model on int8 inputs (NHWC, any batch); every tensor's value by name."""
    if rounding not in ("double", "single"):
        raise UserError(f"rounding must be 'double' or 'single', got {rounding!r}")
    if len(inputs) != len(model.inputs):
        raise UserError(f"{model.name} takes {len(model.inputs)} input(s), got {len(inputs)}")
    values: dict[str, np.ndarray] = {}
    for name, x in zip(model.inputs, inputs, strict=True):
        x = np.asarray(x)
        expected = model.tensors[name].shape[1:]
        if x.dtype != np.int8 or tuple(x.shape[1:]) != tuple(expected):
            raise UserError(f"input {name!r} must be int8 of shape (N, {', '.join(map(str, expected))}), got "
                            f"{x.dtype} {tuple(x.shape)}")
        values[name] = x
    for op in model.ops:
        values[op.output] = run_op(op, values, model, rounding)
    return values
