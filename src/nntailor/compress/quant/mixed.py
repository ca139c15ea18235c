"""Bits per layer from the Hessian: HAWQ-V2's sensitivity and a HAWQ-V3-style integer program.

Omega_l(b) = Tr(H_l) / n_l x ||Q_b(W_l) - W_l||^2 (HAWQ-V2): the loss increase that quantizing layer l to b
bits costs, to second order. The integer program picks one width per layer minimizing sum Omega subject to a
budget on any additive cost: weight bytes (params x b / 8), BOPs (MACs x b x b_act), or a per-layer cost the
cost model supplies (energy, latency). Solved by scipy's milp (HiGHS). Pure arrays in, widths out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from nntailor.compress.quant.arith import fake_quant, qparams, weight_spec
from nntailor.errors import UserError


def quantization_error(weight: torch.Tensor, bits: int) -> float:
    """||Q_b(W) - W||^2 with the weight spec deploy uses (symmetric, per output channel)."""
    spec = weight_spec(bits)
    flat = weight.detach().reshape(weight.shape[0], -1)
    scale, zp = qparams(flat.min(1).values, flat.max(1).values, spec)
    return float(((fake_quant(weight.detach(), scale, zp, spec) - weight.detach()) ** 2).sum())


def omega(traces: Mapping[str, float], weights: Mapping[str, torch.Tensor],
          bit_options: Sequence[int]) -> dict[str, dict[int, float]]:
    """HAWQ-V2's Omega per layer and width."""
    return {name: {b: traces[name] / weights[name].numel() * quantization_error(weights[name], b)
                   for b in bit_options} for name in traces}


def ilp_bits(
    sensitivity: Mapping[str, Mapping[int, float]],
    cost: Mapping[str, Mapping[int, float]],
    budget: float,
    *,
    what: str = "cost",
) -> dict[str, int]:
    """argmin sum_l Omega_l(b_l) s.t. sum_l cost_l(b_l) <= budget, one width per layer (binary program)."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    layers = list(sensitivity)
    options = [(name, b) for name in layers for b in sensitivity[name]]
    smallest = sum(min(cost[name].values()) for name in layers)
    if smallest > budget:
        raise UserError(f"{what} budget {budget:,.0f} is below the smallest possible model ({smallest:,.0f}, every "
                        f"layer at its lowest width)")
    c = np.array([sensitivity[name][b] for name, b in options])
    one_each = np.array([[1.0 if name == layer else 0.0 for name, _ in options] for layer in layers])
    within = np.array([[cost[name][b] for name, b in options]])
    result = milp(
        c,
        constraints=[LinearConstraint(one_each, 1, 1), LinearConstraint(within, -np.inf, budget)],
        integrality=np.ones(len(options)),
        bounds=Bounds(0, 1),
    )
    if not result.success:
        raise UserError(f"no bit allocation meets the {what} budget: {result.message}")
    chosen = [options[i] for i, x in enumerate(result.x) if x > 0.5]
    return dict(chosen)


def size_cost(weights: Mapping[str, torch.Tensor], bit_options: Sequence[int]) -> dict[str, dict[int, float]]:
    """Weight bytes per layer and width."""
    return {name: {b: w.numel() * b / 8 for b in bit_options} for name, w in weights.items()}


def bops_cost(macs: Mapping[str, int], bit_options: Sequence[int], act_bits: int = 8) -> dict[str, dict[int, float]]:
    """BOPs (MACs x b_w x b_a) per layer and width."""
    return {name: {b: m * b * act_bits for b in bit_options} for name, m in macs.items()}
