"""Search: spaces (data), the OPAL sampler (Optuna glue over a pure surrogate), exact fast costs, chip budgets.

``from nntailor.search import OpalSampler`` is the contract for scripts outside the repo. Names load on first
use, so importing the package builds nothing.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "OpalSampler": "nntailor.search.sampler",
    "Space": "nntailor.search.space",
    "Design": "nntailor.search.space",
    "load_space": "nntailor.search.space",
    "space_from_dict": "nntailor.search.space",
    "build": "nntailor.search.space",
    "CostModel": "nntailor.search.costs",
    "analyze_design": "nntailor.search.costs",
    "ChipBudget": "nntailor.search.constraints",
    "check_reachable": "nntailor.search.constraints",
    "design_cost": "nntailor.search.objectives",
    "chip_constraints": "nntailor.search.objectives",
    "set_chip_constraints": "nntailor.search.objectives",
    "train_design": "nntailor.search.evaluate",
    "search_objective": "nntailor.search.evaluate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'nntailor.search' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
