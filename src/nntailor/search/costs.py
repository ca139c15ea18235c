"""A design's costs from the one cost model, fast: each segment is priced once by ``analyze``'s stages and reused.

``analyze`` on a whole model captures a graph (torch.fx, shape propagation) every time, ~10 ms for seed 000's
CNNs. A design is a chain of segments that nothing fuses across (``search.space``), and every per-layer cost
``analyze`` computes depends on that layer, its widths and the target only, so a segment's layer costs are
cached by (segment signature, input shape, widths, sparsity). What spans segments is the arena: the segments'
buffers (``cost.memory.activation_buffers``) are stitched into the design's buffer list, with TFLM lifetimes
in the whole model's operator order, and planned by the same greedy planner (``cost.memory.plan_buffers``).
Totals are summed over the layers in model order, exactly as ``analyze`` sums them, so they are equal to
``analyze_design`` bit for bit (the tests check every total on random designs).

A segment never seen is priced without building its model where ``search.compile`` can write its graph (the
mlp and cnn spaces' unpruned segments); the others are built and captured. Its graph goes through ``analyze``'s
own stages (``fuse``, ``layer_widths``, ``price_layer``, ``act_widths``), not a whole ``analyze``, and each layer
cost is cached by the layer's signature (kind, shapes, attrs, widths, arithmetic, non-zero counts, fusion), so a
new segment reuses the layers it shares with segments seen before; the totals come from ``totals_of``, the one
function ``analyze`` sums with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn as nn

from nntailor.cost import metrics
from nntailor.cost.memory import Buffer, activation_buffers, plan_buffers
from nntailor.cost.report import (
    LayerCost,
    Options,
    Report,
    act_widths,
    analyze,
    fuse,
    layer_widths,
    prepare,
    price_layer,
    totals_of,
)
from nntailor.cost.tflite_ops import tail_counts
from nntailor.cost.tflm_arena import TailCounts, persistent_tail_bytes
from nntailor.graph.capture import capture
from nntailor.graph.types import Layer
from nntailor.search.compile import compilable, segment_graph
from nntailor.search.space import Design, Segment, build, make_segment
from nntailor.targets import Target, load

# the totals ``analyze`` reports that a design's fast costs reproduce
SUMMED = ("macs", "nz_params", "nz_macs", "bops", "weight_bytes", "flash_bytes", "energy_pj", "latency_s",
          "other_ops", "cycles")
TOTALS = (*SUMMED, "params", "peak_sram_bytes", "arena_tail_bytes", "act_lower_bound_bytes", "energy_breakdown_pj")


def prune_design(model: nn.Module, sparsity: dict[str, float]) -> nn.Module:
    """Prune each layer path to its sparsity with the compress step (magnitude, per layer)."""
    from nntailor.compress import apply
    from nntailor.compress.prune import PruneConfig

    sparse = {p: s for p, s in sparsity.items() if s > 0}
    if not sparse:
        return model
    return apply(model, PruneConfig(sparsity=sparse, layers=sorted(sparse)))


def analyze_design(design: Design, target: str | Target, *, energy_model: str | None = None) -> Report:
    """The slow exact path: build the model, prune it as the design says, and ``analyze`` it at its widths."""
    model = prune_design(build(design), design.layer_sparsity)
    return analyze(model, design.input_shape, target, energy_model=energy_model, **design.pricing())


@dataclass(frozen=True)
class _Priced:
    """One segment on the target: its layer costs, its buffers (local op indices) and their widths."""

    layers: tuple[LayerCost, ...]
    params: int
    unowned_nz: int  # non-zeros of parameters no layer uses, which ``nz_params`` counts too
    buffers: tuple[Buffer, ...]  # the first is the segment's input
    widths: dict[str, int]
    ops: int  # operators that own a buffer
    output_shape: tuple[int, ...]
    tail: TailCounts  # the segment's operators and tensors in the converted file (its input tensor included)


class CostModel:
    """Prices designs on one target. ``totals(design)`` equals ``analyze_design(design, target).totals``."""

    def __init__(self, target: str | Target, *, energy_model: str | None = None,
                 max_segments: int = 50_000) -> None:
        self.target = load(target)
        self.energy_model = energy_model
        # ~4 KB per priced cnn segment; an OpalSampler pool of 256 candidates meets ~300 new segments per trial
        # in seed 000's CNN space, so an unbounded cache would hold ~600 MB after 500 trials: the oldest go first
        self.max_segments = max_segments
        self._segments: dict[tuple[Any, ...], _Priced] = {}
        # per-layer costs by layer signature: a new segment reuses the layers other segments share with it
        self._layers: dict[tuple[Any, ...], LayerCost] = {}
        self._options: dict[tuple[Any, ...], Options] = {}

    def _local(self, design: Design, index: int, seg: Segment) -> tuple[dict[str, tuple[int, int]],
                                                                           dict[str, str], dict[str, float]]:
        pricing = design.pricing()
        prefix = f"{index}."

        def local(mapping: dict[str, Any]) -> dict[str, Any]:
            return {k.removeprefix(prefix): v for k, v in mapping.items() if k.startswith(prefix)}

        return local(pricing["layer_bits"]), local(pricing["layer_arith"]), local(design.layer_sparsity)

    def _price(self, seg: Segment, shape: tuple[int, ...], bits: int, layer_bits: dict[str, tuple[int, int]],
               layer_arith: dict[str, str], sparsity: dict[str, float]) -> _Priced:
        key = (seg.signature, shape, bits, tuple(sorted(layer_bits.items())), tuple(sorted(layer_arith.items())),
               tuple(sorted(sparsity.items())))
        hit = self._segments.get(key)
        if hit is not None:
            return hit
        if compilable(seg, sparsity):  # mlp and cnn segments: written as capture would write them
            graph = segment_graph(seg, shape)
        else:  # blocks, and pruned layers (their zeros come from the weights): build, prune, capture
            graph = capture(prune_design(make_segment(seg), sparsity), shape)
        opts_key = (bits, key[3], key[4])
        opts = self._options.get(opts_key)
        if opts is None:
            opts = self._options[opts_key] = prepare(self.target, bits=bits, layer_bits=layer_bits,
                                                     layer_arith=layer_arith, energy_model=self.energy_model)
        # the stages of ``analyze``, with each layer priced once per signature
        fusion = fuse(graph)
        widths = layer_widths(graph, opts, fusion)
        layers = []
        for layer, (wb, ab, out_bits) in zip(graph.layers, widths, strict=True):
            arith = layer_arith.get(layer.name) or layer_arith.get(layer.module) or "mul"
            counts = metrics.nonzero_counts(layer)
            sig = _signature(layer)
            lkey = (sig, tuple(sorted(counts.items())), wb, ab, out_bits, arith, fusion.fused.get(layer.name),
                    layer.name in fusion.bn_hosts, fusion.unpadded.get(layer.name))
            cost = self._layers.get(lkey) if sig is not None else None
            if cost is None:
                cost = price_layer(layer, self.target, fusion, w_bits=wb, a_bits=ab, out_bits=out_bits, arith=arith,
                                   energy_model=self.energy_model, counts=counts)
                if sig is not None:
                    if len(self._layers) >= self.max_segments:
                        del self._layers[next(iter(self._layers))]
                    self._layers[lkey] = cost
            layers.append(cost)
        buffers = activation_buffers(graph, fusion.fused)
        buffer_widths = act_widths(graph, opts, fusion, widths)
        ops = len(buffers) - len(graph.input_names)
        out = graph.output_names[0]
        shapes = {layer.name: tuple(layer.output_shape) for layer in graph.layers}
        if len(graph.input_names) != 1 or buffers[-1].first != ops - 1 or out not in shapes:
            raise AssertionError(f"segment {seg.signature} is not a chain link that ends in its last op")
        priced = _Priced(tuple(layers), graph.total_params, sum(metrics.count_nonzero(p) for p in graph.unowned),
                         tuple(buffers), buffer_widths, ops,
                         shapes[out], tail_counts(graph, fusion.fused, act_bits=bits))
        if len(self._segments) >= self.max_segments:
            del self._segments[next(iter(self._segments))]
        self._segments[key] = priced
        return priced

    def totals(self, design: Design) -> dict[str, Any]:
        """The design's totals, as ``analyze`` reports them (the keys in ``TOTALS``)."""
        bits = design.default_bits
        shape = design.input_shape
        layers: list[LayerCost] = []
        params = unowned_nz = 0
        stitched: list[Buffer] = []
        widths: dict[str, int] = {}
        tail_ops: dict[str, int] = {}
        tail_tensors = 1  # the model's input; each segment's own input is the previous segment's output
        per_channel: list[int] = []
        offset = 0  # op index of the segment's first op in the whole model
        prev: Buffer | None = None  # the buffer that holds the current segment's input
        for i, seg in enumerate(design.segments):
            priced = self._price(seg, shape, bits, *self._local(design, i, seg))
            layers.extend(priced.layers)
            params += priced.params
            unowned_nz += priced.unowned_nz
            for kind, n in priced.tail.ops.items():
                tail_ops[kind] = tail_ops.get(kind, 0) + n
            tail_tensors += priced.tail.tensors - 1
            per_channel.extend(priced.tail.per_channel)
            inp, *own = priced.buffers
            if prev is None:
                prev = Buffer(f"{i}:{inp.name}", inp.numel, 0, inp.last)
            else:  # the previous segment's output lives until this segment's last read of it
                prev.last = max(prev.last, offset + inp.last)
            stitched.append(prev)
            for b in own:
                name = f"{i}:{b.name}"
                stitched.append(Buffer(name, b.numel, offset + b.first, offset + b.first))
                if b.name in priced.widths:
                    widths[name] = priced.widths[b.name]
            # every buffer but the segment's output is read inside the segment only
            for local, glob in zip(own[:-1], stitched[len(stitched) - len(own):-1], strict=True):
                glob.last = offset + local.last
            prev = stitched.pop()
            offset += priced.ops
            shape = priced.output_shape
        assert prev is not None
        prev.last = max(offset - 1, 0)  # the graph output lives to the last op
        stitched.append(prev)
        arena = plan_buffers(stitched, bits, widths)
        # TFLM's persistent tail: the design's operator and tensor counts are its segments' (one int8 input and
        # output), as ``analyze`` counts them on the whole graph
        tail = persistent_tail_bytes(TailCounts(ops=tail_ops, tensors=tail_tensors, per_channel=tuple(per_channel),
                                                io_tensors=2, io_quantized=bits < 32))
        return totals_of(layers, self.target, params=params, unowned_nz=unowned_nz, arena=arena, tail=tail)


def _frozen(value: Any) -> Any:
    """A hashable stand-in for an attribute value (dicts and lists as tuples); ``TypeError`` for anything else
    unhashable (a tensor attribute), whose layer is then priced without the cache rather than keyed loosely."""
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    hash(value)
    return value


def _signature(layer: Layer) -> tuple[Any, ...] | None:
    """What ``price_layer`` reads of a layer besides its widths, counts and fusion: its kind, shapes, attributes
    and parameter shapes (the name and module are copied into the cost, so they are part of it too); None when an
    attribute has no hashable form."""
    try:
        attrs = _frozen(layer.attrs)
    except TypeError:
        return None
    return (layer.name, layer.module, layer.op, layer.target, tuple(tuple(s) for s in layer.input_shapes),
            tuple(tuple(s) for s in layer.output_shapes), attrs,
            tuple((k, tuple(w.shape)) for k, w in layer.all_weights.items()), tuple(layer.weights))
