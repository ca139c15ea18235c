"""The mixed-precision step: HAWQ-V2 sensitivities, a HAWQ-V3-style integer program, then quantization.

Budgets come from the one cost model: weight bytes, BOPs, or the energy or latency the target would spend
(each layer priced at each width by ``analyze``). Peak SRAM is not offered: it depends on activation widths
only, which this step keeps uniform.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
from pydantic import Field
from torch.utils.data import DataLoader

from nntailor.compress.attention import split_attention
from nntailor.compress.base import CompressConfig, Context, register
from nntailor.compress.hessian import hessian_traces, top_eigenvalues
from nntailor.compress.quant.mixed import bops_cost, ilp_bits, omega, size_cost
from nntailor.compress.quant.ptq import QuantizeConfig, quantize_model
from nntailor.cost import analyze
from nntailor.errors import UserError


class MixedPrecisionConfig(CompressConfig):
    step: Literal["mixed_precision"] = "mixed_precision"
    bits: list[int] = Field(default_factory=lambda: [2, 4, 8])
    budget_metric: Literal["weight_bytes", "bops", "energy_pj", "latency_s"] = "weight_bytes"
    budget: float = Field(gt=0)
    act_bits: int = 8
    # HAWQ-V2: Tr(H_l)/n_l; HAWQ (v1): the top eigenvalue of H_l, by power iteration
    sensitivity: Literal["trace", "eigenvalue"] = "trace"
    group_size: int | None = Field(default=None, ge=1)  # Q-BERT group-wise ranges for the chosen widths
    trace_samples: int = Field(default=32, ge=1)
    trace_batches: int = Field(default=2, ge=1)
    batch_size: int = Field(default=128, ge=1)


def layer_costs(model: nn.Module, names: list[str], config: MixedPrecisionConfig,
                context: Context) -> tuple[dict[str, dict[int, float]], float]:
    """Per layer and width, the budget metric; plus what the rest of the network costs regardless."""
    weights = {n: model.get_submodule(n).weight for n in names}
    if config.budget_metric == "weight_bytes":
        return size_cost(weights, config.bits), 0.0
    if context.input_shape is None or context.target is None:
        raise UserError(f"a {config.budget_metric} budget needs the input shape and the target")
    if config.budget_metric == "bops":
        report = analyze(model, context.input_shape, context.target)
        macs = {n: sum(lc.macs for lc in report.layers if lc.module == n) for n in names}
        return bops_cost(macs, config.bits, config.act_bits), 0.0
    cost: dict[str, dict[int, float]] = {n: {} for n in names}
    rest = 0.0
    for b in config.bits:
        report = analyze(model, context.input_shape, context.target,
                         layer_bits={n: (b, config.act_bits) for n in names}, bits=config.act_bits)
        key = config.budget_metric
        for n in names:
            cost[n][b] = sum(getattr(lc, key) for lc in report.layers if lc.module == n)
        rest = sum(getattr(lc, key) for lc in report.layers if lc.module not in names)
    return cost, rest


@register(MixedPrecisionConfig)
def mixed_precision(model: nn.Module, config: MixedPrecisionConfig, context: Context | None = None) -> nn.Module:
    context = context or Context()
    train = context.need_train("mixed precision (Hessian traces and calibration)")
    model = split_attention(model)  # q, k and v as their own layers, each with its own width
    names = [n for n, m in model.named_modules() if type(m) in (nn.Linear, nn.Conv2d)]
    if not names:
        raise UserError("mixed precision found no conv or linear layer to quantize")
    loader = DataLoader(train, batch_size=config.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(context.seed))
    batches = [b for _, b in zip(range(config.trace_batches), loader, strict=False)]
    weights = {n: model.get_submodule(n).weight for n in names}
    generator = torch.Generator().manual_seed(context.seed)
    if config.sensitivity == "trace":
        curvature = hessian_traces(model, list(weights.values()), batches, samples=config.trace_samples,
                                   generator=generator)
        traces = dict(zip(names, curvature, strict=True))
    else:  # omega() divides by n_l: scale lambda_max by n_l so the product is lambda_max x ||Q(W) - W||^2
        curvature = top_eigenvalues(model, list(weights.values()), batches, generator=generator)
        traces = {n: lam * weights[n].numel() for n, lam in zip(names, curvature, strict=True)}
    sensitivity = omega(traces, weights, config.bits)
    cost, rest = layer_costs(model, names, config, context)
    chosen = ilp_bits(sensitivity, cost, config.budget - rest, what=config.budget_metric)
    return quantize_layers(model, chosen, config.act_bits, context, config.group_size)


def quantize_layers(model: nn.Module, widths: dict[str, int], act_bits: int, context: Context,
                    group_size: int | None = None) -> nn.Module:
    """Quantize each named layer at its own weight width (one calibration per width group)."""
    for b in sorted(set(widths.values())):
        layers = [n for n, width in widths.items() if width == b]
        config = QuantizeConfig(weight_bits=b, act_bits=act_bits, layers=layers, group_size=group_size)
        model = quantize_model(model, config, context)
    return model


def arm_sensitivity_bits(
    model: nn.Module,
    context: Context,
    bits: list[int],
    *,
    act_bits: int = 8,
    tolerance: float = 0.005,
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
            accuracy = evaluate(quantize_layers(copy.deepcopy(model), trial, act_bits, context), context.test)
            if accuracy >= reference - tolerance:
                widths[name] = b
                break
    return widths
