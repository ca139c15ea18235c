"""The expensive objective on real trainings (digits, seconds): error from train.fit, cost from the cost model."""

import optuna

from nntailor.data.datasets import digits
from nntailor.search import CostModel, OpalSampler, analyze_design, space_from_dict
from nntailor.search.constraints import ChipBudget
from nntailor.search.evaluate import search_objective, train_design
from nntailor.search.objectives import chip_constraints, design_cost
from nntailor.targets import load
from nntailor.targets.loader import from_dict

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {"kind": "mlp", "input_shape": [1, 1, 8, 8], "fc_nodes": {"choices": [16, 64]},
         "lr": {"low": 0.05, "high": 0.5, "log": True}}


def test_a_trained_design_beats_chance_and_its_recipe_applies():
    data = digits()
    space = space_from_dict({"space": {**SPACE, "bits": {"choices": [4, 32]}}})
    design = space.design({"fc_layers": 1, "fc_nodes_0": 64, "bits_fc0": 4, "bits_out": 32, "lr": 0.2})
    model, error = train_design(design, data, epochs=2)
    assert error < 0.2  # ten classes: chance is 0.9
    from nntailor.compress.quant.modules import quant_bits

    assert quant_bits(model) == {"0.1": (4, 4)}  # the 4-bit fixed-point layer, the classifier left float


def test_designs_over_budget_are_never_trained():
    data = digits()
    space = space_from_dict({"space": SPACE})
    raw = load("stm32l476").model_dump()
    for mem in raw["memories"]:
        if "weights" in mem["holds"]:
            # 16-node designs (~1.5 kB of weights) fit, a 64-node layer (~4.4 kB) does not
            mem["size_bytes"] = raw["runtime_flash_bytes"] + 3000
    chip = from_dict(raw, "test chip")
    costs, budget = CostModel(chip), ChipBudget(chip)
    sampler = OpalSampler(cheap_objectives={1: design_cost(space, costs, "energy_pj")},
                          cheap_constraints=chip_constraints(space, costs, budget), seed=0, n_startup_trials=5)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    study.optimize(search_objective(space, data, costs, budget, epochs=1, max_steps=10), n_trials=12)
    states = {t.state for t in study.trials}
    assert optuna.trial.TrialState.COMPLETE in states
    for t in study.trials:
        fits = analyze_design(space.design(t.params), chip).fits
        assert (t.state == optuna.trial.TrialState.PRUNED) == (not fits)
        if t.state == optuna.trial.TrialState.COMPLETE:
            error, energy = t.values
            assert 0.0 <= error < 0.9
            assert energy == analyze_design(space.design(t.params), chip).totals["energy_pj"]
