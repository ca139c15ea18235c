"""The fine-tune loop: learns, is deterministic, resumes bit-exactly after an interrupt, refuses bad checkpoints."""

import pytest
import torch
import torch.nn as nn

from nntailor import UserError
from nntailor.data import load_dataset
from nntailor.train import Distillation, TrainConfig, TrainHook, evaluate, fit


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_learns_digits(digits):
    model = mlp()
    before = evaluate(model, digits.test)
    fit(model, digits.train, TrainConfig(epochs=3, lr=3e-3, progress=False))
    assert before < 0.3 and evaluate(model, digits.test) > 0.85


def test_same_seed_same_weights(digits):
    a, b = mlp(), mlp()
    cfg = TrainConfig(epochs=1, progress=False, seed=7)
    fit(a, digits.train, cfg)
    fit(b, digits.train, cfg)
    assert same_weights(a, b)


class Interrupt(TrainHook):
    def __init__(self, at: int) -> None:
        self.calls = 0
        self.at = at

    def after_step(self, model):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt


def test_interrupt_then_resume_is_bit_exact(digits, tmp_path):
    reference = mlp()
    fit(reference, digits.train, TrainConfig(epochs=2, progress=False, optimizer="sgd", lr=0.05))

    ckpt = tmp_path / "run.pt"
    cfg = TrainConfig(epochs=2, progress=False, optimizer="sgd", lr=0.05, checkpoint=ckpt, checkpoint_every=5)
    model = mlp()
    with pytest.raises(KeyboardInterrupt):
        fit(model, digits.train, cfg, hooks=[Interrupt(at=33)])  # mid-epoch, between two checkpoints
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 30  # the last whole checkpoint survived

    resumed = mlp(seed=123)  # different init: everything must come from the checkpoint
    result = fit(resumed, digits.train, cfg)
    assert result.resumed_from_step == 30
    assert same_weights(resumed, reference)


def test_corrupt_and_foreign_checkpoints(digits, tmp_path):
    ckpt = tmp_path / "bad.pt"
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="corrupt"):
        fit(mlp(), digits.train, TrainConfig(checkpoint=ckpt, progress=False))
    torch.save({"weights": torch.zeros(3)}, ckpt)
    with pytest.raises(UserError, match="not an nntailor training checkpoint"):
        fit(mlp(), digits.train, TrainConfig(checkpoint=ckpt, progress=False))
    other = tmp_path / "other.pt"
    fit(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), digits.train,
        TrainConfig(checkpoint=other, progress=False, max_steps=2))
    with pytest.raises(UserError, match="does not match this model"):
        fit(mlp(), digits.train, TrainConfig(checkpoint=other, progress=False))


class KeepZero(TrainHook):
    def __init__(self, weight: torch.Tensor) -> None:
        self.mask = torch.ones_like(weight)
        self.mask[:, :32] = 0
        with torch.no_grad():
            weight.mul_(self.mask)
        self.weight = weight

    def after_step(self, model):
        with torch.no_grad():
            self.weight.mul_(self.mask)


def test_mask_hook_keeps_pruned_weights_zero(digits):
    model = mlp()
    hook = KeepZero(model[1].weight)
    fit(model, digits.train, TrainConfig(epochs=1, progress=False), hooks=[hook])
    assert torch.count_nonzero(model[1].weight[:, :32]) == 0
    assert torch.count_nonzero(model[1].weight[:, 32:]) > 0


def test_distillation(digits):
    teacher = mlp(1)
    fit(teacher, digits.train, TrainConfig(epochs=2, lr=3e-3, progress=False))
    # alpha = 0 is plain training
    a, b = mlp(), mlp()
    fit(a, digits.train, TrainConfig(epochs=1, progress=False))
    fit(b, digits.train, TrainConfig(epochs=1, progress=False), hooks=[Distillation(teacher, alpha=0.0)])
    assert same_weights(a, b)
    # pure soft targets still teach the student the teacher's answers
    student = mlp(2)
    fit(student, digits.train, TrainConfig(epochs=6, lr=3e-3, progress=False), hooks=[Distillation(teacher, alpha=1.0)])
    x = digits.test.tensors[0]
    agreement = (student(x).argmax(-1) == teacher(x).argmax(-1)).float().mean()
    assert agreement > 0.85
    with pytest.raises(UserError):
        Distillation(teacher, temperature=0)


def test_config_validates():
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=-1)
