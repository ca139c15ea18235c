"""Dataflows as loop nests: which operand stays where, how often each memory level is read and written, and the
energy that costs (Chen, Emer, Sze, "Eyeriss", ISCA 2016, section IV; MAGNet, ICCAD 2019, in seed 001).

A conv is seven loops: n (batch), k (filters), c (input channels), p, q (output rows, cols), r, s (filter rows,
cols). A dataflow orders and splits them (``k1`` is the outer part of k, ``c0`` the inner). Each loop carries the
memory level whose tiles it steps through: the loops of level ``glb`` step through tiles held in the global buffer,
so the level below it (the PE's register file) is refilled from it each time the tile of an operand changes.

Reuse (MAGNet's table): an operand held still under a loop nest is reused by every consecutive innermost loop that
does not index it; the first loop that indexes it ends the reuse. Loops marked ``local`` (MAGNet's LOS and LWS run
them inside the vector MAC on a local register) hold the operands they index as a vector one level up, so those
operands' reuse is counted past them.

Pure arithmetic: loop bounds and per-access costs in, access counts and pJ out.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

from nntailor.errors import UserError

OPERANDS = ("weights", "inputs", "outputs")
DIMS = ("n", "k", "c", "p", "q", "r", "s", "h", "w")

# Which loop dims index each operand. A nest written over output coordinates (p, q) reads inputs at
# (p*stride + r, q*stride + s), so r and s index inputs; one written over input coordinates (h, w: MAGNet's IS)
# writes outputs at (h - r, w - s), so there r and s index outputs instead.
_RELEVANT_OUT_COORDS = {"weights": {"k", "c", "r", "s"}, "inputs": {"n", "c", "p", "q", "r", "s"},
                        "outputs": {"n", "k", "p", "q"}}
_RELEVANT_IN_COORDS = {"weights": {"k", "c", "r", "s"}, "inputs": {"n", "c", "h", "w"},
                       "outputs": {"n", "k", "h", "w", "r", "s"}}

# Energy per access relative to one MAC (Eyeriss, ISCA 2016, fig. 1 / REFERENCES.md "Energy and dataflows").
EYERISS_NORMALIZED = {"mac": 1.0, "rf": 1.0, "noc": 2.0, "glb": 6.0, "dram": 200.0}
# Horowitz, ISSCC 2014, 45 nm, pJ per 8-bit word: int8 MAC = mult 0.2 + int32 add 0.1; SRAM 64-bit reads of 10 pJ
# (8 KB, the register-file stand-in) and 20 pJ (32 KB, the global buffer) per 8 bytes; DRAM 2 nJ per 64 bits (the
# middle of 1.3-2.6 nJ). The talk has no NoC figure: 2x the register file, Eyeriss' ratio.
HOROWITZ_45NM_INT8 = {"mac": 0.3, "rf": 10 / 8, "noc": 2 * 10 / 8, "glb": 20 / 8, "dram": 2000 / 8}
PRESETS = {"eyeriss": EYERISS_NORMALIZED, "horowitz45": HOROWITZ_45NM_INT8}


@dataclass(frozen=True)
class Loop:
    """One loop: ``name`` is a dim with an optional split suffix (``k1``, ``c0``), ``bound`` its trip count."""

    name: str
    bound: int = 1
    level: str = "rf"  # the memory whose tiles this loop steps through
    local: bool = False  # MAGNet's local register loop, inside the vector MAC
    spatial: bool = False  # unrolled across PEs (level "noc"): its iterations run at once on different PEs

    def __post_init__(self) -> None:  # checked once here: the tiling search prices thousands of nests
        if self.dim not in DIMS:
            raise UserError(f"loop {self.name!r}: unknown dim {self.dim!r}; valid: {', '.join(DIMS)}")
        if self.bound <= 0:
            raise UserError(f"loop {self.name!r}: bound must be positive, got {self.bound}")

    @cached_property
    def dim(self) -> str:
        return self.name.rstrip("0123456789")


def _relevance(nest: Sequence[Loop]) -> dict[str, set[str]]:
    in_coords = any(loop.dim in ("h", "w") for loop in nest)
    return _RELEVANT_IN_COORDS if in_coords else _RELEVANT_OUT_COORDS


def reuse_loops(nest: Sequence[Loop], operand: str) -> list[Loop]:
    """The innermost loops that reuse ``operand`` where it is held still (MAGNet's reuse), innermost first."""
    relevant = _relevance(nest)[operand]
    loops: list[Loop] = []
    for loop in reversed(nest):
        if loop.dim in relevant:
            if loop.local:
                continue
            break
        loops.append(loop)
    return loops


def reuse_factor(nest: Sequence[Loop], operand: str) -> int:
    """How many MACs use each fetch of ``operand`` at the innermost level: the product of its reuse loops."""
    return math.prod(loop.bound for loop in reuse_loops(nest, operand))


def fills(nest: Sequence[Loop], operand: str, inner: Sequence[str]) -> int:
    """How many times the tile of ``operand`` below a level boundary is brought in: the loops of levels not in
    ``inner`` are outside the boundary, and a tile is fetched again only when an outer loop that indexes it moves
    (the trailing outer loops that do not index it keep it resident)."""
    relevant = _relevance(nest)[operand]
    # a 1-trip loop never moves; a spatial loop outside the boundary is other PEs, not another fill of this one
    outer = [loop for loop in nest if loop.level not in inner and loop.bound > 1 and not loop.spatial]
    while outer and outer[-1].dim not in relevant:
        outer.pop()
    return math.prod(loop.bound for loop in outer)


def tile_words(nest: Sequence[Loop], operand: str, inner: Sequence[str], stride: int = 1) -> int:
    """Words of ``operand`` the loops of the ``inner`` levels touch: the product of the bounds that index it; an
    input tile of output-coordinate loops spans (P - 1) * stride + R rows and (Q - 1) * stride + S cols."""
    relevant = _relevance(nest)[operand]
    extent = {d: 1 for d in DIMS}
    for loop in nest:
        if loop.level in inner and loop.dim in relevant:
            extent[loop.dim] *= loop.bound
    if operand == "inputs" and "p" in relevant:
        rows = (extent.pop("p") - 1) * stride + extent.pop("r")
        cols = (extent.pop("q") - 1) * stride + extent.pop("s")
        return rows * cols * math.prod(extent.values())
    return math.prod(extent.values())


@dataclass(frozen=True)
class Accesses:
    """Word accesses per memory level and operand: reads and writes (outputs are partial sums: read, add, write)."""

    reads: dict[str, dict[str, int]]
    writes: dict[str, dict[str, int]]
    macs: int

    def total(self, level: str) -> int:
        return sum(self.reads[level].values()) + sum(self.writes[level].values())


def accesses(nest: Sequence[Loop], levels: Sequence[str], stride: int = 1,
             held: Collection[str] = OPERANDS) -> Accesses:
    """Reads and writes of each level in ``levels`` (outermost first, e.g. dram, glb, rf) under ``nest``.

    A level serves the level below it: it is read once per fill of each operand's tile there, and takes back
    each partial-sum tile when that tile leaves (written), reading it again when it returns (every fill after the
    first of that tile). The innermost level serves the MACs: each reads a weight and an input and reads and
    writes its partial sum there (Eyeriss' RF: 4 accesses per MAC, less the first read of each output).

    ``held``: the operands the innermost level keeps; the others stream past it (Eyeriss' WS keeps only weights in
    the RF, OS only psums): each MAC takes them from the level above, as the innermost level would.
    """
    macs = math.prod(loop.bound for loop in nest)
    distinct_outputs = tile_words(nest, "outputs", levels)  # every output word, written back at least once
    per_mac = ({"weights": macs, "inputs": macs, "outputs": macs - distinct_outputs},
               {"weights": 0, "inputs": 0, "outputs": macs})
    reads: dict[str, dict[str, int]] = {}
    writes: dict[str, dict[str, int]] = {}
    for depth, level in enumerate(levels):
        inner = list(levels[depth + 1:])
        if not inner:  # the innermost level feeds the MAC unit
            reads[level] = {op: n if op in held else 0 for op, n in per_mac[0].items()}
            writes[level] = {op: n if op in held else 0 for op, n in per_mac[1].items()}
            continue
        # a level above the array (a spatial loop inside it) is read once per distinct word of the array's tile:
        # inputs and weights multicast to every PE that uses them, psums reduced across PEs before they return
        # (Eyeriss, ISCA 2016, section V); the level feeding the PEs delivers each PE its own copy
        pes = math.prod(loop.bound for loop in nest if loop.spatial and loop.level not in inner)
        below = {op: pes * fills(nest, op, inner) * tile_words(nest, op, inner, stride) for op in OPERANDS}
        reads[level] = {"weights": below["weights"], "inputs": below["inputs"],
                        "outputs": below["outputs"] - distinct_outputs}
        writes[level] = {"weights": 0, "inputs": 0, "outputs": below["outputs"]}
        if depth == len(levels) - 2:  # the level that feeds the innermost one serves what streams past it
            for op in OPERANDS:
                if op not in held:
                    reads[level][op], writes[level][op] = per_mac[0][op], per_mac[1][op]
    return Accesses(reads, writes, macs)


def energy_pj(moved: Accesses, per_access: Mapping[str, float]) -> dict[str, float]:
    """accesses x per-access cost for each level, plus MACs x the MAC cost (``per_access['mac']``)."""
    missing = [level for level in moved.reads if level not in per_access]
    if missing or "mac" not in per_access:
        raise UserError(f"no per-access energy for {', '.join(missing or ['mac'])}; given: {', '.join(per_access)}")
    parts = {level: moved.total(level) * per_access[level] for level in moved.reads}
    parts["mac"] = moved.macs * per_access["mac"]
    return parts


def magnet_nest(dataflow: str, bounds: Mapping[str, int]) -> list[Loop]:
    """The loop nests of MAGNet's dataflow figure (seed 001, panels a-e), outermost first, over ``bounds`` (e.g.
    ``{"k1": 4, "c1": 8, "p1": 7, ...}``; a name left out has bound 1). The vector MAC sits under the last loop."""
    orders = {
        "ws": ["k1", "r", "s", "c1", "p1", "q1"],
        "os": ["k1", "p1", "q1", "r", "s", "c1"],
        "is": ["h1", "w1", "c1", "k1", "r", "s"],
        "ws_los": ["k1", "r", "s", "c1", "p1", "q1", "c0"],
        "os_lws": ["k1", "p1", "q1", "r", "s", "c1", "q0"],
    }
    if dataflow not in orders:
        raise UserError(f"unknown MAGNet dataflow {dataflow!r}; valid: {', '.join(orders)}")
    local = {"ws_los": "c0", "os_lws": "q0"}.get(dataflow)
    return [Loop(name, bounds.get(name, 1), local=name == local) for name in orders[dataflow]]
