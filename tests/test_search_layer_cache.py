"""search.CostModel's per-layer cache: a segment never seen, priced from layers other segments shared with it, still
gives every total ``analyze`` gives on the built model (widths, sparsity and the array's utilization included)."""

import math

import optuna

from nntailor.search import CostModel, analyze_design, space_from_dict
from nntailor.search.costs import TOTALS

optuna.logging.set_verbosity(optuna.logging.WARNING)

MIXED = {"kind": "cnn", "input_shape": [1, 3, 16, 16], "filters": {"low": 8, "high": 8},
         "bits": {"choices": [2, 4, 8]}, "sparsity": {"choices": [0.0, 0.5]}}


def _designs(spec, n, seed):
    space = space_from_dict({"space": spec})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(space.suggest(trial))
        study.tell(trial, 0.0)
    return out


def test_new_segments_from_cached_layers_equal_analyze():
    costs = CostModel("eyeriss")
    for design in _designs(MIXED, 12, seed=3):
        costs._segments.clear()  # every segment new; its layers may come from the layer cache
        fast, ref = costs.totals(design), analyze_design(design, "eyeriss").totals
        assert "utilization" in ref and math.isclose(fast["utilization"], ref["utilization"], rel_tol=1e-12)
        for key in TOTALS:
            if isinstance(ref[key], dict):
                assert fast[key].keys() == ref[key].keys(), key
                assert all(math.isclose(fast[key][k], ref[key][k], rel_tol=1e-9) for k in ref[key]), key
            else:
                assert math.isclose(fast[key], ref[key], rel_tol=1e-9), (key, fast[key], ref[key])
    assert costs._layers, "the layer cache holds the layers priced"
