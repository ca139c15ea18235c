"""``analyze``: what a model costs on a chip, per layer and in total, and whether it fits.

This is the one cost model: search objectives, budgets, compression results and the HTML report all
read their numbers from a ``Report``, never recompute them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass, field
from typing import Any

import torch.nn as nn

from nntailor.cost import metrics
from nntailor.cost.count_like import TOOLS
from nntailor.cost.count_like import count_like as count_like_tool
from nntailor.cost.energy import layer_energy, traffic
from nntailor.cost.fusion import fused_layers
from nntailor.cost.latency import layer_timing
from nntailor.cost.memory import IO_KINDS, plan_activations
from nntailor.cost.planner import GreedyPlanner
from nntailor.cost.tflite_ops import tail_counts
from nntailor.cost.tflm_arena import persistent_tail_bytes
from nntailor.errors import UserError
from nntailor.graph.capture import capture
from nntailor.graph.ops import ALIAS_KINDS
from nntailor.graph.types import Graph, Layer, Shape
from nntailor.report.format import format_bytes
from nntailor.targets import Memory, Target, load
from nntailor.targets.schema import ARITH_KINDS

SUPPORTED_BITS = frozenset(range(1, 17)) | {32}  # any width quantization makes (2..16), binary, float


@dataclass
class LayerCost:
    name: str
    op: str
    target: str
    module: str
    input_shape: list[int]
    output_shape: list[int]
    macs: int
    nz_macs: int
    params: int
    nz_params: int
    other_ops: int
    bops: int
    weight_bytes: int
    act_bytes: int  # activation bytes this layer reads and writes
    flash_bytes: int
    energy_pj: float
    energy_breakdown_pj: dict[str, float]
    latency_s: float
    cycles: float
    bound: str
    arith_intensity: float
    normalized_arith_intensity: float  # AI / the model's highest layer AI (Keutzer's "normalized AI", seed 004)
    w_bits: int
    a_bits: int
    arith: str = "mul"  # how weight MACs are done: mul, shift (log2 weights), add (binary/ternary), xnor
    fused_into: str | None = None  # folded BN / fused activation: priced as part of this layer ("constant": folded)
    # targets with a PE array (cost.accel): MACs / (compute cycles x PEs), and the energy of each memory level
    utilization: float | None = None
    energy_pj_by_level: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Report:
    """Costs of one graph on one target. ``to_dict()`` is the JSON other tools read."""

    model: str
    target: str
    w_bits: int
    a_bits: int
    layers: list[LayerCost]
    totals: dict[str, Any]
    fits: bool
    violations: list[str]
    unpriced: list[str]
    energy_model: str
    arena: GreedyPlanner = field(repr=False)
    count_like: dict[str, int] = field(default_factory=dict)
    io: str = "int8"  # the model's input and output: quantized, or float32 behind QUANTIZE / DEQUANTIZE
    verdict_note: str | None = None  # what the fits verdict leaves out (unpriced ops), or None
    tail_in_verdict: bool = True  # TFLM's persistent tail counts where TFLM runs (an MCU), not on an accelerator

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "target": self.target,
            "bits": {"weights": self.w_bits, "activations": self.a_bits},
            "energy_model": self.energy_model,
            "io": self.io,
            "totals": dict(self.totals),
            "fits": self.fits,
            "violations": list(self.violations),
            "verdict_note": self.verdict_note,
            "arena_tail_in_verdict": self.tail_in_verdict,
            "layers": [_without_array_keys(layer.to_dict(), self.totals) for layer in self.layers],
            "unpriced": list(self.unpriced),
        }
        if self.count_like:
            out["count_like"] = dict(self.count_like)
        return out

    def layer(self, name: str) -> LayerCost:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)


def _without_array_keys(layer: dict[str, Any], totals: dict[str, Any]) -> dict[str, Any]:
    """Only targets with a PE array (those whose totals have a utilization) report the array's per-layer keys."""
    if "utilization" not in totals:
        layer.pop("utilization", None)
        layer.pop("energy_pj_by_level", None)
    return layer


def check_bits(bits: int, what: str) -> int:
    if bits not in SUPPORTED_BITS:
        raise UserError(f"{what} must be 1 to 16 or 32, got {bits}")
    return bits


def _layer_bits(layer: Layer, w_bits: int, a_bits: int, per_layer: Mapping[str, tuple[int, int]]) -> tuple[int, int]:
    return per_layer.get(layer.name) or per_layer.get(layer.module) or (w_bits, a_bits)


def _fused_cost(layer: Layer, host: str, w_bits: int, a_bits: int, nz: int) -> LayerCost:
    """A folded BN or fused activation: its parameters count, it costs nothing of its own."""
    return LayerCost(
        name=layer.name, op=layer.op, target=layer.target, module=layer.module,
        input_shape=list(layer.input_shape), output_shape=list(layer.output_shape),
        macs=0, nz_macs=0, params=layer.params, nz_params=nz, other_ops=0, bops=0,
        weight_bytes=metrics.weight_bytes(layer, w_bits), act_bytes=0, flash_bytes=0, energy_pj=0.0,
        energy_breakdown_pj={}, latency_s=0.0, cycles=0.0, bound="fused", arith_intensity=0.0,
        normalized_arith_intensity=0.0,
        w_bits=w_bits, a_bits=a_bits, fused_into=host,
    )


def _folded_bias_bytes(layer: Layer, bn_hosts: AbstractSet[str], bits: int) -> int:
    """A conv without bias gains one when a BN is folded into it (int32 under integer quantization)."""
    if layer.name not in bn_hosts or "bias" in layer.weights or len(layer.output_shape) < 2:
        return 0
    return layer.output_shape[1] * (4 if bits < 32 else bits // 8)


def _over(what: str, used: int, reserves: Sequence[tuple[int, str]], memory: Memory) -> str | None:
    """'<what> X (+ R1 label1 + R2 label2) exceeds <memory> S by D', or None when it fits."""
    need = used + sum(size for size, _ in reserves)
    if need <= memory.size_bytes:
        return None
    extra = " + ".join(f"{format_bytes(size)} {label}" for size, label in reserves if size)
    extra = f" (+ {extra})" if extra else ""
    return (
        f"{what} {format_bytes(used)}{extra} exceeds {memory.name} {format_bytes(memory.size_bytes)} "
        f"by {format_bytes(need - memory.size_bytes)}"
    )


def _fits(target: Target, peak: int, flash: int, tail: int = 0) -> list[str]:
    """The verdict: TFLM's arena (planned head + persistent ``tail``) and the runtime's own SRAM in the activation
    memory, weights and the runtime's code in the weight memory."""
    act_home, w_home = target.home("activations"), target.home("weights")
    sram = [(tail, "TFLM persistent tail"), (target.runtime_sram_bytes, "runtime")]
    if act_home is w_home:  # an accelerator's DRAM holds both
        checks = [("activations + weights", peak + flash, [*sram, (target.runtime_flash_bytes, "runtime code")],
                   act_home)]
    else:
        checks = [("peak SRAM", peak, sram, act_home),
                  ("weights", flash, [(target.runtime_flash_bytes, "runtime")], w_home)]
    return [v for v in (_over(*check) for check in checks) if v]


def _verdict_note(unpriced: list[str]) -> str | None:
    """A verdict beside ops without a pricing rule counts their weights and output buffers only."""
    if not unpriced:
        return None
    return (f"the verdict ignores what {len(unpriced)} unpriced op(s) need beyond their weights and output "
            f"buffers (state, scratch, time): {'; '.join(unpriced)}")


@dataclass(frozen=True)
class Options:
    """What ``analyze`` was asked for, checked: the target and every width, arithmetic and mode."""

    target: Target
    w_bits: int
    a_bits: int
    layer_bits: Mapping[str, tuple[int, int]]
    layer_arith: Mapping[str, str]
    buffer_bits: Mapping[str, int] | None
    energy_model: str | None
    count_like: tuple[str, ...]
    io: str
    per_channel_dense: bool
    strict: bool


@dataclass(frozen=True)
class Fusion:
    """What fusion decides for the whole graph, which pricing one layer needs: each fused layer's host, the hosts
    that absorbed a BN (they gain a bias), and the unpadded input reads of convs that absorbed a zero pad."""

    fused: dict[str, str]
    bn_hosts: frozenset[str]
    unpadded: dict[str, int]


def prepare(
    target: str | Target,
    *,
    bits: int = 8,
    act_bits: int | None = None,
    layer_bits: Mapping[str, tuple[int, int]] | None = None,
    layer_arith: Mapping[str, str] | None = None,
    buffer_bits: Mapping[str, int] | None = None,
    energy_model: str | None = None,
    strict: bool = False,
    count_like: Sequence[str] = (),
    io: str = "int8",
    per_channel_dense: bool = True,
) -> Options:
    """Stage 1: load the target and check every option (a ``UserError`` before any long work)."""
    tgt = load(target)
    w_bits = check_bits(bits, "weight bits")
    a_bits = check_bits(act_bits if act_bits is not None else bits, "activation bits")
    for tool in count_like:
        if tool not in TOOLS:
            raise UserError(f"--count-like {tool!r}: valid tools are {', '.join(TOOLS)}")
    if io not in IO_KINDS:
        raise UserError(f"io must be {' or '.join(map(repr, IO_KINDS))}, got {io!r}")
    if energy_model not in (None, "traffic", "opal"):
        raise UserError(f"energy model must be 'traffic' or 'opal', got {energy_model!r}")
    for wb, ab in (layer_bits or {}).values():
        check_bits(wb, "weight bits")
        check_bits(ab, "activation bits")
    arith_of = dict(layer_arith or {})
    for where, kind in arith_of.items():
        if kind not in ARITH_KINDS:
            raise UserError(f"layer {where!r}: unknown arithmetic {kind!r}; valid: {', '.join(ARITH_KINDS)}")
    return Options(target=tgt, w_bits=w_bits, a_bits=a_bits, layer_bits=layer_bits or {}, layer_arith=arith_of,
                   buffer_bits=buffer_bits, energy_model=energy_model, count_like=tuple(count_like), io=io,
                   per_channel_dense=per_channel_dense, strict=strict)


def graph_of(model: nn.Module | Graph, input_shape: Shape | Sequence[Shape] | None, name: str | None) -> Graph:
    """Stage 2: the graph to price: ``model`` itself when it is one, else its capture."""
    if isinstance(model, Graph):
        return model
    if input_shape is None:
        raise UserError("an input shape is needed to analyze a model, e.g. (1, 3, 32, 32)")
    return capture(model, input_shape, name=name)


def unpriced_ops(graph: Graph, strict: bool) -> list[str]:
    """The ops without a pricing rule, as the report lists them; with ``strict`` their presence is an error."""
    unpriced = [f"{layer.name} ({layer.module or 'top level'}: {layer.target})" for layer in graph.unpriced()]
    if strict and unpriced:
        raise UserError(f"--strict: no pricing rule for {len(unpriced)} op(s): {'; '.join(unpriced)}")
    return unpriced


def fuse(graph: Graph) -> Fusion:
    """Stage 3: fusion (``cost.fusion``) and what it implies for the hosts' reads and biases."""
    fused = fused_layers(graph)
    by_name = {layer.name: layer for layer in graph.layers}
    bn_hosts = frozenset(host for name, host in fused.items() if by_name[name].op == "batchnorm")
    # a conv that absorbed a zero pad reads the unpadded tensor (its padded taps are skipped, never loaded)
    unpadded = {host: by_name[name].activation_input_numel for name, host in fused.items() if by_name[name].op == "pad"}
    return Fusion(fused=fused, bn_hosts=bn_hosts, unpadded=unpadded)


def price_layer(
    layer: Layer,
    tgt: Target,
    fusion: Fusion,
    *,
    w_bits: int,
    a_bits: int,
    out_bits: int,
    arith: str = "mul",
    energy_model: str | None = None,
    counts: Mapping[str, int] | None = None,
) -> LayerCost:
    """Stage 4, one layer: its cost at weight width ``w_bits``, input width ``a_bits`` and output width
    ``out_bits``, given the graph's fusion. It depends on nothing else, so callers may cache it by those inputs.
    ``normalized_arith_intensity`` is left 0: it needs the whole model's highest AI (``price``)."""
    counts = metrics.nonzero_counts(layer) if counts is None else counts
    nz_params = sum(counts[k] for k in layer.weights)
    if layer.name in fusion.fused or layer.attrs.get("constant") or layer.attrs.get("dead"):
        # folded into its host, a constant the converter precomputes, or a result nothing uses (the
        # converter drops it): parameters count, nothing else
        host = fusion.fused.get(layer.name, "constant" if layer.attrs.get("constant") else "dead")
        return _fused_cost(layer, host, w_bits, a_bits, nz_params)
    wb, ab = w_bits, a_bits
    m, ops = metrics.macs(layer), metrics.other_ops(layer)
    nz = metrics.nz_macs(layer, dict(counts))
    executed = nz if tgt.compute.skip_zeros else m  # what the hardware actually multiplies
    in_reads = fusion.unpadded.get(layer.name)
    t = traffic(layer, tgt, wb, ab, executed, nonzero_counts=dict(counts) if tgt.compute.skip_zeros else None,
                out_bits=out_bits, reads=in_reads)
    energy = layer_energy(layer, tgt, wb, ab, model=energy_model, mac_count=executed, ops=ops, moved=t,
                          arith=arith, reads=in_reads)
    timing = layer_timing(layer, tgt, wb, ab, executed, t, ops)
    reads, writes = metrics.act_elements(layer, in_reads)
    return LayerCost(
        name=layer.name,
        op=layer.op,
        target=layer.target,
        module=layer.module,
        input_shape=list(layer.input_shape),
        output_shape=list(layer.output_shape),
        macs=m,
        nz_macs=nz,
        params=layer.params,
        nz_params=nz_params,
        other_ops=ops,
        bops=m * wb * ab,
        weight_bytes=metrics.weight_bytes(layer, wb),
        act_bytes=math.ceil((reads * ab + writes * out_bits) / 8),
        flash_bytes=metrics.flash_bytes(layer, wb) + _folded_bias_bytes(layer, fusion.bn_hosts, wb),
        energy_pj=sum(energy.values()),
        energy_breakdown_pj=energy,
        latency_s=timing.seconds(tgt),
        cycles=timing.cycles,
        bound=timing.bound,
        arith_intensity=metrics.arith_intensity(layer),
        normalized_arith_intensity=0.0,
        w_bits=wb,
        a_bits=ab,
        arith=arith,
        utilization=timing.utilization,
        energy_pj_by_level={k: v for k, v in energy.items() if k != "compute"} if tgt.array else None,
    )


def layer_widths(graph: Graph, opts: Options, fusion: Fusion) -> list[tuple[int, int, int]]:
    """Each layer's (weight, input activation, output) widths, in graph order. With ``buffer_bits`` (the width each
    tensor is stored at) a layer without its own entry (a pool, a pad, a view) reads its input at that width; views
    and fused layers pass their source's width on."""
    per_layer, a_bits, stored = opts.layer_bits, opts.a_bits, dict(opts.buffer_bits or {})
    stored_width = {name: stored.get(name, a_bits) for name in graph.input_names}
    widths: list[tuple[int, int, int]] = []
    for layer in graph.layers:
        source_width = next((stored_width[i] for i in layer.inputs if i in stored_width), a_bits)
        own = per_layer.get(layer.name) or per_layer.get(layer.module)
        wb, ab = _layer_bits(layer, opts.w_bits, a_bits, per_layer)
        if opts.buffer_bits is not None and own is None:
            ab = source_width
        if layer.name in fusion.fused or layer.op in ALIAS_KINDS:
            stored_width[layer.name] = source_width
        out_bits = ab if opts.buffer_bits is None else stored.get(layer.name, a_bits)
        if layer.op in ALIAS_KINDS:
            out_bits = source_width if opts.buffer_bits is not None else out_bits
        if not _costless(layer, fusion):
            stored_width.setdefault(layer.name, out_bits)
        widths.append((wb, ab, out_bits))
    return widths


def _costless(layer: Layer, fusion: Fusion) -> bool:
    """Fused, constant or dead: priced by ``_fused_cost``, with no buffer of its own."""
    return layer.name in fusion.fused or bool(layer.attrs.get("constant")) or bool(layer.attrs.get("dead"))


def act_widths(graph: Graph, opts: Options, fusion: Fusion, widths: list[tuple[int, int, int]]) -> dict[str, int]:
    """The width each arena buffer is stored at where it is not the model's ``a_bits``: a graph input named in
    ``buffer_bits`` or ``layer_bits``, and every op that writes a buffer (its output width)."""
    per_layer, stored = opts.layer_bits, dict(opts.buffer_bits or {})
    out = {name: stored.get(name, per_layer[name][1] if name in per_layer else opts.a_bits)
           for name in graph.input_names if name in stored or name in per_layer}
    for layer, (_, _, out_bits) in zip(graph.layers, widths, strict=True):
        if not _costless(layer, fusion):
            out[layer.name] = out_bits
    return out


def price(graph: Graph, opts: Options, fusion: Fusion, widths: list[tuple[int, int, int]]) -> list[LayerCost]:
    """Stage 4: every layer's cost (``price_layer``), with AI normalized to the model's highest (seed 004)."""
    arith_of = opts.layer_arith
    layers = [price_layer(layer, opts.target, fusion, w_bits=wb, a_bits=ab, out_bits=out_bits,
                          arith=arith_of.get(layer.name) or arith_of.get(layer.module) or "mul",
                          energy_model=opts.energy_model)
              for layer, (wb, ab, out_bits) in zip(graph.layers, widths, strict=True)]
    top_ai = max((lc.arith_intensity for lc in layers), default=0.0)
    for lc in layers:
        lc.normalized_arith_intensity = lc.arith_intensity / top_ai if top_ai else 0.0
    return layers


def plan(graph: Graph, opts: Options, fusion: Fusion, act_bits_of: dict[str, int]) -> tuple[GreedyPlanner, int]:
    """Stage 5: the arena's planned head (TFLM's greedy planner) and its persistent tail, in bytes."""
    arena = plan_activations(graph, opts.a_bits, fusion.fused, act_bits_of, io=opts.io)
    tail = persistent_tail_bytes(tail_counts(graph, fusion.fused, io=opts.io, act_bits=opts.a_bits,
                                             per_channel_dense=opts.per_channel_dense))
    return arena, tail


def totals_of(layers: Sequence[LayerCost], tgt: Target, *, params: int, unowned_nz: int, arena: GreedyPlanner,
              tail: int) -> dict[str, Any]:
    """The model's totals from its layer costs, arena and tail: the one place they are summed (``analyze`` and
    ``search.CostModel`` both call it)."""
    breakdown: dict[str, float] = {}
    for lc in layers:
        for key, value in lc.energy_breakdown_pj.items():
            breakdown[key] = breakdown.get(key, 0.0) + value
    totals: dict[str, Any] = {
        "macs": sum(lc.macs for lc in layers),
        "params": params,
        # parameters no layer uses (an unused head) still count, as in ``params``
        "nz_params": sum(lc.nz_params for lc in layers) + unowned_nz,
        "nz_macs": sum(lc.nz_macs for lc in layers),
        "bops": sum(lc.bops for lc in layers),
        "weight_bytes": sum(lc.weight_bytes for lc in layers),
        "peak_sram_bytes": arena.peak_bytes(),
        # TFLM's persistent arena beside the planned head: tensor and node structs, op data, per-channel params
        "arena_tail_bytes": tail,
        "flash_bytes": sum(lc.flash_bytes for lc in layers),
        "energy_pj": sum(lc.energy_pj for lc in layers),
        "latency_s": sum(lc.latency_s for lc in layers),
        # beyond the contract: what the headline numbers are made of
        "other_ops": sum(lc.other_ops for lc in layers),
        "act_lower_bound_bytes": arena.lower_bound_bytes(),
        "energy_breakdown_pj": breakdown,
        "cycles": sum(lc.cycles for lc in layers),
    }
    if tgt.array is not None:  # SCALE-Sim's overall utilization: all MACs / (all cycles x PEs)
        executed_macs = totals["nz_macs"] if tgt.compute.skip_zeros else totals["macs"]
        totals["utilization"] = executed_macs / (totals["cycles"] * tgt.array.pes) if totals["cycles"] else 0.0
    return totals


def verdict(tgt: Target, totals: Mapping[str, Any]) -> list[str]:
    """Stage 6: what does not fit (empty when the model fits); TFLM's persistent tail counts on the MCUs only."""
    tail = totals["arena_tail_bytes"] if tgt.kind == "mcu" else 0
    return _fits(tgt, totals["peak_sram_bytes"], totals["flash_bytes"], tail)


def analyze(
    model: nn.Module | Graph,
    input_shape: Shape | Sequence[Shape] | None = None,
    target: str | Target = "stm32l476",
    *,
    bits: int = 8,
    act_bits: int | None = None,
    layer_bits: Mapping[str, tuple[int, int]] | None = None,
    layer_arith: Mapping[str, str] | None = None,
    buffer_bits: Mapping[str, int] | None = None,
    energy_model: str | None = None,
    strict: bool = False,
    name: str | None = None,
    count_like: Sequence[str] = (),
    io: str = "int8",
    per_channel_dense: bool = True,
) -> Report:
    """Price ``model`` on ``target``: per-layer and total MACs, bytes, energy, latency, peak SRAM, flash.

    ``bits`` is the weight width, ``act_bits`` the activation width (default: ``bits``);
    ``layer_bits`` overrides both per layer name or module path (mixed precision); ``layer_arith`` says, per
    layer name or module path, that its weight MACs are shifts, adds or XNOR-popcounts (default multiplies).
    ``strict`` makes an op without a pricing rule an error instead of an "unpriced" entry. ``io`` is the type of
    the model's input and output: ``"int8"`` (quantized, the default) or ``"float"`` (float32, converted by a
    QUANTIZE first and a DEQUANTIZE last, whose buffers the arena holds). ``per_channel_dense`` says the linear
    layers' weights are quantized per output channel (as TFLiteConverter wrote them in issue 9), which costs TFLM's
    persistent tail a multiplier and a shift per channel; ``False`` for per-tensor ones.

    The stages, in order: ``prepare`` (options) -> ``graph_of`` (capture) -> ``fuse`` -> ``price`` (each layer by
    ``price_layer``) -> ``plan`` (arena head and tail) -> ``totals_of`` -> ``verdict``.
    """
    opts = prepare(target, bits=bits, act_bits=act_bits, layer_bits=layer_bits, layer_arith=layer_arith,
                   buffer_bits=buffer_bits, energy_model=energy_model, strict=strict, count_like=count_like, io=io,
                   per_channel_dense=per_channel_dense)
    graph = graph_of(model, input_shape, name)
    unpriced = unpriced_ops(graph, opts.strict)
    fusion = fuse(graph)
    widths = layer_widths(graph, opts, fusion)
    layers = price(graph, opts, fusion, widths)
    arena, tail = plan(graph, opts, fusion, act_widths(graph, opts, fusion, widths))
    totals = totals_of(layers, opts.target, params=graph.total_params,
                       unowned_nz=sum(metrics.count_nonzero(p) for p in graph.unowned), arena=arena, tail=tail)
    violations = verdict(opts.target, totals)
    counts = {tool: count_like_tool(graph, tool) for tool in opts.count_like}
    return Report(
        model=graph.name,
        target=opts.target.name,
        w_bits=opts.w_bits,
        a_bits=opts.a_bits,
        layers=layers,
        totals=totals,
        fits=not violations,
        violations=violations,
        unpriced=unpriced,
        energy_model=opts.energy_model or opts.target.energy.model,
        arena=arena,
        count_like=counts,
        io=opts.io,
        verdict_note=_verdict_note(unpriced),
        tail_in_verdict=opts.target.kind == "mcu",
    )
