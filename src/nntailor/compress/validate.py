"""Check a whole recipe against the model's structure before its first step runs: a dry run, no training.

The contract (ARCHITECTURE.md) is that what a user can get wrong is refused before any long work. Each step is
checked against the model as the steps before it leave its *structure*: steps that change structure without
data (channel pruning, a channel budget, low rank, replace, fold_bn, the attention split of binarize and mixed
precision) are applied to a copy; steps that only change weight values (fine-tunes, unstructured pruning,
clustering, quantization) leave the layer names and shapes alone, so they are checked and skipped. Costs come
from the one cost model: a channel budget through ``check_budget``, a mixed-precision budget through the
step's own per-layer costs and integer program (zero sensitivities: feasibility only).
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Iterator
from contextlib import contextmanager

import torch.nn as nn

from nntailor.compress.allocate import BudgetConfig, check_budget
from nntailor.compress.attention import split_attention
from nntailor.compress.base import CompressConfig, Context, apply
from nntailor.compress.energy_aware import EnergyPruneConfig
from nntailor.compress.fold import FoldBNConfig
from nntailor.compress.lowrank import LowRankConfig
from nntailor.compress.prune import PruneConfig, masks_for, prunable_layers
from nntailor.compress.quant.binary import BinarizeConfig
from nntailor.compress.quant.hawq import MixedPrecisionConfig, _live, activation_groups, layer_costs
from nntailor.compress.quant.mixed import ActGroup, ilp_widths
from nntailor.compress.recipe import FinetuneConfig
from nntailor.compress.replace import ReplaceConfig
from nntailor.compress.structured import ChannelPruneConfig, prune_channels
from nntailor.cost.memory import activation_buffers
from nntailor.cost.report import check_bits
from nntailor.errors import UserError
from nntailor.graph import capture

# applied to the dry copy: they change layer names or shapes and need neither data nor training
_STRUCTURAL = (ChannelPruneConfig, LowRankConfig, ReplaceConfig, FoldBNConfig)
_SHOWN = 6  # real layer names listed next to a pattern that matches none


def validate_recipe(model: nn.Module, steps: list[CompressConfig], context: Context) -> None:
    """Raise ``UserError`` naming the step and the bad value for the first step that cannot run on ``model``."""
    dry = copy.deepcopy(model)
    technique_before = context.teacher is not None
    for i, step in enumerate(steps, start=1):
        where = f"step {i} ({step.step})"
        _check_patterns(dry, step, where)
        if isinstance(step, FinetuneConfig):
            if step.distill and not technique_before:
                raise UserError(f"{where}: distill needs a technique step before it (the teacher is the model then)")
            continue
        technique_before = True
        if isinstance(step, BudgetConfig | EnergyPruneConfig):
            check_bits(step.bits, f"{where}: bits")
        if isinstance(step, PruneConfig):
            _check_prune(dry, step, context, where)
        elif isinstance(step, BudgetConfig):
            with _named(where):
                sparsity = check_budget(dry, step, context)
            if sparsity > 0:
                prune_channels(dry, ChannelPruneConfig(sparsity=sparsity, input_shape=context.input_shape))
        elif isinstance(step, MixedPrecisionConfig):
            dry = split_attention(dry)
            with _named(where):
                _check_width_budget(dry, step, context)
        elif isinstance(step, BinarizeConfig):
            dry = split_attention(dry)
        elif isinstance(step, _STRUCTURAL):
            with _named(where):
                dry = apply(dry, step, context)


@contextmanager
def _named(where: str) -> Iterator[None]:
    """A technique's own refusal, prefixed with the step it came from."""
    try:
        yield
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None


def _layer_names(model: nn.Module) -> list[str]:
    return [name for name, _ in prunable_layers(model)]


def _check_patterns(model: nn.Module, step: CompressConfig, where: str) -> None:
    """Every fnmatch pattern a step names (``layers``, ``exclude``, ``ignore``, per-layer sparsity keys) must match
    a conv or linear layer: a typo would otherwise prune (or protect) nothing and still exit 0."""
    names = _layer_names(model)
    fields = {key: getattr(step, key, None) for key in ("layers", "exclude", "ignore")}
    if isinstance(step, PruneConfig) and isinstance(step.sparsity, dict):
        fields["sparsity"] = list(step.sparsity)
    for key, patterns in fields.items():
        for pattern in patterns or []:
            if not any(fnmatch.fnmatch(name, pattern) for name in names):
                shown = ", ".join(names[:_SHOWN]) + (", ..." if len(names) > _SHOWN else "")
                raise UserError(f"{where}: {key} {pattern!r} matches no conv or linear layer; "
                                f"the layers are {shown or 'none'}")


def _check_prune(model: nn.Module, step: PruneConfig, context: Context, where: str) -> None:
    if not list(prunable_layers(model, step)):
        raise UserError(f"{where}: no conv or linear layer matches the step's layers/exclude")
    if step.criterion == "magnitude" and (step.allocation != "sensitivity" or isinstance(step.sparsity, dict)):
        # the masks themselves need no data: N:M and block shapes, global scope with a per-layer mapping
        with _named(where):
            masks_for(model, step, context)


def _check_width_budget(model: nn.Module, step: MixedPrecisionConfig, context: Context) -> None:
    """The step's integer program with every sensitivity zero: refuses a budget below the smallest model (every
    layer at its lowest width) with the step's own message, before any Hessian trace is estimated."""
    names = [n for n, m in model.named_modules() if type(m) in (nn.Linear, nn.Conv2d)]
    if not names:
        raise UserError("mixed precision found no conv or linear layer to quantize")
    act_options = step.act_options()
    needs_graph = step.budget_metric != "weight_bytes" or act_options != [step.act_bits]
    if needs_graph and context.input_shape is None:
        return  # the step itself names what is missing
    if step.budget_metric in ("energy_pj", "latency_s", "peak_sram_bytes") and context.target is None:
        return
    buffers = activation_buffers(capture(model, context.input_shape)) if needs_graph else []
    members = activation_groups(buffers, names) if act_options != [step.act_bits] else []
    groups = [ActGroup(layers, dict.fromkeys(act_options, 0.0)) for layers in members]
    zero = {n: dict.fromkeys(step.bits, 0.0) for n in names}
    if step.budget_metric == "peak_sram_bytes":
        ilp_widths(zero, step.budget, groups=groups, live=_live(buffers, groups, step.act_bits),
                   fixed_act=step.act_bits, what=step.budget_metric)
        return
    cost, rest = layer_costs(model, names, step, context, act_options)
    ilp_widths(zero, step.budget - rest, cost=cost, groups=groups, fixed_act=step.act_bits,
               what=step.budget_metric)
