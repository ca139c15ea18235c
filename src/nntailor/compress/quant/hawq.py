"""The mixed-precision step: HAWQ-V2 sensitivities, a HAWQ-V3-style integer program, then quantization.

Budgets come from the one cost model: weight bytes, BOPs, the energy or latency the target would spend (each
layer priced at each width by ``analyze``), or peak SRAM. With ``act_bit_options`` the program also picks the
activation widths: each stored activation tensor (a group of layers reading it) gets one width, priced by
HAWQ-V2's activation Omega (Hutchinson trace of the loss Hessian w.r.t. that tensor). Peak SRAM depends only
on those widths: the program keeps the bytes live at every op under the budget (the arena's lower bound), then
the TFLM greedy planner checks the real arena; if fragmentation puts it over, the bound is tightened by the
excess and the program solved again (as Rusci et al. 2020 size activations to an MCU's RAM).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn as nn
from pydantic import Field, field_validator
from torch.utils.data import DataLoader

from nntailor.compress.attention import split_attention
from nntailor.compress.base import CompressConfig, Context, register
from nntailor.compress.hessian import activation_traces, hessian_traces, top_eigenvalues
from nntailor.compress.quant.mixed import ActGroup, LiveSet, activation_omega, ilp_widths, omega, size_cost
from nntailor.compress.quant.ptq import QuantizeConfig, quantize_model
from nntailor.cost import analyze
from nntailor.cost.memory import Buffer, activation_buffers, buffer_widths, components, live_sets, plan_buffers
from nntailor.cost.planner import align
from nntailor.errors import UserError
from nntailor.graph import capture

BudgetMetric = Literal["weight_bytes", "bops", "energy_pj", "latency_s", "peak_sram_bytes"]


class MixedPrecisionConfig(CompressConfig):
    step: Literal["mixed_precision"] = "mixed_precision"
    bits: list[int] = Field(default_factory=lambda: [2, 4, 8])
    budget_metric: BudgetMetric = "weight_bytes"
    budget: float = Field(gt=0)
    act_bits: int = 8
    # activation widths to choose from per stored tensor; default: act_bits only, or 2/4/8 up to act_bits for
    # a peak-SRAM budget (which nothing else moves)
    act_bit_options: list[int] | None = None
    # HAWQ-V2: Tr(H_l)/n_l; HAWQ (v1): the top eigenvalue of H_l, by power iteration
    sensitivity: Literal["trace", "eigenvalue"] = "trace"
    group_size: int | None = Field(default=None, ge=1)  # Q-BERT group-wise ranges for the chosen widths
    per_channel: bool = True  # weight ranges per output channel (TFLite), or one per tensor
    trace_samples: int = Field(default=32, ge=1)
    trace_batches: int = Field(default=2, ge=1)
    batch_size: int = Field(default=128, ge=1)

    @field_validator("bits", "act_bits", "act_bit_options")
    @classmethod
    def _widths(cls, v: int | list[int] | None) -> int | list[int] | None:
        for b in v if isinstance(v, list) else [] if v is None else [v]:
            if not 2 <= b <= 16:
                raise ValueError(f"bits must be in 2..16, got {b}")
        if isinstance(v, list) and not v:
            raise ValueError("give at least one width")
        return v

    def act_options(self) -> list[int]:
        if self.act_bit_options:
            return sorted(set(self.act_bit_options))
        if self.budget_metric == "peak_sram_bytes":
            return sorted({b for b in (2, 4, 8) if b < self.act_bits} | {self.act_bits})
        return [self.act_bits]


def layer_costs(model: nn.Module, names: list[str], config: MixedPrecisionConfig, context: Context,
                act_options: list[int]) -> tuple[dict[str, dict[tuple[int, int], float]], float]:
    """Per layer and (weight, input activation) width, the budget metric; plus what the rest costs regardless."""
    # layers outside any activation group read at act_bits even when act_bits is not among the options
    pairs = [(w, a) for w in config.bits for a in sorted(set(act_options) | {config.act_bits})]
    weights = {n: model.get_submodule(n).weight for n in names}
    if config.budget_metric == "weight_bytes":
        size = size_cost(weights, config.bits)
        return {n: {(w, a): size[n][w] for w, a in pairs} for n in names}, 0.0
    report = analyze(model, context.input_shape, context.target)
    if config.budget_metric == "bops":
        macs = {n: sum(lc.macs for lc in report.layers if lc.module == n) for n in names}
        return {n: {(w, a): macs[n] * w * a for w, a in pairs} for n in names}, 0.0
    cost: dict[str, dict[tuple[int, int], float]] = {n: {} for n in names}
    rest = 0.0
    key = config.budget_metric
    # every buffer priced as stored at the widest width it could take (no buffer is stored wider), so the sum
    # bounds the deployed energy or latency from above and a solution within budget stays within it when priced
    widest = max(a for _, a in pairs)
    for w, a in pairs:
        report = analyze(model, context.input_shape, context.target, layer_bits={n: (w, a) for n in names},
                         bits=config.act_bits, act_bits=widest, buffer_bits={})
        for n in names:
            cost[n][(w, a)] = sum(getattr(lc, key) for lc in report.layers if lc.module == n)
        rest = sum(getattr(lc, key) for lc in report.layers if lc.module not in names)
    return cost, rest


def activation_groups(buffers: list[Buffer], names: list[str]) -> list[list[str]]:
    """Layers whose inputs must share one width: those reading the same free buffer (or tied buffers)."""
    free = [b for b in buffers if b.readers and not b.fixed and b.readers <= set(names)]
    grouped = {n for buf in free for n in buf.readers}
    links = [(first, other) for buf in free for first, *rest in [sorted(buf.readers)] for other in rest]
    return components([n for n in names if n in grouped], links)


def _batches(train, config: MixedPrecisionConfig, seed: int) -> list:
    loader = DataLoader(train, batch_size=config.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    return [b for _, b in zip(range(config.trace_batches), loader, strict=False)]


@register(MixedPrecisionConfig)
def mixed_precision(model: nn.Module, config: MixedPrecisionConfig, context: Context | None = None) -> nn.Module:
    context = context or Context()
    train = context.need_train("mixed precision (Hessian traces and calibration)")
    model = split_attention(model)  # q, k and v as their own layers, each with its own width
    names = [n for n, m in model.named_modules() if type(m) in (nn.Linear, nn.Conv2d)]
    if not names:
        raise UserError("mixed precision found no conv or linear layer to quantize")
    act_options = config.act_options()
    needs_graph = config.budget_metric not in ("weight_bytes",) or act_options != [config.act_bits]
    if needs_graph and context.input_shape is None:
        raise UserError(f"a {config.budget_metric} budget with activation widths {act_options} needs the input shape")
    if config.budget_metric in ("energy_pj", "latency_s", "peak_sram_bytes") and context.target is None:
        raise UserError(f"a {config.budget_metric} budget needs a target")
    buffers = activation_buffers(capture(model, context.input_shape)) if needs_graph else []
    member_lists = activation_groups(buffers, names) if act_options != [config.act_bits] else []

    batches = _batches(train, config, context.seed)
    weights = {n: model.get_submodule(n).weight for n in names}
    generator = torch.Generator().manual_seed(context.seed)
    if config.sensitivity == "trace":
        curvature = hessian_traces(model, list(weights.values()), batches, samples=config.trace_samples,
                                   generator=generator)
        traces = dict(zip(names, curvature, strict=True))
    else:  # omega() divides by n_l: scale lambda_max by n_l so the product is lambda_max x ||Q(W) - W||^2
        curvature = top_eigenvalues(model, list(weights.values()), batches, generator=generator)
        traces = {n: lam * weights[n].numel() for n, lam in zip(names, curvature, strict=True)}
    sensitivity = omega(traces, weights, config.bits, config.per_channel, config.group_size)
    groups = []
    if member_lists:
        grouped = [n for members in member_lists for n in members]
        act_tr, inputs = activation_traces(model, [model.get_submodule(n) for n in grouped], batches,
                                           samples=config.trace_samples, generator=generator)
        act_omega = {n: activation_omega(t, x, act_options) for n, t, x in zip(grouped, act_tr, inputs, strict=True)}
        groups = [ActGroup(members, {a: sum(act_omega[n][a] for n in members) for a in act_options})
                  for members in member_lists]

    if config.budget_metric == "peak_sram_bytes":
        widths, act_widths = _solve_peak_sram(config, sensitivity, groups, buffers)
    else:
        cost, rest = layer_costs(model, names, config, context, act_options)
        widths, act_widths = ilp_widths(sensitivity, config.budget - rest, cost=cost, groups=groups,
                                        fixed_act=config.act_bits, what=config.budget_metric)
    return quantize_layers(model, widths, config.act_bits, context, config.group_size, act_widths,
                           config.per_channel)


def _live(buffers: list[Buffer], groups: list[ActGroup], act_bits: int) -> list[LiveSet]:
    group_of = {n: g for g, group in enumerate(groups) for n in group.layers}
    sets = []
    for live in live_sets(buffers):
        s = LiveSet(0.0)
        for buf in live:
            owners = {group_of.get(r) for r in buf.readers}
            g = owners.pop() if len(owners) == 1 and not buf.fixed else None  # free only if one group reads it all
            if g is None:
                s.fixed_bytes += align(math.ceil(buf.numel * act_bits / 8))
            else:  # sized as the planner sizes it, so the bound is tight where the plan has no gaps
                s.free.append((g, {a: align(math.ceil(buf.numel * a / 8)) for a in groups[g].sensitivity}))
        sets.append(s)
    return sets


def _solve_peak_sram(config: MixedPrecisionConfig, sensitivity: dict[str, dict[int, float]],
                     groups: list[ActGroup], buffers: list[Buffer],
                     tries: int = 20) -> tuple[dict[str, int], dict[str, int]]:
    """Live-set constraints (a lower bound on the arena), then the TFLM planner on the answer: when its plan
    is larger (fragmentation), that combination of widths is cut off and the program solved again."""
    live = _live(buffers, groups, config.act_bits)
    rejected: list[list[int]] = []
    peak = 0
    for _ in range(tries):
        widths, act_widths = ilp_widths(sensitivity, config.budget, groups=groups, live=live, exclude=rejected,
                                        fixed_act=config.act_bits, what="peak_sram_bytes")
        # the arena alone, on the buffers found once (what analyze's peak_sram_bytes is)
        peak = plan_buffers(buffers, config.act_bits, buffer_widths(buffers, act_widths)).peak_bytes()
        if peak <= config.budget:
            return widths, act_widths
        if not groups:
            break
        rejected.append([act_widths[group.layers[0]] for group in groups])
    raise UserError(f"peak_sram_bytes budget {config.budget:,.0f}: the arena planner's plans stay above it "
                    f"(fragmentation; the last needed {peak:,.0f} after {len(rejected) + 1} tries)")


def quantize_layers(model: nn.Module, widths: dict[str, int], act_bits: int, context: Context,
                    group_size: int | None = None, act_widths: dict[str, int] | None = None,
                    per_channel: bool = True) -> nn.Module:
    """Quantize each named layer at its own weight width and input-activation width (``act_widths``, default
    ``act_bits``): one quantize step per distinct pair."""
    pairs = {n: (w, (act_widths or {}).get(n, act_bits)) for n, w in widths.items()}
    for pair in sorted(set(pairs.values())):
        layers = [n for n, p in pairs.items() if p == pair]
        config = QuantizeConfig(weight_bits=pair[0], act_bits=pair[1], layers=layers, group_size=group_size,
                                per_channel=per_channel)
        model = quantize_model(model, config, context)
    return model


def arm_sensitivity_bits(
    model: nn.Module,
    context: Context,
    bits: list[int],
    *,
    act_bits: int = 8,
    tolerance: float = 0.005,
    per_channel: bool = True,
) -> dict[str, int]:
    """The Arm baseline: layers from the largest to the smallest, each given the lowest width whose PTQ accuracy
    (the other layers at their widths so far, untouched ones at the highest) stays within ``tolerance``."""
    import copy

    from nntailor.train import evaluate

    if context.test is None:
        raise UserError("the Arm sensitivity baseline needs test data")
    names = [n for n, m in model.named_modules() if type(m) in (nn.Linear, nn.Conv2d)]
    sizes = {n: model.get_submodule(n).weight.numel() for n in names}
    reference = evaluate(model, context.test)
    widths = dict.fromkeys(names, max(bits))
    for name in sorted(names, key=sizes.get, reverse=True):
        for b in sorted(bits):
            trial = {**widths, name: b}
            quantized = quantize_layers(copy.deepcopy(model), trial, act_bits, context, per_channel=per_channel)
            accuracy = evaluate(quantized, context.test)
            if accuracy >= reference - tolerance:
                widths[name] = b
                break
    return widths
