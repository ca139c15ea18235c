"""One fine-tune loop for every technique: seeded, deterministic on CPU, checkpointed, resumable.

Techniques plug in through ``TrainHook``s rather than loops of their own: a pruning mask re-zeroes
weights after each step, a regularizer (SSL's group lasso) adds a loss term, weight sharing sums the
gradients of a cluster before the step, distillation replaces part of the task loss with the teacher's
soft targets.

Checkpoints are written atomically (temporary file + rename) every ``checkpoint_every`` steps and at
the end of each epoch, so Ctrl-C never leaves half a file; a run started again with the same
checkpoint path resumes from it, skipping the batches it already did (the epoch's order is seeded).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.utils.data import DataLoader, Dataset

from nntailor.atomic import write_atomic
from nntailor.errors import UserError
from nntailor.seeding import seed_everything


class TrainConfig(BaseModel):
    """Fine-tuning settings. ``checkpoint`` makes the run resumable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(default=1, ge=0)
    lr: float = Field(default=1e-3, gt=0)
    batch_size: int = Field(default=64, ge=1)
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = Field(default=0.9, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    seed: int = 0
    checkpoint: Path | None = None
    checkpoint_every: int = Field(default=0, ge=0)  # steps; 0 = at the end of each epoch only
    max_steps: int | None = Field(default=None, ge=1)  # stop early (tests, quick recipes)
    progress: bool = True


class TrainHook:
    """Optional callbacks of the loop; each does nothing by default (Optuna's sampler style)."""

    task_loss_weight: float = 1.0  # distillation lowers it to make room for the soft-target term

    def extra_loss(self, model: nn.Module, inputs: torch.Tensor, logits: torch.Tensor,
                   targets: torch.Tensor) -> torch.Tensor | None:
        """A term added to the loss (regularizer, distillation). Runs after the forward pass."""
        return None

    def before_step(self, model: nn.Module) -> None:
        """After backward, before the optimizer step: edit gradients (mask them, share them)."""

    def after_step(self, model: nn.Module) -> None:
        """After the optimizer step: re-apply constraints (zero pruned weights)."""


class Distillation(TrainHook):
    """Hinton et al. 2015: alpha x T^2 x KL(teacher || student at temperature T) + (1 - alpha) x task loss."""

    def __init__(self, teacher: nn.Module, temperature: float = 4.0, alpha: float = 0.9) -> None:
        if temperature <= 0 or not 0 <= alpha <= 1:
            raise UserError(f"distillation needs temperature > 0 and alpha in [0, 1], got {temperature}, {alpha}")
        self.teacher = teacher.eval()
        self.temperature = temperature
        self.alpha = alpha
        self.task_loss_weight = 1.0 - alpha

    def extra_loss(self, model, inputs, logits, targets):
        with torch.no_grad():
            soft = F.softmax(self.teacher(inputs) / self.temperature, dim=-1)
        log_student = F.log_softmax(logits / self.temperature, dim=-1)
        return self.alpha * self.temperature**2 * F.kl_div(log_student, soft, reduction="batchmean")


@dataclass
class TrainResult:
    steps: int
    epochs_done: int
    losses: list[float] = field(default_factory=list)
    resumed_from_step: int = 0


def evaluate(model: nn.Module, dataset: Dataset, batch_size: int = 512) -> float:
    """Top-1 accuracy in [0, 1]; the model is put in eval mode and restored afterwards."""
    was_training = model.training
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in DataLoader(dataset, batch_size=batch_size):
            correct += int((model(x).argmax(dim=-1) == y).sum())
            total += len(y)
    model.train(was_training)
    return correct / total if total else 0.0


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def save_atomic(obj: dict, path: Path) -> None:
    """torch.save through a temporary file and a rename: Ctrl-C never leaves half a checkpoint."""
    write_atomic(path, lambda tmp: torch.save(obj, tmp))


def load_checkpoint(path: Path) -> dict:
    """Tensors and plain containers only (weights_only=True): a checkpoint is never unpickled as code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"checkpoint {path} is corrupt or not a checkpoint: {type(exc).__name__}") from None
    if not isinstance(state, dict) or not {"model", "optimizer", "step", "epoch"} <= set(state):
        raise UserError(f"checkpoint {path} is not an nntailor training checkpoint")
    return state


def fit(
    model: nn.Module,
    train: Dataset,
    config: TrainConfig = TrainConfig(),
    hooks: Sequence[TrainHook] = (),
) -> TrainResult:
    """Fine-tune ``model`` on ``train`` with cross-entropy plus whatever the hooks add."""
    seed_everything(config.seed)
    optimizer = _optimizer(model, config)
    step, start_epoch, skip = 0, 0, 0
    result = TrainResult(steps=0, epochs_done=0)
    if config.checkpoint is not None and config.checkpoint.exists():
        state = load_checkpoint(config.checkpoint)
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise UserError(f"checkpoint {config.checkpoint} does not match this model: {exc}") from None
        step, start_epoch = int(state["step"]), int(state["epoch"])
        skip = int(state.get("batch_in_epoch", 0))
        result.resumed_from_step = step
        result.losses = list(state.get("losses", []))
        torch.set_rng_state(state["torch_rng"])

    batches_per_epoch = -(-len(train) // config.batch_size)
    total = config.epochs * batches_per_epoch
    if config.max_steps is not None:
        total = min(total, config.max_steps)

    def checkpoint(epoch: int, batch_in_epoch: int) -> None:
        if config.checkpoint is None:
            return
        save_atomic(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "epoch": epoch,
             "batch_in_epoch": batch_in_epoch, "losses": result.losses, "torch_rng": torch.get_rng_state()},
            config.checkpoint,
        )

    task_weight = float(np.prod([h.task_loss_weight for h in hooks])) if hooks else 1.0
    model.train()
    progress = Progress(
        TextColumn("fine-tune"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.4f}"),
        TimeRemainingColumn(), disable=not config.progress, transient=True,
    )
    with progress:
        bar = progress.add_task("train", total=total, completed=min(step, total), loss=float("nan"))
        for epoch in range(start_epoch, config.epochs):
            # One generator per epoch, seeded from (seed, epoch): a resumed epoch replays the same order.
            order = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
            loader = DataLoader(train, batch_size=config.batch_size, shuffle=True, generator=order)
            stopped_at = None
            for index, (x, y) in enumerate(loader):
                if index < skip:
                    continue
                if step >= total:
                    stopped_at = index
                    break
                logits = model(x)
                loss = task_weight * F.cross_entropy(logits, y)
                for hook in hooks:
                    extra = hook.extra_loss(model, x, logits, y)
                    if extra is not None:
                        loss = loss + extra
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                for hook in hooks:
                    hook.before_step(model)
                optimizer.step()
                for hook in hooks:
                    hook.after_step(model)
                step += 1
                value = float(loss.detach())
                result.losses.append(value)
                progress.update(bar, advance=1, loss=value)
                if config.checkpoint_every and step % config.checkpoint_every == 0:
                    checkpoint(epoch, index + 1)
            if stopped_at is not None:  # max_steps reached inside this epoch
                checkpoint(epoch, stopped_at)
                break
            skip = 0
            result.epochs_done = epoch + 1
            checkpoint(epoch + 1, 0)
    model.eval()
    result.steps = step
    return result
