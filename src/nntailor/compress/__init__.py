"""Compression techniques: one function and one config each, dispatched through one registry."""

from nntailor.compress.base import CompressConfig, apply, config_from_dict, register, steps, walk
from nntailor.compress.fold import FoldBNConfig, fold_bn

__all__ = ["CompressConfig", "FoldBNConfig", "apply", "config_from_dict", "fold_bn", "register", "steps", "walk"]
