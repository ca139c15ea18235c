"""``OpalSampler``: OPAL's design-space exploration (seed 000) as an Optuna sampler, for multi-objective studies.

How a trial is chosen (``before_trial``, once per trial):

1. Until ``n_startup_trials`` trials are complete, parameters are drawn at random (seeded per trial and name);
   with ``cheap_constraints``, a random design that satisfies them.
2. Otherwise a pool of ``n_candidates`` full parameter dicts is drawn over every parameter seen so far (define-
   by-run: a conditional parameter gets a value too and is simply not asked for when the trial does not reach
   it): half uniformly at random, half mutations of the current Pareto set's designs (a numeric value moves by
   a Gaussian step in its scaled range, a categorical one is redrawn). Candidates already evaluated are dropped.
3. Objectives listed in ``cheap_objectives`` (index -> function of the parameter dict) are computed exactly for
   every candidate; the others are predicted by the mDNN (``surrogate.MetaDNN``: two hidden layers, refit,
   warm-started, after each evaluation, on every completed trial).
4. Candidates that ``cheap_constraints`` (parameters -> values, feasible when all <= 0, Optuna's convention)
   marks infeasible are dropped while a feasible one exists.
5. The candidate that most increases the hypervolume of the observed feasible Pareto front (Optuna's
   hypervolume, reference point 10% beyond the worst observed value of each objective) wins; when none
   increases it, the one nearest the front (additive epsilon, in scaled objectives). With probability
   ``exploration`` a random candidate is taken instead (OPAL spends a share of evaluations away from the
   model's beliefs).

``sample_independent`` then hands the chosen values to the objective as it asks for them; a parameter the plan
lacks (first seen now, or with a changed distribution) is drawn at random. The same ``seed``, objective and
trial order give the same trials. ``constraints_func`` (a function of the finished ``FrozenTrial``) is stored
as Optuna's samplers store it; trials whose constraints (also ``trial.set_constraint``) are violated are kept
off the front.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from nntailor.search.surrogate import MetaDNN

Params = dict[str, Any]


def _draw(dist: BaseDistribution, rng: np.random.Generator) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[int(rng.integers(len(dist.choices)))]
    if isinstance(dist, IntDistribution):
        if dist.log:  # log-uniform over [low, high + 1), floored: each integer gets its share of the log range
            value = math.floor(math.exp(rng.uniform(math.log(dist.low), math.log(dist.high + 1))))
            return int(min(max(value, dist.low), dist.high))
        return int(dist.low + dist.step * int(rng.integers((dist.high - dist.low) // dist.step + 1)))
    assert isinstance(dist, FloatDistribution)
    if dist.log:
        return float(math.exp(rng.uniform(math.log(dist.low), math.log(dist.high))))
    if dist.step is not None:
        return float(dist.low + dist.step * int(rng.integers(round((dist.high - dist.low) / dist.step) + 1)))
    return float(rng.uniform(dist.low, dist.high))


def _scaled(dist: IntDistribution | FloatDistribution, value: float) -> float:
    """``value`` in [0, 1] of the distribution's range (log scale when the distribution is)."""
    if dist.high == dist.low:
        return 0.5
    if dist.log:
        return (math.log(value) - math.log(dist.low)) / (math.log(dist.high) - math.log(dist.low))
    return (value - dist.low) / (dist.high - dist.low)


def _unscaled(dist: IntDistribution | FloatDistribution, u: float) -> Any:
    u = min(max(u, 0.0), 1.0)
    value = math.exp(math.log(dist.low) + u * (math.log(dist.high) - math.log(dist.low))) if dist.log else \
        dist.low + u * (dist.high - dist.low)
    if isinstance(dist, IntDistribution):
        return int(min(max(dist.low + dist.step * round((value - dist.low) / dist.step), dist.low), dist.high))
    if dist.step is not None:
        return float(min(dist.low + dist.step * round((value - dist.low) / dist.step), dist.high))
    return float(value)


def _encode(dists: dict[str, BaseDistribution], rows: Sequence[Params]) -> np.ndarray:
    """Each parameter as a presence flag plus its scaled value (numeric) or one-hot choice (categorical)."""
    cols: list[np.ndarray] = []
    for name, dist in dists.items():
        present = np.array([name in r for r in rows], dtype=float)
        cols.append(present[:, None])
        if isinstance(dist, CategoricalDistribution):
            index = {repr(c): i for i, c in enumerate(dist.choices)}
            hot = np.zeros((len(rows), len(dist.choices)))
            for j, r in enumerate(rows):
                if name in r and repr(r[name]) in index:
                    hot[j, index[repr(r[name])]] = 1.0
            cols.append(hot)
        else:
            vals = [_scaled(dist, r[name]) if name in r and dist._contains(r[name]) else 0.0 for r in rows]
            cols.append(np.array(vals, dtype=float)[:, None])
    return np.hstack(cols) if cols else np.zeros((len(rows), 0))


def _nondominated(points: np.ndarray) -> np.ndarray:
    """Mask of the rows no other row dominates (minimisation)."""
    keep = np.ones(len(points), dtype=bool)
    for i, p in enumerate(points):
        dominated = np.all(points <= p, axis=1) & np.any(points < p, axis=1)
        keep[i] = not dominated.any()
    return keep


def _feasible(trial: FrozenTrial) -> bool:
    return all(v <= 0.0 for v in trial.constraints.values()) if hasattr(trial, "constraints") else True


class OpalSampler(BaseSampler):
    """OPAL's sampler: exact cheap objectives, mDNN-predicted expensive ones, hypervolume-greedy choice.

    ``OpalSampler(cheap_objectives={1: cost_fn}, seed=0)``: objective 1 is ``cost_fn(trial.params)``, exact and
    cheap; every other objective is modelled. Works with any objective and any mix of directions.
    """

    def __init__(
        self,
        cheap_objectives: dict[int, Callable[[Params], float]] | None = None,
        *,
        seed: int | None = None,
        n_startup_trials: int = 10,
        n_candidates: int = 256,
        exploration: float = 0.1,
        cheap_constraints: Callable[[Params], Sequence[float]] | None = None,
        constraints_func: Callable[[FrozenTrial], Sequence[float]] | None = None,
        surrogate: MetaDNN | None = None,
    ) -> None:
        self.cheap_objectives = dict(cheap_objectives or {})
        self.seed = int(np.random.SeedSequence().entropy % 2**31) if seed is None else seed
        self.n_startup_trials = n_startup_trials
        self.n_candidates = n_candidates
        self.exploration = exploration
        self.cheap_constraints = cheap_constraints
        self.constraints_func = constraints_func
        self.surrogate = surrogate or MetaDNN(seed=self.seed)
        self._plans: dict[int, Params] = {}
        self._cheap_cache: dict[tuple, tuple[list[float], bool] | None] = {}

    # --- Optuna's interface -------------------------------------------------------------------------------
    def reseed_rng(self) -> None:
        self.seed = int(np.random.SeedSequence().entropy % 2**31)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}  # define-by-run: the plan is made in before_trial, handed out by sample_independent

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        done = [t for t in done if t.values is not None and len(t.values) == len(study.directions)]
        if len(done) >= self.n_startup_trials:
            self._plans[trial._trial_id] = self._choose(study, trial, done)
        elif self.cheap_constraints is not None:
            self._plans[trial._trial_id] = self._random_feasible(study, trial)

    def _random_feasible(self, study: optuna.Study, trial: FrozenTrial) -> Params:
        """A random start that still honours ``cheap_constraints``: the first feasible of a random pool over the
        parameters seen so far (none are known before the first trial, which is drawn freely)."""
        seen = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
        dists: dict[str, BaseDistribution] = {}
        for t in sorted(seen, key=lambda t: t.number):
            dists.update(t.distributions)
        if not dists:
            return {}
        pool = self._candidates(dict(sorted(dists.items())), [], [], self._rng(trial.number))
        for cand in pool:
            priced = self._cheap(cand)
            if priced is not None and priced[1]:
                return cand
        return {}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        plan = self._plans.get(trial._trial_id, {})
        if param_name in plan:
            value = plan[param_name]
            try:
                if param_distribution._contains(param_distribution.to_internal_repr(value)):
                    return value
            except (ValueError, TypeError):
                pass
        return _draw(param_distribution, self._rng(trial.number, param_name))

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._plans.pop(trial._trial_id, None)
        if self.constraints_func is not None:
            from optuna.samplers._base import _process_constraints_after_trial

            _process_constraints_after_trial(self.constraints_func, study, trial, state)

    # --- the OPAL loop ------------------------------------------------------------------------------------
    def _rng(self, number: int, name: str = "") -> np.random.Generator:
        return np.random.default_rng([self.seed, number, zlib.crc32(name.encode())])

    def _cheap(self, params: Params) -> tuple[list[float], bool] | None:
        """Exact cheap objective values and feasibility of a candidate (None: the functions cannot price it)."""
        key = tuple(sorted((k, repr(v)) for k, v in params.items()))
        if key not in self._cheap_cache:
            try:
                values = [float(fn(params)) for _, fn in sorted(self.cheap_objectives.items())]
                ok = self.cheap_constraints is None or all(c <= 0 for c in self.cheap_constraints(params))
                self._cheap_cache[key] = (values, ok)
            except KeyError:  # a conditional parameter the study has not reached yet: not a candidate
                self._cheap_cache[key] = None
        return self._cheap_cache[key]

    def _candidates(self, dists: dict[str, BaseDistribution], front: list[Params], done: list[FrozenTrial],
                    rng: np.random.Generator) -> list[Params]:
        seen: dict[frozenset, set[tuple]] = {}  # evaluated designs, grouped by the parameters they used
        for t in done:
            keys = frozenset(t.params)
            seen.setdefault(keys, set()).add(tuple(repr(t.params[k]) for k in sorted(keys)))

        def evaluated(c: Params) -> bool:
            return any(keys <= c.keys() and tuple(repr(c[k]) for k in sorted(keys)) in rows
                       for keys, rows in seen.items())

        names = list(dists)
        out: list[Params] = []
        unique: set[tuple] = set()
        for i in range(self.n_candidates * 2):  # tries: a discrete space may have few unseen designs left
            if len(out) >= self.n_candidates:
                break
            cand = {n: _draw(d, rng) for n, d in dists.items()}
            if front and i % 2 == 0:
                parent = front[int(rng.integers(len(front)))]
                cand.update({k: v for k, v in parent.items() if k in dists})
                flip = rng.random(len(names)) < 1.0 / max(len(names), 1)
                flip[int(rng.integers(len(names)))] = True
                for n, f in zip(names, flip, strict=True):
                    d = dists[n]
                    if not f:
                        continue
                    if isinstance(d, CategoricalDistribution) or not d._contains(cand[n]):
                        cand[n] = _draw(d, rng)
                    else:
                        cand[n] = _unscaled(d, _scaled(d, cand[n]) + rng.normal(0.0, 0.15))
            key = tuple(repr(cand[n]) for n in names)
            if key in unique or evaluated(cand):
                continue
            unique.add(key)
            out.append(cand)
        return out

    def _choose(self, study: optuna.Study, trial: FrozenTrial, done: list[FrozenTrial]) -> Params:
        from optuna._hypervolume import compute_hypervolume

        rng = self._rng(trial.number)
        done = sorted(done, key=lambda t: t.number)
        dists: dict[str, BaseDistribution] = {}
        for t in done:
            dists.update(t.distributions)
        dists = dict(sorted(dists.items()))
        sign = np.array([1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in study.directions])
        observed = np.array([t.values for t in done], dtype=float) * sign
        feasible = np.array([_feasible(t) for t in done])
        front_mask = np.zeros(len(done), dtype=bool)
        if feasible.any():
            idx = np.flatnonzero(feasible)
            front_mask[idx[_nondominated(observed[idx])]] = True
        front_params = [done[i].params for i in np.flatnonzero(front_mask)]

        pool = self._candidates(dists, front_params, done, rng)
        priced = [(c, self._cheap(c)) for c in pool]
        priced = [(c, p) for c, p in priced if p is not None]
        if not priced:
            return {}
        ok = [(c, p) for c, p in priced if p[1]]
        priced = ok or priced
        cands = [c for c, _ in priced]
        n_obj = len(sign)
        pred = np.zeros((len(cands), n_obj))
        expensive = [i for i in range(n_obj) if i not in self.cheap_objectives]
        if expensive:
            model = self.surrogate.fit(_encode(dists, [t.params for t in done]), observed[:, expensive])
            pred[:, expensive] = model.predict(_encode(dists, cands))
        for j, i in enumerate(sorted(self.cheap_objectives)):
            pred[:, i] = [p[0][j] * sign[i] for _, p in priced]

        if rng.random() < self.exploration:
            return cands[int(rng.integers(len(cands)))]
        front = observed[front_mask] if front_mask.any() else observed[_nondominated(observed)]
        lo = np.minimum(observed.min(axis=0), pred.min(axis=0))
        span = np.maximum(observed.max(axis=0) - lo, 1e-12)
        ref = observed.max(axis=0) + 0.1 * span
        base = compute_hypervolume(front, ref) if len(front) else 0.0
        gains = np.full(len(cands), -np.inf)
        for j, p in enumerate(pred):
            if np.all(p < ref) and not np.any(np.all(front <= p, axis=1)):
                gains[j] = compute_hypervolume(np.vstack([front, p]), ref) - base
        if np.max(gains) > 0:
            return cands[int(np.argmax(gains))]
        # nothing improves the predicted front: the candidate nearest it (additive epsilon, scaled objectives)
        dist = np.min(np.max((pred[:, None, :] - front[None, :, :]) / span, axis=2), axis=1)
        return cands[int(np.argmin(dist))]
