"""Which layers disappear into a neighbour when the model is deployed, as the TFLite converter does it.

BatchNorm right after a conv or linear is folded into its weights and bias (seed 000's W_BN.W, W_BN.b + b_BN);
ReLU and ReLU6 become the fused activation (a clamp in the requantization) of the conv, linear, add,
mul or pool that feeds them. Either needs the producer to have no other consumer. A zero pad whose only
reader is a conv, a depthwise conv or a max pool over non-negative values becomes that op's SAME or VALID
padding (no converted MLPerf Tiny file holds a PAD op). A fused layer keeps its parameters in the published
count but costs no buffer, no traffic, no time and no flash.

``fused_layers`` maps a folded BN or fused activation to its producer (the host it runs in) and a folded pad
to its consumer (the conv or pool that absorbs it); the deploy exporters read this contract.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from nntailor.graph.types import Graph, Layer

_FOLDS_BN = frozenset({"conv", "conv_transpose", "linear"})
_TAKES_ACTIVATION = frozenset({"conv", "conv_transpose", "linear", "add", "mul", "maxpool", "avgpool"})
_FUSABLE_ACTIVATIONS = frozenset({"relu", "relu6"})
_ZERO_PAD_MODULES = frozenset({"ZeroPad1d", "ZeroPad2d"})
_CONSTANT_PAD_MODULES = frozenset({"ConstantPad1d", "ConstantPad2d"})
_NON_NEGATIVE = frozenset({"relu", "relu6"})


def fused_layers(graph: Graph) -> dict[str, str]:
    """Map each fused layer's name to the layer it is merged into: the conv of conv-BN-ReLU for the BN and the
    ReLU, the conv (or max pool) that reads it for a zero pad."""
    consumers: dict[str, list[Layer]] = {}
    live = [layer for layer in graph.layers if not layer.attrs.get("dead")]  # a dropped result reads nothing
    for layer in live:
        for src in layer.inputs:
            consumers.setdefault(src, []).append(layer)
    outputs = set(graph.output_names)
    by_name = {layer.name: layer for layer in graph.layers}

    def sole_consumer(name: str) -> Layer | None:
        readers = consumers.get(name, [])
        return readers[0] if len(readers) == 1 and name not in outputs else None

    fused: dict[str, str] = {}
    for layer in live:
        if layer.op == "pad":
            reader = sole_consumer(layer.name)
            if reader is not None and _pad_folds(layer, reader, by_name):
                fused[layer.name] = reader.name
            continue
        if len(layer.inputs) != 1 or layer.inputs[0] not in by_name or sole_consumer(layer.inputs[0]) is None:
            continue
        producer = by_name[layer.inputs[0]]
        host = fused.get(producer.name, producer.name)
        if layer.op == "batchnorm" and producer.op in _FOLDS_BN:
            fused[layer.name] = host
        elif layer.op in _FUSABLE_ACTIVATIONS and (producer.op in _TAKES_ACTIVATION or producer.name in fused):
            # after a folded BN, the activation fuses into the conv that absorbed the BN
            fused[layer.name] = host
    return fused


def tf_same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's SAME padding of one axis, (before, after): out = ceil(size / stride),
    total = max((out - 1)·stride + (kernel - 1)·dilation + 1 - size, 0), before = floor(total / 2)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def zero_pad_amounts(pad: Layer) -> list[tuple[int, int]] | None:
    """(before, after) per spatial axis, first axis first, of a constant-zero pad; None for any other pad
    (reflect, replicate, a non-zero value, a crop, padding of the channel or batch axis, amounts not captured)."""
    attrs = pad.attrs
    if pad.target in _ZERO_PAD_MODULES:
        amounts: Any = attrs.get("padding")
    elif pad.target in _CONSTANT_PAD_MODULES:
        amounts = attrs.get("padding") if attrs.get("value") == 0 else None
    else:  # F.pad(x, pad, mode="constant", value=None): mode and value positionally or by keyword
        mode = attrs.get("mode", attrs.get("arg2", "constant"))
        value = attrs.get("value", attrs.get("arg3"))
        amounts = attrs.get("arg1", attrs.get("pad")) if mode == "constant" and value in (None, 0) else None
    spatial = len(pad.input_shape) - 2
    if amounts is None or spatial < 1:
        return None
    if isinstance(amounts, int):  # nn.ZeroPad2d(1): every side
        amounts = (amounts,) * (2 * spatial)
    amounts = tuple(amounts)
    if len(amounts) % 2 or any(a < 0 for a in amounts) or any(amounts[2 * spatial:]):
        return None
    pairs = [(amounts[i], amounts[i + 1]) for i in range(0, len(amounts), 2)][:spatial]
    pairs += [(0, 0)] * (spatial - len(pairs))
    return pairs[::-1]  # F.pad lists the last axis first


def _per_axis(value: Any, spatial: int) -> tuple[int, ...] | None:
    if isinstance(value, int):
        return (value,) * spatial
    if isinstance(value, tuple) and len(value) == spatial and all(isinstance(v, int) for v in value):
        return value
    return None


def _own_padding(layer: Layer, kernel: Sequence[int], dilation: Sequence[int]) -> list[tuple[int, int]] | None:
    """The consumer's own (before, after) padding per axis; PyTorch's 'same' puts floor(total / 2) first."""
    padding = layer.attrs.get("padding", 0)
    spatial = len(kernel)
    if padding == "valid":
        return [(0, 0)] * spatial
    if padding == "same":
        totals = [(k - 1) * d for k, d in zip(kernel, dilation, strict=True)]
        return [(t // 2, t - t // 2) for t in totals]
    sides = _per_axis(padding, spatial)
    return None if sides is None else [(p, p) for p in sides]


def _pad_folds(pad: Layer, reader: Layer, by_name: dict[str, Layer]) -> bool:
    """Whether the zero ``pad`` plus ``reader``'s own padding is exactly what TFLite's SAME or VALID padding
    of ``reader`` does, so that the converter folds the pad into it.

    A conv or depthwise conv skips padded taps, which equals zero padding of the real input. A max pool with
    SAME ignores padded cells (TFLM's MaxPool reads only in-bounds ones): equal to zero padding only when
    every value is >= 0 (after a ReLU). An average pool divides by the count of real cells, a zero pad does
    not, so it never folds into one.
    """
    if reader.inputs != [pad.name]:
        return False
    if reader.op == "conv":
        if reader.attrs.get("padding_mode", "zeros") != "zeros":
            return False
    elif reader.op == "maxpool":
        producer = by_name.get(pad.inputs[0]) if pad.inputs else None
        if producer is None or producer.op not in _NON_NEGATIVE or reader.attrs.get("ceil_mode"):
            return False
    else:
        return False
    amounts = zero_pad_amounts(pad)
    if amounts is None:
        return False
    spatial = len(amounts)
    kernel = _per_axis(reader.attrs.get("kernel_size"), spatial)
    stride = _per_axis(reader.attrs.get("stride", 1), spatial)
    dilation = _per_axis(reader.attrs.get("dilation", 1), spatial)
    if kernel is None or stride is None or dilation is None:
        return False  # a functional call: its geometry is not captured
    own = _own_padding(reader, kernel, dilation)
    if own is None:
        return False
    sizes = pad.input_shape[2:]
    combined = [(a + c, b + d) for (a, b), (c, d) in zip(amounts, own, strict=True)]
    same = [tf_same_padding(n, k, s, d) for n, k, s, d in zip(sizes, kernel, stride, dilation, strict=True)]
    valid = [(0, 0)] * spatial
    return combined in (same, valid)
