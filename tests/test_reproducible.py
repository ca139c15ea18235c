"""Seeded runs are reproducible bit for bit: the same seed and thread count give the same weights and figures.

Issue 9 (benchmark accuracies moved between runs) and issue 10 (``compress ... --seed 0`` twice differed).
"""

import json
import os
import subprocess
import sys

import torch
import torch.nn as nn

from nntailor.compress import ClusterConfig, Context, PruneConfig, QuantizeConfig
from nntailor.compress.recipe import FinetuneConfig, run_recipe
from nntailor.data import load_dataset
from nntailor.models import load_model
from nntailor.seeding import seed_everything
from nntailor.zoo import lenet

RECIPE = """
steps:
  - {step: finetune, epochs: 1, max_steps: 4}
  - {step: prune, sparsity: 0.5}
  - {step: finetune, epochs: 1, max_steps: 3}
  - {step: cluster, bits: 4}
  - {step: finetune, epochs: 1, max_steps: 2, optimizer: sgd, lr: 0.0001}
"""

FACTORY = """
import torch
import torch.nn as nn

NOISE = torch.rand(3)  # drawn at import time: seeded too

def make():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
"""


def _compress(tmp_path, name: str, hash_seed: str) -> tuple[bytes, dict]:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE)
    out = tmp_path / name
    # A fresh interpreter each time, with a different string-hash order; one torch thread in both
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "nntailor.cli", "compress", "zoo:lenet5", "--recipe", str(recipe), "--data", "mnist",
         "--out", str(out), "--seed", "0", "--no-progress"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return (out / "model.safetensors").read_bytes(), json.loads((out / "compress.json").read_text())


def test_compress_twice_in_fresh_processes_is_byte_identical(tmp_path):
    first_bytes, first = _compress(tmp_path, "a", "1")
    second_bytes, second = _compress(tmp_path, "b", "2")
    assert first_bytes == second_bytes
    for row in ("before", "after"):
        assert first[row]["accuracy"] == second[row]["accuracy"]
        assert first[row] == second[row]
    assert first["after"]["nz_params"] < first["before"]["nz_params"]  # the recipe did prune: not a no-op run


def test_load_model_seeds_construction(tmp_path):
    torch.manual_seed(123)  # whatever ran before must not matter
    a = load_model("zoo:lenet5", seed=0).model
    torch.rand(1000)
    b = load_model("zoo:lenet5", seed=0).model
    c = load_model("zoo:lenet5", seed=1).model
    torch.manual_seed(0)  # the reference: torch's own generator seeded with 0, then the same constructor
    reference = lenet.lenet5()
    for key, value in reference.state_dict().items():
        assert torch.equal(a.state_dict()[key], value), key
        assert torch.equal(b.state_dict()[key], value), key
    assert not torch.equal(c.state_dict()["features.0.weight"], reference.state_dict()["features.0.weight"])

    path = tmp_path / "net.py"
    path.write_text(FACTORY)
    torch.rand(7)
    first = load_model(f"{path}:make", seed=0).model
    second = load_model(f"{path}:make", seed=0).model
    torch.manual_seed(0)
    torch.rand(3)  # what the file draws at import, before make() runs
    expected = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    for key, value in expected.state_dict().items():
        assert torch.equal(first.state_dict()[key], value), key
        assert torch.equal(second.state_dict()[key], value), key


def _recipe_once(datasets, draws: int) -> dict[str, torch.Tensor]:
    seed_everything(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    torch.rand(draws)  # the global RNG is left in a different state each time: the recipe must seed its own
    context = Context(train=datasets.train, test=datasets.test, input_shape=datasets.input_shape, seed=0)
    steps = [
        FinetuneConfig(epochs=1, max_steps=6),
        PruneConfig(sparsity=0.5),
        FinetuneConfig(epochs=1, max_steps=4),
        ClusterConfig(bits=3),
        QuantizeConfig(weight_bits=4, act_bits=4, learn_ranges="lsq"),
        FinetuneConfig(epochs=1, max_steps=4),
    ]
    model = run_recipe(model, steps, context, progress=False)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_short_recipe_in_process_twice_is_bit_identical():
    datasets = load_dataset("digits", seed=0)
    first = _recipe_once(datasets, 1)
    second = _recipe_once(datasets, 99)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
