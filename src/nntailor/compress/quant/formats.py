"""What the cost model needs to price a quantized model as deployed: each layer's widths and arithmetic.

Fake-quantized layers carry their specs; binary and ternary layers their method. ``layer_formats`` reads both
into the arguments ``analyze`` takes (``layer_bits``, ``layer_arith``, ``buffer_bits``), so BOPs, bytes and energy
follow the widths and a LogNet layer is priced as shifts, a BinaryConnect layer as adds, a BNN layer as
XNOR-popcounts. A weight-shared (clustered) layer is stored as codebook indices: it is priced at the index
width (Deep Compression's stage 2; EIE fetches the 4-bit index, not the decoded weight), or at its quantized
width when that is narrower.
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from nntailor.compress.deep_compression import dense_codebook_bits
from nntailor.compress.prune import prunable_layers
from nntailor.compress.quant.binary import _BINARY_ACTIVATIONS, BinaryConv2d, BinaryLinear, binary_bits
from nntailor.compress.quant.modules import QUANT_LAYERS, quant_bits
from nntailor.cost.memory import activation_buffers, buffer_widths
from nntailor.graph import capture
from nntailor.graph.types import Shape


def layer_arith(model: nn.Module) -> dict[str, str]:
    """How each quantized layer multiplies: "shift" (log2 weights), "add" (binary/ternary weights), "xnor"."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, QUANT_LAYERS) and m.weight_spec.log2:
            out[name] = "shift"
        elif isinstance(m, BinaryLinear | BinaryConv2d):
            out[name] = "xnor" if m.method in _BINARY_ACTIVATIONS else "add"
    return out


def weight_widths(model: nn.Module, weight_bits: int = 32) -> dict[str, int]:
    """The width each conv/linear layer stores its weight values at: its quantized (or binary) width, or
    ``weight_bits`` where nothing quantized it (32: float)."""
    own = {name: w for name, (w, _) in {**quant_bits(model), **binary_bits(model)}.items()}
    return {name: own.get(name, weight_bits) for name, _ in prunable_layers(model)}


def layer_formats(model: nn.Module, act_bits: int = 8, input_shape: Shape | None = None, *,
                  weight_bits: int | None = None) -> dict[str, Any]:
    """``analyze`` keyword arguments that price the model as deployed: ``layer_bits`` (each quantized or
    weight-shared layer's weight width and the width it reads its input at), ``layer_arith``, and with
    ``input_shape`` ``buffer_bits``: the width each arena buffer is stored at, the input width of the layers that
    read it when they agree (a max pool's input feeding them too), ``act_bits`` otherwise. ``weight_bits``
    (default ``act_bits``) is the width of weights nothing quantized, as ``analyze``'s ``bits``. Use as
    ``analyze(model, shape, target, **layer_formats(model, 8, shape))``."""
    widths = {**quant_bits(model), **binary_bits(model, act_bits)}
    values = weight_widths(model, act_bits if weight_bits is None else weight_bits)
    for name, index_bits in dense_codebook_bits(model, values).items():
        w, a = widths.get(name, (values[name], act_bits))
        widths[name] = (min(w, index_bits), a)
    out: dict[str, Any] = {"layer_bits": widths, "layer_arith": layer_arith(model)}
    if input_shape is not None:
        buffers = activation_buffers(capture(model, input_shape))
        out["buffer_bits"] = buffer_widths(buffers, {n: a for n, (_, a) in widths.items()})
    return out
