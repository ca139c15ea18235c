"""Structured pruning that physically removes filters and channels, kept valid across residual adds,
concatenations, depthwise and grouped convs by torch-pruning's dependency graph (Fang et al., CVPR 2023).

The model comes back smaller (fewer channels, fewer MACs), not masked. The classifier (the last conv or
linear in execution order) is never pruned, so the number of classes stays.
"""

from __future__ import annotations

import fnmatch
import warnings
from typing import Literal

import torch
import torch.nn as nn
from pydantic import Field

from nntailor.compress.base import CompressConfig, register
from nntailor.errors import UserError
from nntailor.graph.capture import capture
from nntailor.graph.ops import MAC_KINDS


class ChannelPruneConfig(CompressConfig):
    """Remove ``sparsity`` of the output channels of every prunable group (per layer or global ranking)."""

    step: Literal["prune_channels"] = "prune_channels"
    sparsity: float = Field(default=0.5, ge=0.0, lt=1.0)
    importance: Literal["l1", "l2"] = "l1"  # filter norm, Li et al. 2017 (l1) / He et al. 2018 (l2)
    scope: Literal["layer", "global"] = "layer"
    input_shape: tuple[int, ...]
    ignore: list[str] = Field(default_factory=list)  # fnmatch patterns of module paths never pruned
    round_to: int | None = Field(default=None, ge=1)  # keep channel counts a multiple (SIMD width)


def classifier_path(model: nn.Module, input_shape: tuple[int, ...]) -> str | None:
    """Module path of the last conv/linear executed: its outputs are the classes."""
    macs = [layer.module for layer in capture(model, input_shape) if layer.op in MAC_KINDS and layer.module]
    return macs[-1] if macs else None


@register(ChannelPruneConfig)
def prune_channels(model: nn.Module, config: ChannelPruneConfig) -> nn.Module:
    import torch_pruning as tp

    if config.sparsity == 0:
        return model
    keep = {classifier_path(model, config.input_shape)}
    ignored = [m for name, m in model.named_modules() if name in keep or any(fnmatch.fnmatch(name, p)
                                                                            for p in config.ignore)]
    example = torch.zeros(config.input_shape)
    importance = tp.importance.MagnitudeImportance(p=1 if config.importance == "l1" else 2)
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch-pruning warns about unwrapped parameters it handles
            pruner = tp.pruner.MetaPruner(
                model, example, importance=importance, pruning_ratio=config.sparsity,
                global_pruning=config.scope == "global", ignored_layers=ignored, round_to=config.round_to,
            )
            pruner.step()
            with torch.no_grad():
                model(example)
    except Exception as exc:
        raise UserError(
            f"structured pruning (torch-pruning) failed on {type(model).__name__}: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        model.train(was_training)
    return model
