"""The expensive objective: train a design with ``train.fit``, apply its compression recipe, measure its error.

``search_objective`` is the Optuna objective the runner (next milestone) hands to a study: it asks the space for
a design, records the chip constraints from the cost model, refuses (prunes) a design over the chip's budgets
before any training, and otherwise returns (test error, cost). Training is the one fine-tune loop (``train.fit``)
at the design's learning rate with SGD, as seed 000's learning-rate range (0.01-0.8) suggests; the recipe's
steps (prune, binarize, fixed point) are then applied post-training with ``compress.apply``, calibrated on the
training set.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch.nn as nn

from nntailor.errors import UserError
from nntailor.search.constraints import ChipBudget
from nntailor.search.costs import CostModel
from nntailor.search.objectives import set_chip_constraints
from nntailor.search.space import Design, Space, build


def train_design(design: Design, data: Any, *, epochs: int = 1, batch_size: int = 64, seed: int = 0,
                 max_steps: int | None = None,
                 on_trained: Callable[[nn.Module], None] | None = None) -> tuple[nn.Module, float]:
    """The trained (and compressed) model and its top-1 test error in [0, 1]; ``data`` is a ``Datasets``.
    ``on_trained`` sees the float model after training, before the recipe compresses it (the runner keeps its
    weights, so the chosen design is exported trained)."""
    from nntailor.compress import Context, apply
    from nntailor.train import TrainConfig, evaluate, fit

    if math.prod(design.input_shape) != math.prod(data.input_shape):
        raise UserError(f"space input_shape {list(design.input_shape)} does not match the data's "
                        f"{list(data.input_shape)} ({data.name})")
    model = build(design).train()
    fit(model, data.train, TrainConfig(epochs=epochs, lr=design.lr, batch_size=batch_size, optimizer="sgd",
                                       seed=seed, max_steps=max_steps, progress=False))
    if on_trained is not None:
        on_trained(model)
    context = Context(train=data.train, input_shape=tuple(data.input_shape), seed=seed)
    for step in design.recipe():
        model = apply(model, step, context)
    return model, 1.0 - evaluate(model, data.test)


def search_objective(space: Space, data: Any, costs: CostModel, budget: ChipBudget, metric: str = "energy_pj",
                     on_trained: Callable[[Any, nn.Module], None] | None = None,
                     **train: Any) -> Callable[[Any], tuple[float, float]]:
    """``objective(trial) -> (error, cost)`` for a two-objective study (both minimised); ``on_trained(trial,
    model)`` sees each trained float model."""
    import optuna

    def objective(trial: Any) -> tuple[float, float]:
        design = space.suggest(trial)
        margins = set_chip_constraints(trial, design, costs, budget)
        cost = float(costs.totals(design)[metric])
        trial.set_user_attr(metric, cost)
        over = {k: v for k, v in margins.items() if v > 0}
        if over:  # found from the cost model: never trained
            raise optuna.TrialPruned(f"over the chip's budget: {', '.join(over)}")
        keep = None if on_trained is None else (lambda model: on_trained(trial, model))
        _, error = train_design(design, data, seed=trial.number, on_trained=keep, **train)
        return error, cost

    return objective
