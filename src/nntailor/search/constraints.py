"""Chip constraints: a design whose arena, flash, latency or energy is over the target's budget is infeasible.

The memories come from the target, as ``analyze``'s verdict checks them (peak SRAM, with TFLM's persistent
tail on an MCU, plus the runtime's share against the memory that holds activations, weights against the one that
holds weights, both against one memory when they share it, as an accelerator's DRAM does); latency and energy
budgets from the space (``budgets:``). Each constraint is Optuna's convention: the relative excess
``need / budget - 1``, feasible when every value is <= 0 (``trial.set_constraint``, or a sampler's
``constraints_func``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from nntailor.errors import UserError
from nntailor.report.format import format_bytes
from nntailor.search.costs import CostModel
from nntailor.search.space import BINARY_BITS, Budgets, Choice, Design, IntRange, Space
from nntailor.targets import Target, load


class ChipBudget:
    """The budgets of one target (and optional latency/energy limits) as Optuna constraint values."""

    def __init__(self, target: str | Target, budgets: Budgets | None = None) -> None:
        self.target = load(target)
        self.budgets = budgets or Budgets()

    def margins(self, totals: Mapping[str, Any]) -> dict[str, float]:
        """Constraint name -> relative excess over its budget (<= 0 fits), from ``analyze``-style totals."""
        tgt = self.target
        act_home, w_home = tgt.home("activations"), tgt.home("weights")
        peak, flash = totals["peak_sram_bytes"], totals["flash_bytes"]
        if tgt.kind == "mcu":  # TFLM runs on the MCUs: its persistent tail sits in the arena beside the head
            peak += totals["arena_tail_bytes"]
        out: dict[str, float] = {}
        if act_home is w_home:
            need = peak + flash + tgt.runtime_sram_bytes + tgt.runtime_flash_bytes
            out["memory"] = need / act_home.size_bytes - 1
        else:
            out["arena"] = (peak + tgt.runtime_sram_bytes) / act_home.size_bytes - 1
            out["flash"] = (flash + tgt.runtime_flash_bytes) / w_home.size_bytes - 1
        if self.budgets.latency_s is not None:
            out["latency"] = totals["latency_s"] / self.budgets.latency_s - 1
        if self.budgets.energy_pj is not None:
            out["energy"] = totals["energy_pj"] / self.budgets.energy_pj - 1
        return out

    def feasible(self, totals: Mapping[str, Any]) -> bool:
        return all(v <= 0 for v in self.margins(totals).values())


def _corner(space: Space, counts: dict[str, int], block: str | None) -> Design:
    """The design at the cheap end of every dimension: fewest and narrowest layers, smallest kernels, largest
    pools, fewest bits, most sparsity; the layer counts (and block kind) as given."""

    def low(dim: Any) -> Any:
        if isinstance(dim, IntRange):
            return dim.low
        if isinstance(dim, Choice):
            values = [c for c in dim.choices if isinstance(c, int | float)]
            return min(values) if values else dim.choices[0]
        return dim.low

    def high(dim: Any) -> Any:
        if isinstance(dim, IntRange):
            return dim.high
        return max(dim.choices) if isinstance(dim, Choice) else dim.high

    def ask(name: str, dim: Any) -> Any:
        if name in counts:
            return counts[name]
        if name.startswith("block_") and block is not None:
            return block
        if name.startswith(("pool_", "sparsity_", "stride_")):
            return high(dim)
        if name.startswith("bits_") and BINARY_BITS in dim.choices:
            return BINARY_BITS
        return low(dim)

    return space._walk(ask)


def _values(dim: Any) -> list[Any]:
    if isinstance(dim, IntRange):
        return list(range(dim.low, dim.high + 1, dim.step))
    return list(dim.choices)


def check_reachable(space: Space, costs: CostModel, budget: ChipBudget) -> Design:
    """Raise ``UserError`` naming the cheapest corner design and its cost when no corner fits the budget.

    Corners: every count of conv layers, FC layers and stages (and every block kind) with every other dimension
    at its cheap end. A corner that fits is returned (the space can meet the budget); these run before any
    training, so a budget the space cannot meet is refused at once.
    """
    spec = space.spec
    names = [n for n in ("conv_layers", "fc_layers", "stages") if hasattr(spec, n)]
    blocks = list(spec.block.choices) if hasattr(spec, "block") else [None]
    best: tuple[float, Design, dict[str, Any]] | None = None
    for combo in itertools.product(*[_values(getattr(spec, n)) for n in names]):
        for block in blocks:
            design = _corner(space, dict(zip(names, combo, strict=True)), block)
            totals = costs.totals(design)
            margins = budget.margins(totals)
            if all(v <= 0 for v in margins.values()):
                return design
            worst = max(margins.values())
            if best is None or worst < best[0]:
                best = (worst, design, totals)
    assert best is not None
    _, design, totals = best
    over = {k: v for k, v in budget.margins(totals).items() if v > 0}
    cost = (f"peak SRAM {format_bytes(totals['peak_sram_bytes'])}, flash {format_bytes(totals['flash_bytes'])}, "
            f"latency {totals['latency_s'] * 1e3:.3g} ms, energy {totals['energy_pj'] / 1e6:.3g} uJ")
    raise UserError(
        f"no design in the space fits {budget.target.name}: the cheapest, {design.params}, costs {cost} "
        f"(over on {', '.join(over)})"
    )
