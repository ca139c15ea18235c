"""Unstructured, N:M and block pruning, per layer or global, by magnitude (Han et al. 2015) or by Optimal
Brain Damage saliency (LeCun et al. 1990, seed 002: s_k = 1/2 h_kk w_k^2, h_kk from the loss's Hessian).

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
from torch.utils.data import DataLoader

from nntailor.compress.base import CompressConfig, Context, register
from nntailor.compress.hessian import fisher_diagonal, hessian_diagonal
from nntailor.compress.schedules import Schedule
from nntailor.errors import UserError
from nntailor.train import TrainHook

PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)


class PruneConfig(CompressConfig):
    """``sparsity`` is the fraction of weights set to zero: one number, or per layer path (fnmatch patterns)."""

    step: Literal["prune"] = "prune"
    sparsity: float | dict[str, float] = Field(default=0.5)
    # "kernel" and "strided" are Anwar et al.'s (2015) kernel-level and intra-kernel strided sparsity
    granularity: Literal["unstructured", "nm", "block", "kernel", "strided"] = "unstructured"
    stride: int = Field(default=2, ge=2)  # strided: keep one of every ``stride`` positions of each kernel
    scope: Literal["layer", "global"] = "layer"
    n: int = Field(default=2, ge=1)  # N:M keeps n of every m consecutive input weights
    m: int = Field(default=4, ge=1)
    block: tuple[int, int] = (1, 4)  # rows x input columns zeroed together
    layers: list[str] | None = None  # fnmatch patterns of module paths; default: every conv and linear
    exclude: list[str] = Field(default_factory=list)
    criterion: Literal["magnitude", "obd"] = "magnitude"
    # how one global sparsity is spread over layers (compress.allocate); "sensitivity" needs test data
    allocation: Literal["uniform", "log_size", "sensitivity"] = "uniform"
    tolerance: float = Field(default=0.01, ge=0, le=1)  # sensitivity: accuracy drop allowed per layer
    # OBD's h_kk: the Gauss-Newton/Fisher diagonal (LeCun's choice, never negative) or the true Hessian's
    # diagonal by Hutchinson (noisy, and negative away from a minimum)
    hessian: Literal["fisher", "hutchinson"] = "fisher"
    hessian_samples: int = Field(default=8, ge=1)  # OBD with hutchinson: Rademacher vectors per batch
    hessian_batches: int = Field(default=4, ge=1)  # OBD: batches of training data the Hessian is averaged over
    batch_size: int = Field(default=128, ge=1)

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


def prunable_layers(model: nn.Module, config: CompressConfig | None = None) -> Iterator[tuple[str, nn.Module]]:
    """Conv and linear layers, filtered by the config's ``layers`` / ``exclude`` fnmatch patterns if it has them."""
    for name, module in model.named_modules():
        if not isinstance(module, PRUNABLE):
            continue
        if config is not None:
            layers, exclude = getattr(config, "layers", None), getattr(config, "exclude", ())
            if layers is not None and not any(fnmatch.fnmatch(name, p) for p in layers):
                continue
            if any(fnmatch.fnmatch(name, p) for p in exclude):
                continue
        yield name, module


def _layer_sparsity(config: PruneConfig, name: str) -> float:
    if isinstance(config.sparsity, float | int):
        return float(config.sparsity)
    for pattern, value in config.sparsity.items():
        if fnmatch.fnmatch(name, pattern):
            return value
    return 0.0


def magnitude_mask(score: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep the largest scores (|w| for magnitude): exactly round(sparsity x numel) go (ties by position)."""
    k = int(round(sparsity * score.numel()))
    mask = torch.ones_like(score, dtype=torch.bool)
    if k:
        drop = torch.argsort(score.detach().flatten(), stable=True)[:k]
        mask.view(-1)[drop] = False
    return mask


def nm_mask(score: torch.Tensor, n: int, m: int, name: str = "layer") -> torch.Tensor:
    """N:M along the input dimension (the reduction axis of the dot product, as sparse tensor cores use it)."""
    w = score.detach()
    rows = w.reshape(w.shape[0], -1) if w.dim() > 1 else w.reshape(1, -1)
    if rows.shape[1] % m:
        raise UserError(f"N:M {n}:{m} needs the input dimension of {name} ({rows.shape[1]}) to be a multiple of {m}")
    groups = rows.reshape(rows.shape[0], -1, m)
    keep = torch.topk(groups, n, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    return mask.reshape(w.shape)


def block_mask(score: torch.Tensor, sparsity: float, block: tuple[int, int], name: str = "layer") -> torch.Tensor:
    """Zero whole (rows x cols) blocks of the 2-D weight view, smallest summed score (L1 norm) first."""
    w = score.detach()
    rows = w.reshape(w.shape[0], -1)
    br, bc = block
    if rows.shape[0] % br or rows.shape[1] % bc:
        raise UserError(f"block {br}x{bc} does not tile {name}'s weight of {tuple(rows.shape)}")
    norms = rows.reshape(rows.shape[0] // br, br, rows.shape[1] // bc, bc).sum(dim=(1, 3))
    block_keep = magnitude_mask(norms, sparsity)
    mask = block_keep.repeat_interleave(br, 0).repeat_interleave(bc, 1)
    return mask.reshape(w.shape)


def strided_mask(score: torch.Tensor, stride: int, name: str = "layer") -> torch.Tensor:
    """Anwar et al. (2015) intra-kernel strided sparsity: in each k x k kernel keep the positions
    offset, offset + stride, ... of its flattened taps, the offset chosen per kernel to keep the most score."""
    if score.dim() != 4:
        raise UserError(f"strided sparsity is for 2-D convolutions; {name} has a {score.dim()}-D weight")
    out_c, in_c, kh, kw = score.shape
    taps = score.detach().reshape(out_c, in_c, kh * kw)
    positions = torch.arange(kh * kw)
    best = torch.stack([taps[..., positions % stride == o].sum(-1) for o in range(stride)], -1).argmax(-1)
    mask = (positions.view(1, 1, -1) % stride) == best.unsqueeze(-1)
    return mask.reshape(score.shape)


def kernel_mask(score: torch.Tensor, sparsity: float, name: str = "layer") -> torch.Tensor:
    """Anwar et al.'s kernel-level sparsity: whole k x k kernels (one input channel of one filter), smallest
    summed score first."""
    if score.dim() < 3:
        raise UserError(f"kernel-level sparsity is for convolutions; {name} has a {score.dim()}-D weight")
    return block_mask(score, sparsity, (1, math.prod(score.shape[2:])), name)


def _global_threshold_masks(scores: dict[str, torch.Tensor], config: PruneConfig) -> dict[str, torch.Tensor]:
    """One threshold over all layers together: exactly round(s x total) weights go."""
    sparsity = float(config.sparsity) if not isinstance(config.sparsity, dict) else None
    if sparsity is None:
        raise UserError("global pruning takes one sparsity, not a per-layer mapping")
    flat = torch.cat([score.flatten() for score in scores.values()])
    k = int(round(sparsity * flat.numel()))
    keep = torch.ones_like(flat, dtype=torch.bool)
    if k:
        keep[torch.argsort(flat, stable=True)[:k]] = False
    masks, start = {}, 0
    for name, score in scores.items():
        masks[name] = keep[start : start + score.numel()].view_as(score)
        start += score.numel()
    return masks


def obd_saliency(model: nn.Module, layers: list[tuple[str, nn.Module]], config: PruneConfig,
                 context: Context) -> dict[str, torch.Tensor]:
    """s_k = 1/2 h_kk w_k^2 with h_kk from the training loss (Gauss-Newton/Fisher or Hutchinson, seeded)."""
    train = context.need_train("OBD pruning")
    loader = DataLoader(train, batch_size=config.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(context.seed))
    batches = [batch for _, batch in zip(range(config.hessian_batches), loader, strict=False)]
    params = [m.weight for _, m in layers]
    generator = torch.Generator().manual_seed(context.seed)
    if config.hessian == "fisher":
        diag = fisher_diagonal(model, params, batches, generator=generator)
    else:
        diag = hessian_diagonal(model, params, batches, samples=config.hessian_samples, generator=generator)
    return {name: 0.5 * h * m.weight.detach() ** 2 for (name, m), h in zip(layers, diag, strict=True)}


def _allocate(model: nn.Module, config: PruneConfig, context: Context | None) -> PruneConfig:
    """Turn one global sparsity into per-layer sparsities, as ``config.allocation`` says."""
    if config.allocation == "uniform" or isinstance(config.sparsity, dict):
        return config
    from nntailor.compress import allocate

    if config.allocation == "log_size":
        per_layer = allocate.log_size(allocate.layer_sizes(model, config), float(config.sparsity))
    else:
        context = context or Context()
        if context.test is None:
            raise UserError("sensitivity allocation needs test data (--data, or Context(test=...))")
        from nntailor.train import evaluate

        curves = allocate.sensitivity_scan(model, context.test)
        per_layer = allocate.from_sensitivity(curves, evaluate(model, context.test), config.tolerance)
    return config.model_copy(update={"sparsity": per_layer, "allocation": "uniform"})


def masks_for(model: nn.Module, config: PruneConfig, context: Context | None = None) -> dict[str, torch.Tensor]:
    config = _allocate(model, config, context)
    layers = list(prunable_layers(model, config))
    if not layers:
        raise UserError("no conv or linear layer matches the pruning step's layers/exclude")
    if config.criterion == "obd":
        scores = obd_saliency(model, layers, config, context or Context())
    else:
        scores = {name: m.weight.detach().abs() for name, m in layers}
    if config.granularity == "nm":
        return {name: nm_mask(scores[name], config.n, config.m, name) for name in scores}
    if config.scope == "global":
        if config.granularity != "unstructured":
            raise UserError("global scope is for unstructured pruning")
        return _global_threshold_masks(scores, config)
    if config.granularity == "block":
        return {name: block_mask(scores[name], _layer_sparsity(config, name), config.block, name) for name in scores}
    if config.granularity == "kernel":
        return {name: kernel_mask(scores[name], _layer_sparsity(config, name), name) for name in scores}
    if config.granularity == "strided":
        return {name: strided_mask(scores[name], config.stride, name) for name in scores}
    return {name: magnitude_mask(scores[name], _layer_sparsity(config, name)) for name in scores}


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    for name, mask in masks.items():
        weight = model.get_submodule(name).weight
        weight.mul_(mask.to(weight.dtype))


@register(PruneConfig)
def prune(model: nn.Module, config: PruneConfig = PruneConfig(), context: Context | None = None) -> nn.Module:
    """Zero weights as ``config`` says; weights already zero stay zero (masks compose)."""
    masks = masks_for(model, config, context)
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
