"""Sparsity schedules: what sparsity to prune to at training step t. Pure functions of t.

- one_shot: s_f from ``begin`` on.
- iterative: Han et al. 2015's prune-retrain cycles, ``cycles`` equal increments.
- linear:    s_i + (s_f - s_i) p.
- cubic:     Zhu & Gupta 2017, s_f + (s_i - s_f)(1 - p)^3: prune fast early, when redundancy is largest.
- cosine:    s_f + (s_i - s_f)(1 + cos(pi p)) / 2.
- inverse_power: s_i + (s_f - s_i) p^power, the mirror of the polynomial: slow early, fast late.
p = (t - begin) / (end - begin), clamped to [0, 1]; pruning happens every ``frequency`` steps
(Zhu & Gupta's delta t), so the sparsity is held between pruning steps.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ScheduleKind = Literal["one_shot", "iterative", "linear", "cubic", "cosine", "inverse_power"]


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ScheduleKind = "cubic"
    initial: float = Field(default=0.0, ge=0, lt=1)
    final: float = Field(default=0.5, ge=0, lt=1)
    begin: int = Field(default=0, ge=0)
    end: int = Field(default=100, ge=0)
    frequency: int = Field(default=10, ge=1)
    cycles: int = Field(default=4, ge=1)  # iterative only
    power: float = Field(default=3.0, gt=0)  # inverse_power only

    @model_validator(mode="after")
    def _order(self) -> Schedule:
        if self.end < self.begin:
            raise ValueError(f"end ({self.end}) must not come before begin ({self.begin})")
        return self

    def progress(self, step: int) -> float:
        if step < self.begin:
            return 0.0
        if self.end == self.begin:
            return 1.0
        # hold the value between pruning steps: only multiples of ``frequency`` after begin count
        held = self.begin + (step - self.begin) // self.frequency * self.frequency
        return min(1.0, (held - self.begin) / (self.end - self.begin))

    def sparsity_at(self, step: int) -> float:
        if self.kind == "one_shot":
            return self.final if step >= self.begin else self.initial
        if step < self.begin:
            return self.initial
        p = self.progress(step)
        s_i, s_f = self.initial, self.final
        if self.kind == "iterative":
            return s_i + (s_f - s_i) * math.floor(p * self.cycles + 1e-9) / self.cycles
        if self.kind == "linear":
            return s_i + (s_f - s_i) * p
        if self.kind == "cubic":
            return s_f + (s_i - s_f) * (1 - p) ** 3
        if self.kind == "cosine":
            return s_f + (s_i - s_f) * (1 + math.cos(math.pi * p)) / 2
        return s_i + (s_f - s_i) * p**self.power

    def pruning_steps(self) -> list[int]:
        """The steps at which the mask changes."""
        if self.kind == "one_shot":
            return [self.begin]
        return list(range(self.begin, self.end + 1, self.frequency))
