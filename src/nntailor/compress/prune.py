"""Unstructured, N:M and block pruning by magnitude (Han et al. 2015; NVIDIA's 2:4), per layer or global.

Pruning zeroes weights in place. The mask of a pruned layer is exactly "weight != 0", so it needs no
state of its own: ``MaskHook`` re-derives it when fine-tuning starts (also after a resume from a
checkpoint) and keeps pruned weights at zero through every optimizer step.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn as nn
from pydantic import Field, field_validator, model_validator

from nntailor.compress.base import CompressConfig, register
from nntailor.compress.schedules import Schedule
from nntailor.errors import UserError
from nntailor.train import TrainHook

PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)


class PruneConfig(CompressConfig):
    """``sparsity`` is the fraction of weights set to zero: one number, or per layer path (fnmatch patterns)."""

    step: Literal["prune"] = "prune"
    sparsity: float | dict[str, float] = Field(default=0.5)
    granularity: Literal["unstructured", "nm", "block"] = "unstructured"
    scope: Literal["layer", "global"] = "layer"
    n: int = Field(default=2, ge=1)  # N:M keeps n of every m consecutive input weights
    m: int = Field(default=4, ge=1)
    block: tuple[int, int] = (1, 4)  # rows x input columns zeroed together
    layers: list[str] | None = None  # fnmatch patterns of module paths; default: every conv and linear
    exclude: list[str] = Field(default_factory=list)

    @field_validator("sparsity")
    @classmethod
    def _in_range(cls, v: float | dict[str, float]) -> float | dict[str, float]:
        for value in v.values() if isinstance(v, dict) else [v]:
            if not 0.0 <= value < 1.0:
                raise ValueError(f"sparsity must be in [0, 1), got {value}")
        return v

    @model_validator(mode="after")
    def _nm(self) -> PruneConfig:
        if self.n >= self.m:
            raise ValueError(f"N:M needs n < m, got {self.n}:{self.m}")
        return self


def prunable_layers(model: nn.Module, config: PruneConfig | None = None) -> Iterator[tuple[str, nn.Module]]:
    for name, module in model.named_modules():
        if not isinstance(module, PRUNABLE):
            continue
        if config is not None:
            if config.layers is not None and not any(fnmatch.fnmatch(name, p) for p in config.layers):
                continue
            if any(fnmatch.fnmatch(name, p) for p in config.exclude):
                continue
        yield name, module


def _layer_sparsity(config: PruneConfig, name: str) -> float:
    if isinstance(config.sparsity, float | int):
        return float(config.sparsity)
    for pattern, value in config.sparsity.items():
        if fnmatch.fnmatch(name, pattern):
            return value
    return 0.0


def magnitude_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep the largest |w|: exactly round(sparsity x numel) weights are zeroed (ties by position)."""
    k = int(round(sparsity * weight.numel()))
    mask = torch.ones_like(weight, dtype=torch.bool)
    if k:
        drop = torch.argsort(weight.detach().abs().flatten(), stable=True)[:k]
        mask.view(-1)[drop] = False
    return mask


def nm_mask(weight: torch.Tensor, n: int, m: int, name: str = "layer") -> torch.Tensor:
    """N:M along the input dimension (the reduction axis of the dot product, as sparse tensor cores use it)."""
    w = weight.detach()
    rows = w.reshape(w.shape[0], -1) if w.dim() > 1 else w.reshape(1, -1)
    if rows.shape[1] % m:
        raise UserError(f"N:M {n}:{m} needs the input dimension of {name} ({rows.shape[1]}) to be a multiple of {m}")
    groups = rows.abs().reshape(rows.shape[0], -1, m)
    keep = torch.topk(groups, n, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    return mask.reshape(w.shape)


def block_mask(weight: torch.Tensor, sparsity: float, block: tuple[int, int], name: str = "layer") -> torch.Tensor:
    """Zero whole (rows x cols) blocks of the 2-D weight view, smallest L1 norm first."""
    w = weight.detach()
    rows = w.reshape(w.shape[0], -1)
    br, bc = block
    if rows.shape[0] % br or rows.shape[1] % bc:
        raise UserError(f"block {br}x{bc} does not tile {name}'s weight of {tuple(rows.shape)}")
    norms = rows.abs().reshape(rows.shape[0] // br, br, rows.shape[1] // bc, bc).sum(dim=(1, 3))
    block_keep = magnitude_mask(norms, sparsity)
    mask = block_keep.repeat_interleave(br, 0).repeat_interleave(bc, 1)
    return mask.reshape(w.shape)


def _global_threshold_masks(layers: list[tuple[str, nn.Module]], config: PruneConfig) -> dict[str, torch.Tensor]:
    """One magnitude threshold over all layers together: exactly round(s x total) weights go."""
    sparsity = float(config.sparsity) if not isinstance(config.sparsity, dict) else None
    if sparsity is None:
        raise UserError("global pruning takes one sparsity, not a per-layer mapping")
    flat = torch.cat([m.weight.detach().abs().flatten() for _, m in layers])
    k = int(round(sparsity * flat.numel()))
    keep = torch.ones_like(flat, dtype=torch.bool)
    if k:
        keep[torch.argsort(flat, stable=True)[:k]] = False
    masks, start = {}, 0
    for name, module in layers:
        n = module.weight.numel()
        masks[name] = keep[start : start + n].view_as(module.weight)
        start += n
    return masks


def masks_for(model: nn.Module, config: PruneConfig) -> dict[str, torch.Tensor]:
    layers = list(prunable_layers(model, config))
    if not layers:
        raise UserError("no conv or linear layer matches the pruning step's layers/exclude")
    if config.granularity == "nm":
        return {name: nm_mask(m.weight, config.n, config.m, name) for name, m in layers}
    if config.scope == "global":
        if config.granularity != "unstructured":
            raise UserError("global scope is for unstructured pruning")
        return _global_threshold_masks(layers, config)
    if config.granularity == "block":
        return {name: block_mask(m.weight, _layer_sparsity(config, name), config.block, name) for name, m in layers}
    return {name: magnitude_mask(m.weight, _layer_sparsity(config, name)) for name, m in layers}


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    for name, mask in masks.items():
        weight = model.get_submodule(name).weight
        weight.mul_(mask.to(weight.dtype))


@register(PruneConfig)
def prune(model: nn.Module, config: PruneConfig = PruneConfig()) -> nn.Module:
    """Zero weights by magnitude as ``config`` says; weights already zero stay zero (masks compose)."""
    masks = masks_for(model, config)
    for name, mask in masks.items():  # a weight pruned earlier never comes back
        masks[name] = mask & (model.get_submodule(name).weight.detach() != 0)
    apply_masks(model, masks)
    return model


def current_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The masks of every prunable layer that has zeros: "weight != 0"."""
    masks = {}
    for name, module in prunable_layers(model):
        mask = module.weight.detach() != 0
        if not bool(mask.all()):
            masks[name] = mask
    return masks


def sparsity(model: nn.Module) -> dict[str, float]:
    """Fraction of zero weights per prunable layer, and over all of them (key ``"total"``)."""
    out, zeros, total = {}, 0, 0
    for name, module in prunable_layers(model):
        z = int((module.weight.detach() == 0).sum())
        out[name] = z / module.weight.numel()
        zeros, total = zeros + z, total + module.weight.numel()
    out["total"] = zeros / total if total else 0.0
    return out


class MaskHook(TrainHook):
    """Keeps pruned weights at zero while fine-tuning: gradients masked before, weights after each step."""

    def __init__(self, model: nn.Module) -> None:
        self.masks = current_masks(model)

    def before_step(self, model: nn.Module) -> None:
        for name, mask in self.masks.items():
            grad = model.get_submodule(name).weight.grad
            if grad is not None:
                grad.mul_(mask.to(grad.dtype))

    def after_step(self, model: nn.Module) -> None:
        apply_masks(model, self.masks)


class GradualPruning(TrainHook):
    """Prunes to ``schedule.sparsity_at(step)`` at each of its pruning steps during fine-tuning; masks
    hold in between (Zhu & Gupta's gradual pruning, or Han's iterative prune-retrain with kind="iterative")."""

    def __init__(self, model: nn.Module, config: PruneConfig, schedule: Schedule) -> None:
        if config.granularity == "nm":
            raise UserError("N:M pruning is one-shot: its sparsity is fixed at 1 - n/m")
        self.config = config
        self.schedule = schedule
        self.step = 0
        self.steps = set(schedule.pruning_steps())
        self.mask = MaskHook(model)
        self._prune_now(model)

    def _prune_now(self, model: nn.Module) -> None:
        target = self.schedule.sparsity_at(self.step)
        prune(model, self.config.model_copy(update={"sparsity": target}))
        self.mask = MaskHook(model)

    def before_step(self, model: nn.Module) -> None:
        self.mask.before_step(model)

    def after_step(self, model: nn.Module) -> None:
        self.mask.after_step(model)
        self.step += 1
        if self.step in self.steps:
            self._prune_now(model)


def nm_compatible(model: nn.Module, m: int) -> list[str]:
    """Layers whose input dimension is not a multiple of m (they cannot take N:M)."""
    return [name for name, mod in prunable_layers(model) if math.prod(mod.weight.shape[1:]) % m]
