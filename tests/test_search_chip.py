"""Chip constraints end to end: OPAL prices candidates with the cost model and proposes only designs that fit."""

import math

import optuna
import pytest

from nntailor import UserError
from nntailor.search import CostModel, OpalSampler, analyze_design, space_from_dict
from nntailor.search.constraints import ChipBudget
from nntailor.search.objectives import chip_constraints, design_cost, set_chip_constraints
from nntailor.targets import load
from nntailor.targets.loader import from_dict

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {"kind": "cnn", "input_shape": [1, 1, 16, 16], "filters": {"choices": [8, 16, 32]},
         "kernel": {"choices": [1, 3]}, "pool": {"choices": [2, 4]}, "fc_nodes": {"choices": [16, 64]}}


def _chip(sram: int):
    data = load("stm32l476").model_dump()
    for mem in data["memories"]:
        if "activations" in mem["holds"]:
            mem["size_bytes"] = sram
    return from_dict(data, "test chip")


def test_opal_proposes_only_designs_that_fit_the_chip():
    space = space_from_dict({"space": SPACE})
    chip = _chip(sram=12000)
    costs, budget = CostModel(chip), ChipBudget(chip)

    def objective(trial):
        design = space.suggest(trial)
        set_chip_constraints(trial, design, costs, budget)
        # an analytic stand-in for the trained error: wider and deeper is better
        widths = sum(design.params[k] for k in design.params if k.startswith(("filters", "fc_nodes")))
        return 1 / math.log(widths), costs.totals(design)["energy_pj"]

    sampler = OpalSampler(cheap_objectives={1: design_cost(space, costs, "energy_pj")},
                          cheap_constraints=chip_constraints(space, costs, budget), seed=0, n_candidates=64)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    study.optimize(objective, n_trials=25)
    verdicts = [analyze_design(space.design(t.params), chip).fits for t in study.trials]
    assert all(verdicts[1:])  # after the first trial (drawn blind), every proposal fits (analyze's own verdict)
    blind = optuna.create_study(directions=["minimize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    blind.optimize(objective, n_trials=25)
    assert not all(analyze_design(space.design(t.params), chip).fits for t in blind.trials)  # the test can fail
    for t, fits in zip(study.trials, verdicts, strict=True):
        assert (max(t.constraints.values()) <= 0) == fits
    assert all(analyze_design(space.design(t.params), chip).fits for t in study.best_trials)


def test_unknown_cost_metric_is_a_user_error():
    space = space_from_dict({"space": SPACE})
    with pytest.raises(UserError, match="cost metric 'joules'"):
        design_cost(space, CostModel("stm32l476"), "joules")
