"""Activation buffers of a graph, with TFLM-style lifetimes, fed to the greedy arena planner.

Lifetimes are in operator indices, as TFLM's allocation info gives them: a graph input lives from
op 0; an op's output from that op to the last op that reads it; graph outputs to the last op.
View ops (reshape, flatten, getitem, dropout) own no buffer: they extend the life of the one they view;
folded BN and fused activations (``cost.fusion``) run in their producer and own none either.
"""

from __future__ import annotations

import math

from nntailor.cost.fusion import fused_layers
from nntailor.cost.planner import GreedyPlanner
from nntailor.graph.ops import ALIAS_KINDS
from nntailor.graph.types import Graph


def plan_activations(
    graph: Graph,
    act_bits: int = 8,
    fused: dict[str, str] | None = None,
    layer_act_bits: dict[str, int] | None = None,
) -> GreedyPlanner:
    """The arena plan; ``layer_act_bits`` gives a layer's output width when it differs (mixed precision)."""
    fused = fused_layers(graph) if fused is None else fused
    widths = layer_act_bits or {}
    root: dict[str, str] = {}  # tensor name -> buffer that holds it
    sizes: dict[str, int] = {}
    first: dict[str, int] = {}
    last: dict[str, int] = {}

    for name, shape in zip(graph.input_names, graph.input_shapes, strict=True):
        root[name] = name
        sizes[name] = math.ceil(math.prod(shape) * act_bits / 8)
        first[name] = last[name] = 0

    op_index = -1
    for layer in graph.layers:
        if layer.attrs.get("constant"):
            continue  # precomputed by the converter: model data, not an arena buffer
        sources = [root[i] for i in layer.inputs if i in root]
        if (layer.op in ALIAS_KINDS or layer.name in fused) and sources:
            root[layer.name] = sources[0]
            continue
        op_index += 1
        for src in sources:
            last[src] = max(last[src], op_index)
        root[layer.name] = layer.name
        sizes[layer.name] = math.ceil(layer.output_numel * widths.get(layer.name, act_bits) / 8)
        first[layer.name] = last[layer.name] = op_index

    final = max(op_index, 0)
    for name in graph.output_names:
        if name in root:
            last[root[name]] = final

    planner = GreedyPlanner()
    for name, size in sizes.items():
        planner.add(name, size, first[name], last[name])
    return planner.plan()
