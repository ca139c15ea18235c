"""The glue between a space, the cost model and a sampler: functions of a trial's parameter dict.

``OpalSampler(cheap_objectives={1: design_cost(space, costs, "energy_pj")},
cheap_constraints=chip_constraints(space, costs, budget))`` prices every candidate exactly before any
training and never proposes a design over the chip's budgets while one within them exists; inside the objective,
``set_chip_constraints(trial, design, costs, budget)`` records the same values on the trial (Optuna's
``trial.set_constraint``), so every sampler and ``study.best_trials`` see them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nntailor.errors import UserError
from nntailor.search.constraints import ChipBudget
from nntailor.search.costs import TOTALS, CostModel
from nntailor.search.space import Design, Space

Params = dict[str, Any]


def design_cost(space: Space, costs: CostModel, metric: str) -> Callable[[Params], float]:
    """``params -> totals[metric]`` of the design (e.g. ``energy_pj``, ``latency_s``, ``peak_sram_bytes``)."""
    if metric not in TOTALS or metric == "energy_breakdown_pj":
        valid = ", ".join(t for t in TOTALS if t != "energy_breakdown_pj")
        raise UserError(f"cost metric {metric!r} is not one of {valid}")

    def cost(params: Params) -> float:
        return float(costs.totals(space.design(params))[metric])

    return cost


def chip_constraints(space: Space, costs: CostModel, budget: ChipBudget) -> Callable[[Params], list[float]]:
    """``params -> constraint values`` (feasible when all <= 0), in ``budget.margins`` order."""

    def constraints(params: Params) -> list[float]:
        return list(budget.margins(costs.totals(space.design(params))).values())

    return constraints


def set_chip_constraints(trial: Any, design: Design, costs: CostModel, budget: ChipBudget) -> dict[str, float]:
    """Record the design's budget margins on an Optuna trial; returns them (all <= 0: the design fits)."""
    margins = budget.margins(costs.totals(design))
    for key, value in margins.items():
        trial.set_constraint(key, value)
    return margins
