"""The operators and tensors a captured graph becomes in a converted .tflite file, counted for TFLM's tail.

As TFLiteConverter lowers it: a conv or depthwise conv (BN folded, ReLU fused, zero pad folded: ``cost.fusion``)
is one CONV_2D / DEPTHWISE_CONV_2D with a weight, a bias and an output tensor; a linear is a FULLY_CONNECTED
with the same three; a flatten or view is a RESHAPE with a constant shape tensor; a getitem, dropout or
identity disappears; every other op is one operator with its outputs (and any constant operand). With float
I/O a QUANTIZE per input and a DEQUANTIZE per output come in, each with its float tensor.
"""

from __future__ import annotations

from nntailor.cost.fusion import fused_layers
from nntailor.cost.memory import quantized_inputs
from nntailor.cost.tflm_arena import TailCounts
from nntailor.graph.types import Graph

_VANISH = frozenset({"getitem", "identity"})  # no operator, no tensor in the converted file


def tail_counts(
    graph: Graph,
    fused: dict[str, str] | None = None,
    *,
    io: str = "int8",
    act_bits: int = 8,
    per_channel_dense: bool = True,
) -> TailCounts:
    """The counts ``persistent_tail_bytes`` needs. ``per_channel_dense``: the fully connected weights are
    quantized per output channel (as in issue 9's TFLiteConverter outputs; the official MLPerf Tiny files
    are per tensor)."""
    fused = fused_layers(graph) if fused is None else fused
    ops: dict[str, int] = {}
    per_channel: list[int] = []
    tensors = len(graph.input_names)

    def add(kind: str, new_tensors: int) -> None:
        nonlocal tensors
        ops[kind] = ops.get(kind, 0) + 1
        tensors += new_tensors

    for layer in graph.layers:
        if layer.name in fused or layer.attrs.get("constant") or layer.attrs.get("dead") or layer.op in _VANISH:
            continue
        channels = layer.output_shape[1] if len(layer.output_shape) > 1 else 1
        if layer.op in ("conv", "conv_transpose"):
            add("conv", 3 + (layer.op == "conv_transpose"))  # weights, bias, output (+ TRANSPOSE_CONV's shape)
            per_channel.append(channels)
        elif layer.op == "linear":
            add("fully_connected", 3)
            if per_channel_dense and act_bits < 32:  # a float dense layer has no multipliers
                per_channel.append(layer.output_shape[-1] if layer.output_shape else 1)
        elif layer.op == "reshape":
            add("reshape", 2)  # the output and the constant new-shape tensor
        else:
            add("other", len(layer.output_shapes) + len(layer.attrs.get("const_inputs", ())))
    outputs = len(dict.fromkeys(graph.output_names))
    float_io = io == "float" and act_bits < 32
    if float_io:
        for _ in quantized_inputs(graph):
            add("quantize", 1)  # the float input beside its quantized copy (token ids stay integer)
        for _ in range(outputs):
            add("quantize", 1)  # DEQUANTIZE and its float output
    return TailCounts(ops=ops, tensors=tensors, per_channel=tuple(per_channel),
                      io_tensors=len(graph.input_names) + outputs, io_quantized=act_bits < 32 and not float_io)
