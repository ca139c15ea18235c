"""Recipes: a YAML list of steps (techniques and fine-tunes) run in order, resumable after an interrupt.

    steps:
      - {step: finetune, epochs: 3}          # train the float baseline first, if it is untrained
      - {step: prune, sparsity: 0.9}
      - {step: finetune, epochs: 2}          # masks are kept automatically
      - {step: cluster, bits: 5}
      - {step: finetune, epochs: 1, optimizer: sgd, lr: 0.0001}   # centroids fine-tuned

A fine-tune step keeps what earlier steps imposed: pruned weights stay zero (``MaskHook``) and shared
weights stay shared (``ClusterHook``). Resuming needs no state of its own: techniques are deterministic
(seeded) and are replayed; each fine-tune step resumes from, or skips past, its own checkpoint
(``checkpoint_every: N`` adds one every N steps within an epoch), and a technique that fine-tunes inside
(``energy_prune``) keeps its own in ``checkpoints/step<i>/``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch.nn as nn
from pydantic import Field

from nntailor.compress.base import CompressConfig, Context, apply, config_from_dict, register
from nntailor.compress.cluster import ClusterConfig, ClusterHook
from nntailor.compress.prune import GradualPruning, MaskHook, PruneConfig, current_masks
from nntailor.compress.regularize import GroupLasso
from nntailor.compress.schedules import Schedule
from nntailor.errors import UserError
from nntailor.train import Distillation, TrainConfig, TrainHook, fit, load_checkpoint
from nntailor.yamlfile import read_yaml


class FinetuneConfig(CompressConfig):
    """Fine-tune with whatever constraints earlier steps left (masks, shared weights)."""

    step: Literal["finetune"] = "finetune"
    epochs: int = Field(default=1, ge=0)
    lr: float = Field(default=1e-3, gt=0)
    batch_size: int = Field(default=64, ge=1)
    optimizer: Literal["adam", "sgd"] = "adam"
    weight_decay: float = Field(default=0.0, ge=0)
    max_steps: int | None = Field(default=None, ge=1)
    checkpoint_every: int = Field(default=0, ge=0)  # steps between checkpoints within an epoch; 0 = epoch ends only
    # prune while training: to schedule.final by schedule.kind (cubic = Zhu & Gupta), "global" or per layer
    schedule: Schedule | None = None
    scope: Literal["layer", "global"] = "layer"
    group_lasso: float = Field(default=0.0, ge=0)  # SSL strength (Wen et al. 2016); 0 = off
    # Hinton distillation from the model as it was before the recipe's first technique (the float baseline)
    distill: bool = False
    temperature: float = Field(default=4.0, gt=0)
    alpha: float = Field(default=0.9, ge=0, le=1)
    group_lasso_groups: list[Literal["filters", "channels"]] = Field(default_factory=lambda: ["filters"])


@register(FinetuneConfig)
def finetune(model: nn.Module, config: FinetuneConfig, context: Context | None = None) -> nn.Module:
    """A fine-tune on its own (outside a recipe): keeps pruned weights at zero."""
    return run_recipe(model, [config], context or Context(), progress=False)


def load_recipe(path: str | Path) -> list[CompressConfig]:
    data = read_yaml(path, "recipe")
    steps = data.get("steps") if isinstance(data, dict) else data
    if not isinstance(steps, list) or not steps:
        raise UserError(f"recipe {path}: expected a non-empty list of steps (or a mapping with 'steps:')")
    return [config_from_dict(step, where=f"recipe {path} step {i + 1}") for i, step in enumerate(steps)]


def _check_same_model(path: Path, model: nn.Module) -> None:
    """A checkpoint of another model (a folder reused for a different run) is refused in one line with the way
    out; load_state_dict's own error spans many lines and names no remedy."""
    saved = load_checkpoint(path)["model"]
    ours = model.state_dict()
    differ = sorted(k for k in saved.keys() | ours.keys()
                    if k not in saved or k not in ours or saved[k].shape != ours[k].shape)
    if differ:
        raise UserError(f"checkpoint {path} is from another model ({len(differ)} tensors differ, first {differ[0]!r}); "
                        f"use a fresh --out or remove {path.parent.parent}")


def run_recipe(
    model: nn.Module,
    steps: list[CompressConfig],
    context: Context,
    *,
    checkpoints: Path | None = None,
    progress: bool = True,
    on_step: Callable[[int, CompressConfig, nn.Module], None] | None = None,
    start: int = 0,
) -> nn.Module:
    """Run ``steps`` in order; fine-tunes checkpoint into ``checkpoints/step<i>.pt`` when given.

    ``start`` numbers the steps when a recipe is run in parts (checkpoint names and seeds stay the same).
    """
    clustered = False
    teacher = context.teacher
    for i, step in enumerate(steps, start=start):
        if teacher is None and not isinstance(step, FinetuneConfig):
            teacher = context.teacher = copy.deepcopy(model).eval()  # the model before any technique
        if isinstance(step, FinetuneConfig):
            hooks: list[TrainHook] = []
            if clustered:
                hooks.append(ClusterHook(model))
            elif step.schedule is not None:
                hooks.append(GradualPruning(model, PruneConfig(scope=step.scope), step.schedule))
            elif current_masks(model):
                hooks.append(MaskHook(model))
            if step.group_lasso:
                hooks.append(GroupLasso(model, step.group_lasso, step.group_lasso_groups))
            if step.distill:
                if teacher is None:
                    raise UserError("a distill step needs a technique before it (the teacher is the model then)")
                hooks.append(Distillation(teacher, step.temperature, step.alpha))
            config = TrainConfig(
                epochs=step.epochs, lr=step.lr, batch_size=step.batch_size, optimizer=step.optimizer,
                weight_decay=step.weight_decay, max_steps=step.max_steps, seed=context.seed + i,
                checkpoint=checkpoints / f"step{i + 1}.pt" if checkpoints else None, progress=progress,
                checkpoint_every=step.checkpoint_every,
            )
            if config.checkpoint is not None and config.checkpoint.exists():
                _check_same_model(config.checkpoint, model)
            fit(model, context.need_train("a finetune step"), config, hooks=hooks)
        else:
            own = checkpoints / f"step{i + 1}" if checkpoints else None  # a technique's own fine-tunes
            model = apply(model, step, dataclasses.replace(context, checkpoints=own))
            clustered = clustered or isinstance(step, ClusterConfig)
        if on_step is not None:
            on_step(i, step, model)
    return model

