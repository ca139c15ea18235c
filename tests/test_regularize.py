"""SSL's group lasso drives whole filters to zero; schedules and SSL are reachable from recipes."""

import pytest
import torch
import torch.nn as nn

from nntailor.compress import Context, config_from_dict, sparsity
from nntailor.compress.recipe import run_recipe
from nntailor.compress.regularize import GroupLasso, group_norms
from nntailor.data import load_dataset
from nntailor.train import TrainConfig, fit


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_group_lasso_zeroes_whole_filters(digits):
    plain, ssl = net(), net()
    cfg = TrainConfig(epochs=4, lr=3e-3, progress=False)
    fit(plain, digits.train, cfg)
    fit(ssl, digits.train, cfg, hooks=[GroupLasso(ssl, 0.01)])
    small = lambda m: int((group_norms(m[1].weight, "filters") < 1e-2).sum())  # noqa: E731
    assert small(plain) == 0 and small(ssl) >= 2


def test_recipe_steps_for_schedules_and_ssl(digits):
    steps = [config_from_dict(s) for s in (
        {"step": "finetune", "epochs": 2, "lr": 0.003, "group_lasso": 0.001, "group_lasso_groups": ["channels"]},
        {"step": "finetune", "epochs": 2, "schedule": {"kind": "cubic", "final": 0.8, "end": 30, "frequency": 5}},
    )]
    model = run_recipe(net(), steps, Context(train=digits.train), progress=False)
    assert sparsity(model)["total"] == pytest.approx(0.8, abs=0.01)


def test_distillation_step_uses_the_model_before_compression(digits):
    from nntailor.train import evaluate

    steps = [config_from_dict(s) for s in (
        {"step": "finetune", "epochs": 3, "lr": 0.003},
        {"step": "prune", "sparsity": 0.7},
        {"step": "finetune", "epochs": 3, "distill": True, "alpha": 0.7},
    )]
    context = Context(train=digits.train)
    model = run_recipe(net(), steps, context, progress=False)
    assert context.teacher is not None and sparsity(context.teacher)["total"] == 0.0  # the float baseline
    assert sparsity(model)["total"] == pytest.approx(0.7, abs=0.01)
    assert evaluate(model, digits.test) > 0.6
    with pytest.raises(Exception, match="needs a technique before it"):
        run_recipe(net(), [config_from_dict({"step": "finetune", "distill": True})], Context(train=digits.train),
                   progress=False)
