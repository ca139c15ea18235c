"""OpalSampler: Optuna's sampler interface, reproducible, conditional parameters, constraints, hypervolume.

Golden values are independent of the sampler: the exhaustive Pareto front of a discrete ZDT1 grid computed
here, and hypervolumes from pymoo's ``HV`` (the sampler itself uses Optuna's).
"""

import math
import time

import numpy as np
import optuna
import pytest
from pymoo.indicators.hv import HV

from nntailor.search import OpalSampler
from nntailor.search.surrogate import MetaDNN

optuna.logging.set_verbosity(optuna.logging.WARNING)

N = 21  # grid points per axis


def _zdt1(x: int, y: int) -> tuple[float, float]:
    """ZDT1 (Zitzler, Deb & Thiele 2000) with two variables, on a grid: f1 = x, f2 = g (1 - sqrt(f1 / g))."""
    f1 = x / (N - 1)
    g = 1 + 9 * y / (N - 1)
    return f1, g * (1 - math.sqrt(f1 / g))


def _objective(trial):
    f1, f2 = _zdt1(trial.suggest_int("x", 0, N - 1), trial.suggest_int("y", 0, N - 1))
    return f2, f1  # objective 1 (f1) is the cheap, exact one


def _cheap(params):
    return params["x"] / (N - 1)


GRID = np.array([_zdt1(x, y)[::-1] for x in range(N) for y in range(N)])
REF = GRID.max(axis=0) + 0.1


def _hv(study) -> float:
    return float(HV(ref_point=REF)(np.array([t.values for t in study.trials])))


def test_is_an_optuna_sampler():
    assert isinstance(OpalSampler(), optuna.samplers.BaseSampler)


def test_hypervolume_beats_random_with_the_same_budget():
    exhaustive = float(HV(ref_point=REF)(GRID))
    opal, rand = [], []
    for seed in range(3):
        study = optuna.create_study(directions=["minimize", "minimize"],
                                    sampler=OpalSampler(cheap_objectives={1: _cheap}, seed=seed))
        study.optimize(_objective, n_trials=35)  # 8% of the 441 designs
        opal.append(_hv(study) / exhaustive)
        study = optuna.create_study(directions=["minimize", "minimize"],
                                    sampler=optuna.samplers.RandomSampler(seed=seed))
        study.optimize(_objective, n_trials=35)
        rand.append(_hv(study) / exhaustive)
    print(f"hypervolume / exhaustive: OPAL {np.round(opal, 4)}, random {np.round(rand, 4)}")
    assert np.mean(opal) >= np.mean(rand)
    assert min(opal) >= 0.98  # the goal, on this small problem


def test_maximized_objectives_are_handled_as_maximized():
    def objective(trial):
        f2, f1 = _objective(trial)
        return -f2, -f1

    study = optuna.create_study(directions=["maximize", "maximize"],
                                sampler=OpalSampler(cheap_objectives={1: lambda p: -_cheap(p)}, seed=0))
    study.optimize(objective, n_trials=35)
    points = -np.array([t.values for t in study.trials])
    assert float(HV(ref_point=REF)(points)) / float(HV(ref_point=REF)(GRID)) >= 0.98


def test_same_seed_same_trials_and_mixed_directions():
    def objective(trial):
        a = trial.suggest_float("a", 1e-3, 1.0, log=True)
        b = trial.suggest_categorical("b", ["p", "q", "r"])
        c = trial.suggest_float("c", -1.0, 1.0)
        return (math.log10(a) + 1) ** 2 + {"p": 0, "q": 0.5, "r": 1}[b], c + a  # minimize, maximize

    runs = []
    for _ in range(2):
        study = optuna.create_study(directions=["minimize", "maximize"],
                                    sampler=OpalSampler(cheap_objectives={1: lambda p: p["c"] + p["a"]}, seed=0))
        study.optimize(objective, n_trials=20)
        runs.append([t.params for t in study.trials])
    assert runs[0] == runs[1]
    other = optuna.create_study(directions=["minimize", "maximize"],
                                sampler=OpalSampler(cheap_objectives={1: lambda p: p["c"] + p["a"]}, seed=1))
    other.optimize(objective, n_trials=20)
    assert [t.params for t in other.trials] != runs[0]
    for params in runs[0]:
        assert 1e-3 <= params["a"] <= 1.0 and params["b"] in ("p", "q", "r") and -1 <= params["c"] <= 1


def test_conditional_parameters():
    def objective(trial):
        n = trial.suggest_int("layers", 1, 2)
        widths = [trial.suggest_int(f"width_{i}", 10, 250) for i in range(n)]
        return abs(sum(widths) - 300) / 300, float(sum(widths))

    study = optuna.create_study(
        directions=["minimize", "minimize"],
        sampler=OpalSampler(cheap_objectives={1: lambda p: float(sum(p[f"width_{i}"] for i in range(p["layers"])))},
                            seed=0))
    study.optimize(objective, n_trials=30)
    for t in study.trials:
        assert ("width_1" in t.params) == (t.params["layers"] == 2)
    assert {t.params["layers"] for t in study.trials[10:]} == {1, 2}  # both branches after the random start


def test_cheap_constraints_are_never_violated_when_feasible_candidates_exist():
    def objective(trial):
        x, y = trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)
        trial.set_constraint("budget", x + y - 0.8)  # Optuna's convention: feasible when <= 0
        return (x - 0.7) ** 2 + (y - 0.7) ** 2, x

    sampler = OpalSampler(cheap_objectives={1: lambda p: p["x"]}, cheap_constraints=lambda p: [p["x"] + p["y"] - 0.8],
                          seed=0, n_startup_trials=10)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    study.optimize(objective, n_trials=30)
    assert all(t.params["x"] + t.params["y"] <= 0.8 for t in study.trials[10:])


def test_constraints_func_is_stored_as_optuna_samplers_store_it():
    sampler = OpalSampler(seed=0, constraints_func=lambda t: [t.params["x"] - 0.5])
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=3)
    for t in study.trials:
        assert t.constraints == {"0": pytest.approx(t.params["x"] - 0.5)}


def test_sample_takes_under_a_second_with_500_finished_trials():
    def objective(trial):
        lr = trial.suggest_float("lr", 0.01, 0.8, log=True)
        n = trial.suggest_int("n", 1, 2)
        w = [trial.suggest_int(f"w{i}", 10, 250) for i in range(n)]
        act = trial.suggest_categorical("act", ["relu", "tanh"])
        return (math.log(lr) + 2) ** 2 + 1 / sum(w) + (act == "tanh"), float(sum(w))

    sampler = OpalSampler(cheap_objectives={1: lambda p: float(sum(p[f"w{i}"] for i in range(p["n"])))}, seed=0)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    random = optuna.samplers.RandomSampler(seed=0)
    study.sampler = random
    study.optimize(objective, n_trials=500)
    study.sampler = sampler
    start = time.perf_counter()
    study.optimize(objective, n_trials=5)
    per_trial = (time.perf_counter() - start) / 5
    print(f"OpalSampler with 500 finished trials: {per_trial * 1e3:.0f} ms per trial")
    assert per_trial <= 1.0


def test_meta_dnn_learns_a_smooth_surface():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (200, 2))
    y = np.sin(3 * x[:, 0]) + x[:, 1] ** 2
    model = MetaDNN(epochs=600, seed=0).fit(x, y)
    test = rng.uniform(0, 1, (100, 2))
    err = model.predict(test)[:, 0] - (np.sin(3 * test[:, 0]) + test[:, 1] ** 2)
    assert np.sqrt(np.mean(err ** 2)) < 0.1 * np.std(y)
    again = MetaDNN(epochs=600, seed=0).fit(x, y)
    assert np.array_equal(again.predict(test), model.predict(test))  # seeded
