"""Activation buffers of a graph, with TFLM-style lifetimes, fed to the greedy arena planner.

Lifetimes are in operator indices, as TFLM's allocation info gives them: a graph input lives from
op 0; an op's output from that op to the last op that reads it; graph outputs to the last op.
View ops (reshape, flatten, getitem, dropout) own no buffer: they extend the life of the one they view;
folded BN and fused activations (``cost.fusion``) run in their producer and own none either.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from nntailor.cost.fusion import fused_layers
from nntailor.cost.planner import GreedyPlanner
from nntailor.graph.ops import ALIAS_KINDS
from nntailor.graph.types import Graph

# Ops that move or select activations without arithmetic: their output can be stored at the width of their
# input with the same scale (TFLite requires it for max pooling), so both buffers take the width a consumer picks.
WIDTH_PRESERVING = frozenset({"maxpool", "adaptive_maxpool", "pad", "permute", "shuffle", "shift", "slice", "relu",
                              "relu6"})
MAC_LAYER_KINDS = frozenset({"conv", "linear"})
IO_KINDS = ("int8", "float")  # the model's input and output tensors: quantized, or float32 (QUANTIZE/DEQUANTIZE)
FLOAT_IO_BITS = 32


def float_io_name(tensor: str) -> str:
    """The buffer name of a graph input's or output's float32 copy."""
    return f"{tensor} (float)"


def quantized_inputs(graph: Graph) -> list[str]:
    """The graph inputs a float-I/O model quantizes: all but token ids (an input an embedding reads is integer)."""
    ids = {i for layer in graph.layers if layer.op == "embedding" for i in layer.inputs}
    return [name for name in graph.input_names if name not in ids]


@dataclass
class Buffer:
    """One arena buffer: a graph input or the output of an op that is not a view or a fused activation."""

    name: str
    numel: int
    first: int  # op index that writes it (0 for graph inputs)
    last: int  # op index that last reads it
    readers: set[str] = field(default_factory=set)  # conv/linear modules that quantize it on input
    fixed: bool = False  # read by some other op (add, cat, avg pool, the graph output): its width is not free
    bits: int | None = None  # a width of its own (the float copy of a graph input or output), whatever the plan's


def activation_buffers(graph: Graph, fused: dict[str, str] | None = None, io: str = "int8") -> list[Buffer]:
    """The arena buffers with TFLM lifetimes, and which conv/linear modules read each one (directly, or through
    width-preserving ops, whose output buffers are then tied to the same readers).

    With ``io="float"`` the model takes and gives float32, as a converted file without
    ``inference_input_type=int8`` does: a QUANTIZE op first writes the quantized copy of each input (both live at
    once) and a DEQUANTIZE op last writes a float copy of each output (``FLOAT_IO_BITS`` wide).
    """
    fused = fused_layers(graph) if fused is None else fused
    root: dict[str, str] = {}  # tensor name -> buffer that holds it
    buffers: dict[str, Buffer] = {}
    op_index = -1
    to_quantize = set(quantized_inputs(graph)) if io == "float" else set()
    for name, shape in zip(graph.input_names, graph.input_shapes, strict=True):
        root[name] = name
        if name in to_quantize:
            op_index += 1  # the QUANTIZE op: float input in, quantized copy out
            buffers[float_io_name(name)] = Buffer(float_io_name(name), math.prod(shape), 0, op_index, fixed=True,
                                                  bits=FLOAT_IO_BITS)
        buffers[name] = Buffer(name, math.prod(shape), max(op_index, 0), max(op_index, 0))
    readers_of: dict[str, list[str]] = {}  # buffer -> ops that read it
    for layer in graph.layers:
        if layer.attrs.get("constant") or layer.attrs.get("dead"):
            continue  # precomputed by the converter (model data), or dropped by it: not an arena buffer
        sources = [root[i] for i in layer.inputs if i in root]
        if (layer.op in ALIAS_KINDS or layer.name in fused) and sources:
            root[layer.name] = sources[0]
            continue
        op_index += 1
        for src in sources:
            buffers[src].last = max(buffers[src].last, op_index)
            readers_of.setdefault(src, []).append(layer.name)
        root[layer.name] = layer.name
        buffers[layer.name] = Buffer(layer.name, layer.output_numel, op_index, op_index)
    final = max(op_index, 0)
    outputs = list(dict.fromkeys(root[name] for name in graph.output_names if name in root))
    if io == "float":
        final += len(outputs)  # one DEQUANTIZE op per output, after the model's own ops
    for k, src in enumerate(outputs):
        buffers[src].last = final
        buffers[src].fixed = True
        if io == "float":
            buffers[src].last = final - len(outputs) + k + 1
            out = float_io_name(src)
            buffers[out] = Buffer(out, buffers[src].numel, buffers[src].last, final, fixed=True, bits=FLOAT_IO_BITS)

    by_name = {layer.name: layer for layer in graph.layers}
    for name, buf in buffers.items():
        for reader in readers_of.get(name, []):
            layer = by_name[reader]
            if layer.op in MAC_LAYER_KINDS and layer.module and layer.weights:
                buf.readers.add(layer.module)
            elif layer.op not in WIDTH_PRESERVING:
                buf.fixed = True
    # a width-preserving op stores its output at its input's width: the two buffers share readers and fate
    ties = []
    for layer in graph.layers:
        if layer.op in WIDTH_PRESERVING and layer.name in buffers:
            src = next((root[i] for i in layer.inputs if i in root), None)
            if src is not None:
                ties.append((src, layer.name))
    for members in components(buffers, ties):
        readers = set().union(*(buffers[n].readers for n in members))
        fixed = any(buffers[n].fixed for n in members)
        for n in members:
            buffers[n].readers, buffers[n].fixed = set(readers), fixed
    return list(buffers.values())


def components(items: Iterable[str], links: Iterable[tuple[str, str]]) -> list[list[str]]:
    """The connected components of ``items`` joined by ``links`` (union-find), each in the items' order."""
    parent = {item: item for item in items}

    def find(item: str) -> str:
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    for a, b in links:
        parent[find(b)] = find(a)
    groups: dict[str, list[str]] = {}
    for item in parent:
        groups.setdefault(find(item), []).append(item)
    return list(groups.values())


def plan_activations(
    graph: Graph,
    act_bits: int = 8,
    fused: dict[str, str] | None = None,
    layer_act_bits: dict[str, int] | None = None,
    io: str = "int8",
) -> GreedyPlanner:
    """The arena plan; ``layer_act_bits`` gives a buffer's width (by layer or graph input name) when it differs
    from ``act_bits`` (mixed precision); ``io="float"`` adds the float input and output copies."""
    if act_bits >= FLOAT_IO_BITS:
        io = "int8"  # a float model: its input and output are float already, nothing to quantize
    return plan_buffers(activation_buffers(graph, fused, io), act_bits, layer_act_bits)


def plan_buffers(buffers: list[Buffer], act_bits: int = 8, widths: dict[str, int] | None = None) -> GreedyPlanner:
    """The arena plan of buffers already found, each at ``widths[name]`` or ``act_bits``."""
    widths = widths or {}
    planner = GreedyPlanner()
    for buf in buffers:
        bits = buf.bits or widths.get(buf.name, act_bits)
        planner.add(buf.name, math.ceil(buf.numel * bits / 8), buf.first, buf.last)
    return planner.plan()


def live_sets(buffers: list[Buffer]) -> list[list[Buffer]]:
    """The buffers live at each op (a buffer is live from the op that writes it to the last that reads it)."""
    ops = max((b.last for b in buffers), default=0) + 1
    return [[b for b in buffers if b.first <= t <= b.last] for t in range(ops)]


def buffer_widths(buffers: list[Buffer], reader_widths: dict[str, int]) -> dict[str, int]:
    """The width each buffer is stored at when its conv/linear readers quantize their inputs to
    ``reader_widths`` (by module path): only a free buffer whose readers agree; the rest keep the default."""
    out = {}
    for buf in buffers:
        widths = {reader_widths.get(r) for r in buf.readers}
        if not buf.fixed and len(widths) == 1 and None not in widths:
            out[buf.name] = widths.pop()
    return out
