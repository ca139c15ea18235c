"""Honest resume: a rerun into a folder resumes only what is still valid, refuses another run's folder in one
line, and Ctrl-C leaves a folder the same command finishes with the weights of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

import nntailor.compress.energy_aware as energy_aware
from nntailor.cli import main
from nntailor.compress import Context, EnergyPruneConfig, apply
from nntailor.data import load_dataset
from nntailor.train import TrainHook, fit

MODEL = """
import torch
import torch.nn as nn

def make():
    torch.manual_seed(0)  # the same initial weights in every process: runs are compared bit for bit
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

def wide():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10))
"""

BASE = "steps:\n  - {step: finetune, epochs: 2, lr: 0.003}\n  - {step: prune, sparsity: SPARSITY}\n" \
       "  - {step: finetune, epochs: 1}\n"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "net.py").write_text(MODEL)
    return tmp_path


def compress(capsys, files, recipe, out, *extra, model="make"):
    (files / "recipe.yaml").write_text(recipe)
    code = main(["compress", f"{files}/net.py:{model}", "--recipe", f"{files}/recipe.yaml", "--data", "digits",
                 "--out", str(out), "--no-progress", *extra])
    return code, capsys.readouterr().err


def same_files(a: Path, b: Path) -> bool:
    x, y = load_file(a), load_file(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_a_changed_step_resumes_from_it(files, capsys, caplog):
    out = files / "out"
    code, err = compress(capsys, files, BASE.replace("SPARSITY", "0.5"), out)
    assert code == 0, err
    first = (out / "checkpoints" / "step1.pt").stat().st_mtime_ns
    old_last = (out / "checkpoints" / "step3.pt").read_bytes()

    changed = BASE.replace("SPARSITY", "0.75")
    code, err = compress(capsys, files, changed, out)
    assert code == 0, err
    assert f"step 2 (prune) changed since the run in {out}: resuming from it" in caplog.messages
    assert (out / "checkpoints" / "step1.pt").stat().st_mtime_ns == first  # the unchanged fine-tune kept
    assert (out / "checkpoints" / "step3.pt").read_bytes() != old_last  # the stale one retrained
    state = load_file(out / "model.safetensors")
    assert (state["1.weight"] == 0).float().mean() == pytest.approx(0.75, abs=0.01)  # the new recipe's model
    assert json.loads((out / "compress.json").read_text())["steps"][1]["sparsity"] == 0.75

    code, err = compress(capsys, files, changed, files / "fresh")
    assert code == 0, err
    assert same_files(out / "model.safetensors", files / "fresh" / "model.safetensors")
    fresh = json.loads((files / "fresh" / "compress.json").read_text())
    assert json.loads((out / "compress.json").read_text()) == fresh


@pytest.mark.parametrize("extra, message", [
    (["--seed", "1"], "--seed changed since the run in OUT (0 -> 1); use a fresh --out or remove OUT"),
    (["--bits", "4"], "--bits changed since the run in OUT (not given -> 4); use a fresh --out or remove OUT"),
    (["--target", "stm32f746"],
     "--target changed since the run in OUT (stm32l476 -> stm32f746); use a fresh --out or remove OUT"),
])
def test_a_changed_run_is_refused_before_any_work(files, capsys, extra, message):
    out = files / "out"
    recipe = "steps:\n  - {step: finetune, epochs: 1, max_steps: 3}\n"
    assert compress(capsys, files, recipe, out)[0] == 0
    before = (out / "checkpoints" / "step1.pt").read_bytes()
    code, err = compress(capsys, files, recipe, out, *extra)
    assert code == 2 and err.strip() == "error: " + message.replace("OUT", str(out))
    assert (out / "checkpoints" / "step1.pt").read_bytes() == before


def test_a_folder_of_another_model(files, capsys):
    out = files / "out"
    recipe = "steps:\n  - {step: finetune, epochs: 1, max_steps: 3}\n"
    assert compress(capsys, files, recipe, out)[0] == 0
    code, err = compress(capsys, files, recipe, out, model="wide")
    assert code == 2
    assert err.strip() == f"error: {out} holds a run of another model (make); use a fresh --out or remove {out}"


def test_a_folder_of_another_model_without_a_manifest(files, capsys):
    # a folder from before run.json, or one whose manifest was removed: the checkpoint itself tells.
    # 48 hidden units against 32: 1.weight, 1.bias and 3.weight differ, 3.bias (10 classes) does not
    out = files / "out"
    recipe = "steps:\n  - {step: finetune, epochs: 1, max_steps: 3}\n"
    assert compress(capsys, files, recipe, out, model="wide")[0] == 0
    (out / "run.json").unlink()
    code, err = compress(capsys, files, recipe, out)
    assert code == 2
    assert err.strip() == (f"error: checkpoint {out}/checkpoints/step1.pt is from another model (3 tensors differ, "
                           f"first '1.bias'); use a fresh --out or remove {out}")


RECIPE_LONG = "steps:\n  - {step: finetune, epochs: 8, lr: 0.003, checkpoint_every: 10}\n" \
              "  - {step: prune, sparsity: 0.5}\n  - {step: finetune, epochs: 1}\n"


def cli_args(files: Path, out: Path) -> list[str]:
    return [f"{files}/net.py:make", "--recipe", f"{files}/recipe.yaml", "--data", "digits", "--out", str(out),
            "--no-progress"]


def start_cli(files: Path, out: Path) -> subprocess.Popen:
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "nntailor.cli", "compress", *cli_args(files, out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_ctrl_c_then_rerun_gives_the_uninterrupted_weights(files, capsys):
    (files / "recipe.yaml").write_text(RECIPE_LONG)
    out = files / "out"
    proc = start_cli(files, out)
    checkpoint = out / "checkpoints" / "step1.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted; run the same command again to resume"
    done = torch.load(checkpoint, weights_only=True)["step"]
    assert 0 < done < 8 * 23  # stopped inside the fine-tune (1437 digits / 64 = 23 batches an epoch)
    assert not (out / "model.safetensors").exists()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the interrupted process ran: float sums then match bit for bit
    try:
        assert main(["compress", *cli_args(files, out)]) == 0
        (files / "recipe.yaml").write_text(RECIPE_LONG.replace("checkpoint_every: 10", "checkpoint_every: 0"))
        assert main(["compress", *cli_args(files, files / "straight")]) == 0
    finally:
        torch.set_num_threads(threads)
    assert same_files(out / "model.safetensors", files / "straight" / "model.safetensors")


class Interrupt(TrainHook):
    def __init__(self, at: int) -> None:
        self.at, self.calls = at, 0

    def after_step(self, model):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt


def cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 10))


def test_energy_prune_resumes_without_retraining_finished_trials(tmp_path, monkeypatch):
    data = load_dataset("digits")
    config = EnergyPruneConfig(levels=[0.5, 0.8], accuracy_drop=0.05, checkpoint_every=4)

    def context(checkpoints=None):
        return Context(train=data.train, test=data.test, input_shape=(1, 1, 8, 8), target="eyeriss",
                       checkpoints=checkpoints)

    reference = apply(cnn(), config, context())  # no checkpoints at all

    trained: list[tuple[int, int]] = []  # (resumed from step, steps at the end) per trial

    def interrupt_third(model, train, tune, hooks=()):
        extra = [Interrupt(at=10)] if len(trained) == 2 else []
        result = fit(model, train, tune, hooks=[*hooks, *extra])
        trained.append((result.resumed_from_step, result.steps))
        return result

    monkeypatch.setattr(energy_aware, "fit", interrupt_third)
    with pytest.raises(KeyboardInterrupt):
        apply(cnn(), config, context(tmp_path))
    assert len(trained) == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["trial1.pt", "trial2.pt",
                                                                              "trial3.pt"]

    trained.clear()
    monkeypatch.setattr(energy_aware, "fit", lambda *a, **k: record(fit(*a, **k)))

    def record(result):
        trained.append((result.resumed_from_step, result.steps))
        return result

    resumed = apply(cnn(), config, context(tmp_path))
    assert trained[0] == (23, 23) and trained[1] == (23, 23)  # finished trials: loaded, not trained again
    assert trained[2] == (8, 23)  # the interrupted trial: from its last checkpoint (every 4 steps), not from 0
    assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), reference.state_dict().values(),
                                                 strict=True))
