"""Bits per layer from the Hessian: HAWQ-V2's sensitivity and a HAWQ-V3-style integer program.

Omega_l(b) = Tr(H_l) / n_l x ||Q_b(W_l) - W_l||^2 (HAWQ-V2): the loss increase that quantizing layer l to b
bits costs, to second order. The integer program picks one width per layer minimizing sum Omega subject to a
budget on any additive cost: weight bytes (params x b / 8), BOPs (MACs x b x b_act), or a per-layer cost the
cost model supplies (energy, latency). Solved by scipy's milp (HiGHS). Pure arrays in, widths out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from nntailor.compress.quant.arith import activation_spec, fake_quant, qparams, weight_spec
from nntailor.compress.quant.modules import quantize_weight
from nntailor.errors import UserError


def quantization_error(weight: torch.Tensor, bits: int, per_channel: bool = True,
                       group_size: int | None = None) -> float:
    """||Q_b(W) - W||^2 with the weight spec the quantize step will use (symmetric; per output channel by
    default, as deploy wants, or per tensor, or per group of rows)."""
    spec = weight_spec(bits, per_channel=per_channel and group_size is None)
    if group_size is not None:
        spec = replace(spec, group_size=group_size)
    w = weight.detach()
    return float(((quantize_weight(w, spec) - w) ** 2).sum())


def omega(traces: Mapping[str, float], weights: Mapping[str, torch.Tensor], bit_options: Sequence[int],
          per_channel: bool = True, group_size: int | None = None) -> dict[str, dict[int, float]]:
    """HAWQ-V2's Omega per layer and width."""
    return {name: {b: traces[name] / weights[name].numel()
                   * quantization_error(weights[name], b, per_channel, group_size)
                   for b in bit_options} for name in traces}


@dataclass
class ActGroup:
    """Layers whose input activations are one stored tensor (or tied through max pooling, padding, ...): their
    input quantizers share one width. ``sensitivity`` is HAWQ-V2's Omega per width, summed over the layers."""

    layers: list[str]
    sensitivity: dict[int, float]


@dataclass
class LiveSet:
    """The buffers live at one op: ``fixed_bytes`` at fixed widths, plus free ones as (group index, {width:
    bytes}), the bytes as the arena planner sizes them (aligned)."""

    fixed_bytes: float
    free: list[tuple[int, dict[int, float]]] = field(default_factory=list)


def ilp_widths(
    weight_sensitivity: Mapping[str, Mapping[int, float]],
    budget: float,
    *,
    cost: Mapping[str, Mapping[tuple[int, int], float]] | None = None,
    groups: Sequence[ActGroup] = (),
    live: Sequence[LiveSet] = (),
    exclude: Sequence[Sequence[int]] = (),
    fixed_act: int = 8,
    what: str = "cost",
) -> tuple[dict[str, int], dict[str, int]]:
    """Weight width per layer and input-activation width per group: argmin sum Omega (weights and activations)
    subject to either an additive budget (``cost[layer][(w, a)]``, a the layer's input width) or, with ``live``,
    peak SRAM: at every op, the bytes of the live buffers <= budget (the arena's live-set lower bound).

    Binary variables z[l, w, a] (one pair per layer) and y[g, a] (one width per group), tied by
    sum_w z[l, w, a] = y[g(l), a], so BOPs (w x a) and per-layer energy stay linear. Layers in no group read
    activations at ``fixed_act``. ``exclude`` lists group-width assignments (one width per group, in group
    order) the program may not return: cuts for answers the arena planner rejected.
    Returns ({layer: weight bits}, {layer: input activation bits}).
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    layers = list(weight_sensitivity)
    group_of = {name: g for g, group in enumerate(groups) for name in group.layers}
    act_options = {name: sorted(groups[group_of[name]].sensitivity) if name in group_of else [fixed_act]
                   for name in layers}
    z = [(name, w, a) for name in layers for w in weight_sensitivity[name] for a in act_options[name]]
    y = [(g, a) for g, group in enumerate(groups) for a in sorted(group.sensitivity)]
    n = len(z) + len(y)

    def row(entries: Mapping[int, float]) -> np.ndarray:
        r = np.zeros(n)
        for i, v in entries.items():
            r[i] = v
        return r

    rows, lo, hi = [], [], []
    for name in layers:  # one (w, a) pair per layer
        rows.append(row({i: 1.0 for i, (nm, _, _) in enumerate(z) if nm == name}))
        lo.append(1)
        hi.append(1)
        if name in group_of:  # ... whose a is its group's
            for j, (g, a) in enumerate(y):
                if g == group_of[name]:
                    entries = {i: 1.0 for i, (nm, _, act) in enumerate(z) if nm == name and act == a}
                    rows.append(row({**entries, len(z) + j: -1.0}))
                    lo.append(0)
                    hi.append(0)
    for g in range(len(groups)):  # one width per group
        rows.append(row({len(z) + j: 1.0 for j, (gg, _) in enumerate(y) if gg == g}))
        lo.append(1)
        hi.append(1)

    for assignment in exclude:  # not this combination again: at most len(groups) - 1 of its choices
        rows.append(row({len(z) + j: 1.0 for j, (g, a) in enumerate(y) if assignment[g] == a}))
        lo.append(-np.inf)
        hi.append(len(groups) - 1)
    if live:
        smallest = max(s.fixed_bytes + sum(min(per_width.values()) for _, per_width in s.free) for s in live)
        for s in live:
            entries: dict[int, float] = {}
            for g, per_width in s.free:
                for j, (gg, a) in enumerate(y):
                    if gg == g:
                        entries[len(z) + j] = entries.get(len(z) + j, 0.0) + per_width[a]
            rows.append(row(entries))
            lo.append(-np.inf)
            hi.append(budget - s.fixed_bytes)
    elif cost is not None:
        smallest = sum(min(cost[name][(w, a)] for nm, w, a in z if nm == name) for name in layers)
        rows.append(row({i: cost[name][(w, a)] for i, (name, w, a) in enumerate(z)}))
        lo.append(-np.inf)
        hi.append(budget)
    else:
        raise ValueError("ilp_widths needs an additive cost or live sets")
    if smallest > budget:
        raise UserError(f"{what} budget {budget:,.0f} is below the smallest possible model ({smallest:,.0f}, every "
                        f"layer at its lowest width)")

    c = np.array([weight_sensitivity[name][w] for name, w, _ in z] + [groups[g].sensitivity[a] for g, a in y])
    result = milp(c, constraints=[LinearConstraint(np.array(rows), lo, hi)], integrality=np.ones(n),
                  bounds=Bounds(0, 1))
    if not result.success:
        raise UserError(f"no bit allocation meets the {what} budget: {result.message}")
    chosen = [z[i] for i in range(len(z)) if result.x[i] > 0.5]
    return {name: w for name, w, _ in chosen}, {name: a for name, _, a in chosen}


def ilp_bits(
    sensitivity: Mapping[str, Mapping[int, float]],
    cost: Mapping[str, Mapping[int, float]],
    budget: float,
    *,
    what: str = "cost",
) -> dict[str, int]:
    """argmin sum_l Omega_l(b_l) s.t. sum_l cost_l(b_l) <= budget, one width per layer (weights only)."""
    pairs = {name: {(b, 8): c for b, c in per_width.items()} for name, per_width in cost.items()}
    return ilp_widths(sensitivity, budget, cost=pairs, fixed_act=8, what=what)[0]


def activation_error(x: torch.Tensor, bits: int) -> float:
    """||Q_b(x) - x||^2 with the activation spec (asymmetric per tensor, range from this tensor)."""
    spec = activation_spec(bits)
    scale, zp = qparams(x.min(), x.max(), spec)
    return float(((fake_quant(x, scale, zp, spec) - x) ** 2).sum())


def activation_omega(traces: Sequence[float], inputs: Sequence[torch.Tensor],
                     bit_options: Sequence[int]) -> dict[int, float]:
    """HAWQ-V2's Omega for one layer's input activation, averaged over batches: Tr(H_x)/n_x x ||Q(x) - x||^2."""
    return {b: sum(t / x.numel() * activation_error(x, b) for t, x in zip(traces, inputs, strict=True))
            / max(len(inputs), 1) for b in bit_options}


def size_cost(weights: Mapping[str, torch.Tensor], bit_options: Sequence[int]) -> dict[str, dict[int, float]]:
    """Weight bytes per layer and width."""
    return {name: {b: w.numel() * b / 8 for b in bit_options} for name, w in weights.items()}


def bops_cost(macs: Mapping[str, int], bit_options: Sequence[int], act_bits: int = 8) -> dict[str, dict[int, float]]:
    """BOPs (MACs x b_w x b_a) per layer and width."""
    return {name: {b: m * b * act_bits for b in bit_options} for name, m in macs.items()}


def pareto_frontier(
    sensitivity: Mapping[str, Mapping[int, float]],
    cost: Mapping[str, Mapping[int, float]],
    points: int = 16,
) -> list[dict]:
    """HAWQ-V2's Pareto frontier of sum Omega against cost (size, BOPs, ...): the integer program solved at
    ``points`` budgets from the smallest to the largest model; each point is optimal for its budget, and
    points that another dominates (no more cost, no more Omega) are dropped. Sorted by cost."""
    layers = list(sensitivity)
    lo = sum(min(cost[n].values()) for n in layers)
    hi = sum(max(cost[n].values()) for n in layers)
    found: dict[tuple, dict] = {}
    for i in range(points):
        budget = lo + (hi - lo) * i / max(points - 1, 1)
        widths = ilp_bits(sensitivity, cost, budget)
        key = tuple(widths[n] for n in layers)
        found[key] = {"cost": sum(cost[n][widths[n]] for n in layers),
                      "omega": sum(sensitivity[n][widths[n]] for n in layers), "widths": widths}
    candidates = sorted(found.values(), key=lambda p: (p["cost"], p["omega"]))
    frontier: list[dict] = []
    for p in candidates:
        if not frontier or p["omega"] < frontier[-1]["omega"]:
            frontier.append(p)
    return frontier
