"""Hardware-free counts of one layer: MACs, other arithmetic, parameters, bytes, arithmetic intensity.

MACs follow the published convention (REFERENCES.md): multiply-accumulates of conv, linear and
matmul only; no bias, BN, activation or pooling. Everything else a layer computes is counted apart
as ``other_ops`` so latency and energy still see it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.weak import WeakIdKeyDictionary

from nntailor.cost.count_like import einsum_macs
from nntailor.graph.ops import ALIAS_KINDS
from nntailor.graph.types import Layer, numel

# Arithmetic per output element of non-MAC ops, for pricing only (they are not MACs).
# BN is a scale and a shift; the transcendental activations are taken as 4 ops (a table lookup or a
# short polynomial on an MCU), softmax as exp + sum + divide + max-subtract + compare.
_OPS_PER_ELEMENT = {
    "batchnorm": 2, "layernorm": 5, "groupnorm": 5, "lrn": 5,
    "relu": 1, "relu6": 2, "leaky_relu": 2, "hardswish": 3, "hardsigmoid": 2,
    "gelu": 4, "silu": 4, "sigmoid": 4, "tanh": 4, "softmax": 5,
    "add": 1, "mul": 1, "div": 1,
}


def _kernel(layer: Layer) -> tuple[int, ...]:
    k = layer.attrs.get("kernel_size")
    if k is None and len(layer.input_shapes) > 1:  # functional conv: weight is the second input
        return tuple(layer.input_shapes[1][2:])
    if isinstance(k, int):
        rank = max(len(layer.output_shape) - 2, 1)
        return (k,) * rank
    return tuple(k or ())


def _conv_macs(layer: Layer) -> int:
    if "in_channels" in layer.attrs:
        per_output = layer.attrs["in_channels"] // layer.attrs.get("groups", 1) * math.prod(_kernel(layer))
    else:  # F.conv2d(x, w): w is (C_out, C_in/groups, k...)
        per_output = numel(layer.input_shapes[1][1:])
    return numel(layer.output_shape) * per_output


def _conv_transpose_macs(layer: Layer) -> int:
    # Every input element is scattered through a (C_out/groups) x k x k kernel.
    if "out_channels" in layer.attrs:
        per_input = layer.attrs["out_channels"] // layer.attrs.get("groups", 1) * math.prod(_kernel(layer))
    else:  # weight is (C_in, C_out/groups, k...)
        per_input = numel(layer.input_shapes[1][1:])
    return numel(layer.input_shape) * per_input


def _linear_macs(layer: Layer) -> int:
    in_features = layer.attrs.get("in_features") or layer.input_shape[-1]
    return numel(layer.output_shape) * in_features


def _matmul_macs(layer: Layer) -> int:
    # (..., n, k) @ (..., k, m): every output element is a k-long dot product; 1-D operands too.
    return numel(layer.output_shape) * layer.input_shapes[0][-1]


def _attention_parts(layer: Layer) -> tuple[int, int]:
    """nn.MultiheadAttention as (projection MACs, score MACs): q, k, v and output projections multiply
    weights; QK^T and attention x V multiply two activations."""
    q = layer.input_shapes[0]
    k = layer.input_shapes[1] if len(layer.input_shapes) > 1 else q
    batch_first = bool(layer.attrs.get("batch_first"))
    if len(q) == 2:  # unbatched (L, E)
        n, tgt, src = 1, q[0], k[0]
    elif batch_first:
        n, tgt, src = q[0], q[1], k[1]
    else:
        n, tgt, src = q[1], q[0], k[0]
    e = layer.attrs.get("embed_dim") or q[-1]
    kdim, vdim = layer.attrs.get("kdim") or e, layer.attrs.get("vdim") or e
    projections = 2 * tgt * e * e + src * kdim * e + src * vdim * e
    return n * projections, n * 2 * tgt * src * e


def _attention_macs(layer: Layer) -> int:
    return sum(_attention_parts(layer))


def _sdpa_macs(layer: Layer) -> int:
    q, k, v = layer.input_shapes[:3]
    batch = numel(q[:-2])
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


_MAC_RULES = {
    "conv": _conv_macs,
    "conv_transpose": _conv_transpose_macs,
    "linear": _linear_macs,
    "matmul": _matmul_macs,
    # the bmm calls aten's einsum makes, left to right: what runs, and what FlopCounterMode counts
    "einsum": einsum_macs,
    "attention": _attention_macs,
    "sdpa": _sdpa_macs,
}


def macs(layer: Layer) -> int:
    rule = _MAC_RULES.get(layer.op)
    return int(rule(layer)) if rule else 0


def weight_macs_fraction(layer: Layer) -> float:
    """Share of the layer's MACs that multiply a stored weight (the rest multiply two activations)."""
    if layer.op == "attention":
        projections, scores = _attention_parts(layer)
        return projections / (projections + scores) if projections + scores else 0.0
    return 1.0 if layer.op in ("conv", "conv_transpose", "linear") and layer.all_weights else 0.0


# count_nonzero reads every weight (VGG-16: 138M of them, most of an analysis) although weights rarely change
# between analyses. The count is kept per tensor, weakly (the model is not kept alive), with what changes
# whenever its contents can have changed through autograd's view of it: the in-place version counter (in-place
# ops, under no_grad too, and writes through views or detach(), which share it), and the data pointer, shape,
# strides and dtype (``.data =`` or ``set_()`` swap the storage). Writes that bypass the version counter (through
# ``.data[...]``, a numpy view) are not seen: ``clear_count_cache()`` forgets every count.
_COUNTS: WeakIdKeyDictionary = WeakIdKeyDictionary()


def _state(t: torch.Tensor) -> tuple:
    return t._version, t.data_ptr(), t.shape, t.stride(), t.dtype, t.device


_CHUNK = 1 << 24  # elements per pass: the temporary bool array stays at 16 MiB


def _count(t: torch.Tensor) -> int:
    """Non-zero elements. At one thread torch's count is ~15x slower on a pruned tensor than on a dense one
    (102M float32 weights, 38% zeros: 840 ms against 51 ms: a data-dependent branch per element); numpy's
    cast to bool and count of the bools take ~55 ms either way, so contiguous CPU floats are counted there,
    in chunks. -0.0 casts to False and NaN to True, as ``torch.count_nonzero`` counts them."""
    t = t.detach()
    if t.device.type != "cpu" or t.dtype not in (torch.float32, torch.float64) or not t.is_contiguous():
        return int(torch.count_nonzero(t))
    flat = t.numpy().reshape(-1)
    return sum(int(np.count_nonzero(flat[i:i + _CHUNK].astype(bool))) for i in range(0, flat.size, _CHUNK))


def count_nonzero(t: torch.Tensor) -> int:
    """``torch.count_nonzero(t)``, recounted only when ``t`` may have changed since it was last counted."""
    try:
        state = _state(t)
    except RuntimeError:  # inference-mode tensors have no version counter: nothing to key on
        return _count(t)
    cached = _COUNTS.get(t)
    if cached is not None and cached[0] == state:
        return cached[1]
    count = _count(t)
    _COUNTS[t] = (state, count)
    return count


def record_count(t: torch.Tensor, count: int) -> None:
    """Record that ``t`` holds ``count`` non-zeros, for a stand-in weight whose count is known without reading it
    (a search design compiled to a graph without building its model); the usual invalidation rules apply."""
    _COUNTS[t] = (_state(t), count)


def clear_count_cache() -> None:
    """Forget every cached non-zero count (after writes that bypass the version counter, e.g. via ``.data``)."""
    _COUNTS.clear()


def nonzero_counts(layer: Layer) -> dict[str, int]:
    """Non-zero elements of each parameter the layer reads (owned or shared): counted once per analysis."""
    return {name: count_nonzero(w) for name, w in layer.all_weights.items()}


def nonzero_fraction(layer: Layer, counts: dict[str, int] | None = None) -> float:
    """Fraction of the layer's multiplying weights that are not exactly zero (biases excluded)."""
    counts = nonzero_counts(layer) if counts is None else counts
    total = nonzero = 0
    for name, w in layer.all_weights.items():
        if "bias" in name or w.dim() < 2:
            continue
        total += w.numel()
        nonzero += counts[name]
    return nonzero / total if total else 1.0


def nz_macs(layer: Layer, counts: dict[str, int] | None = None) -> int:
    """MACs whose weight is non-zero: what zero-skipping hardware or a sparse kernel executes."""
    m = macs(layer)
    if not m:
        return 0
    weighted = weight_macs_fraction(layer)
    return int(round(m * (1 - weighted) + m * weighted * nonzero_fraction(layer, counts)))


def other_ops(layer: Layer) -> int:
    """Arithmetic that is not a MAC: normalization, activations, pooling, element-wise, reductions."""
    out = layer.output_numel
    if layer.op in _OPS_PER_ELEMENT:
        return _OPS_PER_ELEMENT[layer.op] * out
    if layer.op in ("maxpool", "avgpool"):
        return out * math.prod(_kernel(layer))
    if layer.op in ("adaptive_avgpool", "adaptive_maxpool", "reduce"):
        return layer.activation_input_numel
    return 0


def param_bytes(param: torch.Tensor, name: str, bits: int, *, int32_bias: bool) -> int:
    """Bytes to store one parameter tensor: biases stay int32 under integer quantization (TFLite)."""
    if int32_bias and bits < 32 and "bias" in name:
        return param.numel() * 4
    return math.ceil(param.numel() * bits / 8)


def weight_bytes(layer: Layer, bits: int, *, shared: bool = False) -> int:
    """Bytes of the weights the layer owns; with ``shared``, of every weight it reads (its traffic)."""
    weights = layer.all_weights if shared else layer.weights
    return sum(math.ceil(w.numel() * bits / 8) for w in weights.values())


# int32 multiplier + int32 shift per output channel (deploy/c.py's _mac_block arrays)
QUANT_PARAM_BYTES = 8


def flash_bytes(layer: Layer, bits: int) -> int:
    """Stored size as the deployed integer model: weights at ``bits``, int32 biases, and per output channel of
    quantized conv/linear weights the requantization constants the C of ``deploy/c.py`` holds in flash: an int32
    multiplier and an int32 shift (TFLite spec: M = M0 * 2^-n; TFLM's Prepare computes the same two int32 per
    channel, kept in its arena's persistent tail; the .tflite's float32 scale is not read at run time)."""
    total = sum(param_bytes(w, n, bits, int32_bias=True) for n, w in layer.weights.items())
    if bits < 16:  # per output channel: axis 1 of a transposed conv's weight, axis 0 otherwise
        axis = 1 if layer.op == "conv_transpose" else 0
        total += sum(QUANT_PARAM_BYTES * w.shape[axis] for n, w in layer.weights.items()
                     if w.dim() >= 2 and "bias" not in n)
    return total


def act_elements(layer: Layer, reads: int | None = None) -> tuple[int, int]:
    """Activation elements read and written (alias ops move nothing; parameters are not activations).
    ``reads`` overrides the input count: a conv that absorbed a zero pad reads the unpadded tensor."""
    if layer.op in ALIAS_KINDS:
        return 0, 0
    return layer.activation_input_numel if reads is None else reads, layer.output_numel


def arith_intensity(layer: Layer) -> float:
    """MACs per element moved (weights + input + output), as in Keutzer's table (seed 004)."""
    m = macs(layer)
    if not m:
        return 0.0
    reads, writes = act_elements(layer)
    return m / (layer.weight_numel + reads + writes)


def op_class(layer: Layer) -> str:
    """Which cycles-per-MAC row of a target applies: depthwise and 1x1 convs run at their own speed."""
    if layer.op in ("conv", "conv_transpose"):
        groups = layer.attrs.get("groups", 1)
        if groups > 1 and groups == layer.attrs.get("in_channels"):
            return "depthwise"
        if groups == 1 and all(k == 1 for k in _kernel(layer)):
            return "pointwise"
        return "conv"
    if layer.op == "linear":
        return "linear"
    if layer.op in ("matmul", "einsum", "attention", "sdpa"):
        return "matmul"
    return "default"
