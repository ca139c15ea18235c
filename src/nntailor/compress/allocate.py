"""How much to prune each layer: uniform, seed 003's alpha x log|var_i|, a sensitivity scan, or a budget.

- uniform: every layer the global sparsity.
- log_size (seed 003, PocketFlow): s_i = alpha log|var_i|, |var_i| the layer's weight count, alpha so that
  the weighted mean meets the global target: alpha = pr sum|var_i| / sum(|var_i| log|var_i|). Layers that
  would pass ``max_sparsity`` are clipped and alpha is solved again (bisection) so the target still holds.
- sensitivity (Han et al. 2015): prune one layer at a time at increasing sparsity, measure accuracy, give
  each layer the largest sparsity whose accuracy drop stays within a tolerance.
- budget: the smallest channel pruning ratio whose cost (MACs, energy, peak SRAM, flash, latency on a
  target, from the one cost model) fits a budget; impossible budgets are refused before any training.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Literal

import torch.nn as nn
from pydantic import Field
from torch.utils.data import Dataset

from nntailor.compress.base import CompressConfig, Context, register
from nntailor.compress.prune import PruneConfig, prunable_layers, prune
from nntailor.compress.structured import ChannelPruneConfig, prune_channels
from nntailor.cost import analyze
from nntailor.errors import UserError
from nntailor.report.format import format_bytes
from nntailor.train import evaluate

Metric = Literal["macs", "energy_pj", "peak_sram_bytes", "flash_bytes", "latency_s", "params"]


def layer_sizes(model: nn.Module, config: PruneConfig | None = None) -> dict[str, int]:
    return {name: m.weight.numel() for name, m in prunable_layers(model, config)}


def log_size(sizes: dict[str, int], sparsity: float, max_sparsity: float = 0.98) -> dict[str, float]:
    """alpha x log|var_i| per layer, clipped to ``max_sparsity``, alpha solved so sum s_i|var_i| = pr sum|var_i|."""
    if not 0 <= sparsity < max_sparsity:
        raise UserError(f"global sparsity {sparsity} must be in [0, {max_sparsity})")
    total = sum(sizes.values())
    goal = sparsity * total

    def allocation(alpha: float) -> dict[str, float]:
        return {k: min(max_sparsity, alpha * math.log(max(n, 2))) for k, n in sizes.items()}

    def removed(alpha: float) -> float:
        return sum(s * sizes[k] for k, s in allocation(alpha).items())

    # the unclipped closed form of seed 003; bisection only if clipping made it fall short
    alpha = goal / sum(n * math.log(max(n, 2)) for n in sizes.values()) if total else 0.0
    if removed(alpha) < goal - 1e-9 * total:
        lo, hi = alpha, alpha
        while removed(hi) < goal:
            hi *= 2
        for _ in range(100):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if removed(mid) < goal else (lo, mid)
        alpha = hi
    return allocation(alpha)


def sensitivity_scan(
    model: nn.Module, test: Dataset, levels: Sequence[float] = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)
) -> dict[str, list[tuple[float, float]]]:
    """Accuracy after pruning each layer alone (magnitude, no fine-tuning) at each level."""
    curves: dict[str, list[tuple[float, float]]] = {}
    for name in layer_sizes(model):
        curve = []
        for level in levels:
            trial = copy.deepcopy(model)
            prune(trial, PruneConfig(sparsity={name: level}))
            curve.append((level, evaluate(trial, test)))
        curves[name] = curve
    return curves


def from_sensitivity(curves: dict[str, list[tuple[float, float]]], baseline: float,
                     tolerance: float = 0.01) -> dict[str, float]:
    """Each layer's largest scanned sparsity whose accuracy is within ``tolerance`` of the baseline."""
    return {name: max((s for s, acc in curve if acc >= baseline - tolerance), default=0.0)
            for name, curve in curves.items()}


def channel_budget(
    model: nn.Module,
    input_shape: tuple[int, ...],
    target: object,
    metric: Metric,
    budget: float,
    *,
    bits: int = 8,
    max_sparsity: float = 0.9,
    tolerance: float = 0.01,
) -> float:
    """The smallest channel sparsity (to ``tolerance``) whose ``metric`` is within ``budget``.

    Works on copies; raises ``UserError`` naming the metric, the budget and the smallest reachable value
    when even ``max_sparsity`` does not fit. Cheap: no training, only the cost model.
    """

    def cost(sparsity: float) -> float:
        trial = copy.deepcopy(model)
        if sparsity > 0:
            prune_channels(trial, ChannelPruneConfig(sparsity=sparsity, input_shape=input_shape))
        return float(analyze(trial, input_shape, target, bits=bits).totals[metric])

    if cost(0.0) <= budget:
        return 0.0
    smallest = cost(max_sparsity)
    if smallest > budget:
        shown = format_bytes if metric.endswith("bytes") else (lambda v: f"{v:,.6g}")
        raise UserError(
            f"budget {metric} <= {shown(budget)} cannot be met: removing {max_sparsity:.0%} of the channels "
            f"still gives {shown(smallest)} ({shown(smallest - budget)} over)"
        )
    lo, hi = 0.0, max_sparsity
    while hi - lo > tolerance:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if cost(mid) <= budget else (mid, hi)
    return hi


class BudgetConfig(CompressConfig):
    """Prune channels just enough for ``metric`` on the context's target to fit ``budget`` (bytes, pJ, s, MACs)."""

    step: Literal["budget"] = "budget"
    metric: Metric
    budget: float = Field(gt=0)
    bits: int = 8
    max_sparsity: float = Field(default=0.9, gt=0, lt=1)


def check_budget(model: nn.Module, config: BudgetConfig, context: Context) -> float:
    """The channel sparsity the budget needs, or a UserError if no pruning reaches it."""
    if context.input_shape is None or context.target is None:
        raise UserError("a budget step needs the input shape and the target (--data and --target)")
    return channel_budget(model, context.input_shape, context.target, config.metric, config.budget,
                          bits=config.bits, max_sparsity=config.max_sparsity)


@register(BudgetConfig)
def meet_budget(model: nn.Module, config: BudgetConfig, context: Context | None = None) -> nn.Module:
    context = context or Context()
    sparsity = check_budget(model, config, context)
    if sparsity > 0:
        prune_channels(model, ChannelPruneConfig(sparsity=sparsity, input_shape=context.input_shape))
    return model
