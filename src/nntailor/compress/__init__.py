"""Compression techniques: one function and one config each, dispatched through one registry."""

from nntailor.compress.base import CompressConfig, apply, config_from_dict, register, steps, walk
from nntailor.compress.fold import FoldBNConfig, fold_bn
from nntailor.compress.prune import GradualPruning, MaskHook, PruneConfig, prune, sparsity
from nntailor.compress.schedules import Schedule

__all__ = [
    "CompressConfig", "FoldBNConfig", "GradualPruning", "MaskHook", "PruneConfig", "Schedule", "apply",
    "config_from_dict", "fold_bn", "prune", "register", "sparsity", "steps", "walk",
]
