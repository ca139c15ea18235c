"""What the cost model needs to price a quantized model as deployed: each layer's widths and arithmetic.

Fake-quantized layers carry their specs; binary and ternary layers their method. ``layer_formats`` reads both
into the two arguments ``analyze`` takes (``layer_bits`` and ``layer_arith``), so BOPs, bytes and energy
follow the widths and a LogNet layer is priced as shifts, a BinaryConnect layer as adds, a BNN layer as
XNOR-popcounts.
"""

from __future__ import annotations

import torch.nn as nn

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


def layer_formats(model: nn.Module, act_bits: int = 8, input_shape: Shape | None = None,
                  ) -> tuple[dict[str, tuple[int, int]], dict[str, str]]:
    """(``layer_bits``, ``layer_arith``) for ``analyze``; layers not quantized are left to its defaults.

    With ``input_shape``, activation widths are per stored tensor, as deployed: a buffer whose readers all
    quantize their input to b bits is stored at b bits (and so is a max pool's input feeding them); without it,
    each quantized layer is priced at its input width.
    """
    widths = {**quant_bits(model), **binary_bits(model, act_bits)}
    if input_shape is None:
        return widths, layer_arith(model)
    graph = capture(model, input_shape)
    stored = buffer_widths(activation_buffers(graph), {n: a for n, (_, a) in widths.items()})
    out = {n: (w, act_bits) for n, (w, _) in widths.items()}  # by module path: the weight width
    for layer in graph.layers:  # by layer name: the width of the buffer the layer writes
        if layer.name in stored or layer.module in out:
            w = out[layer.module][0] if layer.module in out else act_bits
            out[layer.name] = (w, stored.get(layer.name, act_bits))
    for name in graph.input_names:
        if name in stored:
            out[name] = (act_bits, stored[name])
    return out, layer_arith(model)
