"""Energy-aware pruning (Yang, Chen, Sze, CVPR 2017): prune where the energy is.

The cost model prices each layer on the target (on a zero-skipping chip such as Eyeriss, pruned weights
save MACs and weight traffic). Layers are visited from the most to the least energy; each is pruned to
the highest sparsity level at which, after a short fine-tune, accuracy stays within ``accuracy_drop`` of
the dense model; the last level that passed is kept. The paper restores outputs by least squares between
steps; fine-tuning plays that part here. With ``Context.checkpoints`` each trial's fine-tune checkpoints
there, so an interrupted run resumes without retraining the trials it finished.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch.nn as nn
from pydantic import Field

from nntailor.compress.base import CompressConfig, Context, register
from nntailor.compress.prune import MaskHook, PruneConfig, prunable_layers, prune, sparsity
from nntailor.cost import analyze
from nntailor.errors import UserError
from nntailor.train import TrainConfig, evaluate, fit


class EnergyPruneConfig(CompressConfig):
    step: Literal["energy_prune"] = "energy_prune"
    accuracy_drop: float = Field(default=0.01, ge=0, le=1)  # allowed top-1 drop against the unpruned model
    levels: list[float] = Field(default_factory=lambda: [0.5, 0.7, 0.8, 0.9, 0.95])
    finetune_epochs: int = Field(default=1, ge=0)
    lr: float = Field(default=1e-3, gt=0)
    bits: int = 16  # Eyeriss computes in 16-bit fixed point
    checkpoint_every: int = Field(default=0, ge=0)  # steps within a trial's fine-tune epoch; 0 = epoch ends only


def layer_energy_order(model: nn.Module, input_shape: tuple[int, ...], target: object, bits: int) -> list[str]:
    """Prunable layers, most energy first, by the cost model."""
    report = analyze(model, input_shape, target, bits=bits)
    prunable = {name for name, _ in prunable_layers(model)}
    energy = {lc.module: lc.energy_pj for lc in report.layers if lc.module in prunable}
    return sorted(energy, key=energy.get, reverse=True)


@register(EnergyPruneConfig)
def energy_prune(model: nn.Module, config: EnergyPruneConfig, context: Context | None = None) -> nn.Module:
    context = context or Context()
    train = context.need_train("energy-aware pruning")
    if context.test is None or context.target is None or context.input_shape is None:
        raise UserError("energy-aware pruning needs test data, the input shape and a target")
    floor = evaluate(model, context.test) - config.accuracy_drop
    tune = TrainConfig(epochs=config.finetune_epochs, lr=config.lr, progress=False, seed=context.seed,
                       checkpoint_every=config.checkpoint_every)
    trials = 0
    for name in layer_energy_order(model, context.input_shape, context.target, config.bits):
        start = sparsity(model)[name]
        for level in sorted(config.levels):
            if level <= start:
                continue
            trial = copy.deepcopy(model)
            prune(trial, PruneConfig(sparsity={name: level}))
            trials += 1
            # Trials run in a fixed order from a deterministic start, so trial n of a rerun is trial n of the
            # interrupted run: a finished one loads its checkpoint without training, an unfinished one resumes.
            checkpoint = context.checkpoints / f"trial{trials}.pt" if context.checkpoints else None
            fit(trial, train, tune.model_copy(update={"checkpoint": checkpoint}), hooks=[MaskHook(trial)])
            if evaluate(trial, context.test) < floor:
                break  # this layer can give no more: keep the last level that passed
            model.load_state_dict(trial.state_dict())
    return model
