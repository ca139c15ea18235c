"""Compression techniques: one function and one config each, dispatched through one registry."""

from nntailor.compress.allocate import BudgetConfig
from nntailor.compress.base import CompressConfig, Context, apply, config_from_dict, register, steps, walk
from nntailor.compress.cluster import ClusterConfig, ClusterHook, cluster
from nntailor.compress.deep_compression import storage_table
from nntailor.compress.energy_aware import EnergyPruneConfig
from nntailor.compress.fold import FoldBNConfig, fold_bn
from nntailor.compress.lowrank import LowRankConfig
from nntailor.compress.prune import GradualPruning, MaskHook, PruneConfig, prune, sparsity
from nntailor.compress.quant import QuantizeConfig, quant_bits
from nntailor.compress.recipe import FinetuneConfig
from nntailor.compress.replace import NoNorm, ReplaceConfig
from nntailor.compress.schedules import Schedule
from nntailor.compress.sparse_exec import SparseLinear, SparseLinearConfig
from nntailor.compress.structured import ChannelPruneConfig, prune_channels

__all__ = [
    "BudgetConfig", "ChannelPruneConfig", "ClusterConfig", "ClusterHook", "CompressConfig", "Context",
    "EnergyPruneConfig", "FinetuneConfig", "FoldBNConfig", "GradualPruning", "LowRankConfig", "MaskHook", "NoNorm",
    "PruneConfig", "QuantizeConfig", "ReplaceConfig", "Schedule", "SparseLinear", "SparseLinearConfig", "apply",
    "cluster", "config_from_dict", "fold_bn", "prune", "prune_channels", "quant_bits", "register", "sparsity",
    "steps", "storage_table", "walk",
]
