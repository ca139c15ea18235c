"""Structured sparsity learning (Wen et al., NeurIPS 2016): a group lasso that drives whole groups to zero.

loss += strength x sum over conv/linear layers of sum over groups of ||W_g||_2, with groups the filters
(output channels) and/or the channels (input slices). Groups that reach ~0 are then removed by structured
pruning; the L2 norm (not squared) is what makes them exactly sparse rather than only small.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn as nn

from nntailor.compress.prune import prunable_layers
from nntailor.train import TrainHook

Group = Literal["filters", "channels"]


def group_norms(weight: torch.Tensor, group: Group) -> torch.Tensor:
    w = weight if group == "filters" else weight.transpose(0, 1)
    return w.reshape(w.shape[0], -1).norm(dim=1)


class GroupLasso(TrainHook):
    def __init__(self, model: nn.Module, strength: float, groups: Sequence[Group] = ("filters",)) -> None:
        self.strength = strength
        self.groups = tuple(groups)
        self.layers = [name for name, _ in prunable_layers(model)]

    def extra_loss(self, model, inputs, logits, targets):
        total = logits.new_zeros(())
        for name in self.layers:
            weight = model.get_submodule(name).weight
            for group in self.groups:
                total = total + group_norms(weight, group).sum()
        return self.strength * total
