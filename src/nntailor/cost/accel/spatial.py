"""Eyeriss' dataflows on a 2-D PE array: row stationary (RS), weight and output stationary (WS, OS) and no local
reuse (NLR) as loop nests with spatial loops, tiled under the array's RF and global-buffer capacities (Chen, Emer,
Sze, "Eyeriss", ISCA 2016, sections IV-V and VI's energy comparison at equal storage).

Every nest has four levels, outermost first: ``dram`` loops step through global-buffer tiles, ``glb`` loops through
the array's tiles, ``noc`` loops are spatial (unrolled over PE rows and columns), ``rf`` loops run inside one PE.
An operand a dataflow does not keep in the RF streams past it: each MAC takes it from the NoC (NLR keeps none).

- RS: a PE runs the 1-D row primitive (one filter row of S weights held in its RF, an input row sliding through,
  a row of psums); filter rows are spread over PE rows (r), output rows over PE columns (p), so input rows reach
  PEs along diagonals (the sliding-window tile of ``tile_words``) and psums accumulate up the columns. When a
  layer's R exceeds the rows or P the columns it is folded (the rest of r, p runs as glb loops); spare rows take
  more filters (k), as Eyeriss replicates its logical PE sets.
- WS: each PE holds weights of one (k, c) pair and its R x S window; inputs stream in, psums stream out.
- OS: each PE holds psums of its outputs while the c, r, s reduction runs; weights and inputs stream in.
- NLR: PE rows take input channels, columns filters; every operand comes from the global buffer.

The tile factors are searched exhaustively over divisors (so MACs stay exact) in two stages, the PE's tile and
spatial factors first, then the global buffer's (each loop's divisors thinned to a geometric handful); the
lowest energy under the per-access costs wins.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from nntailor.cost.accel.dataflow import Accesses, Loop, accesses, energy_pj, tile_words
from nntailor.errors import UserError

SPATIAL_DATAFLOWS = ("rs", "ws", "os", "nlr")
LEVELS = ("dram", "glb", "noc", "rf")


@dataclass(frozen=True)
class ConvShape:
    """One group of a conv (a linear layer is a 1x1 conv over its rows): batch n, filters k, input channels c,
    output rows p and cols q, filter rows r and cols s."""

    n: int
    k: int
    c: int
    p: int
    q: int
    r: int
    s: int
    stride: int = 1


@dataclass(frozen=True)
class Array:
    rows: int
    cols: int
    rf_words: int  # per PE
    glb_words: int


@dataclass(frozen=True)
class Tiling:
    """The chosen nest, what it moves and its energy per level (pJ, or MAC units under normalized costs)."""

    nest: tuple[Loop, ...]
    moved: Accesses
    energy: dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.energy.values())


# Tile factors tried per loop: the divisors of its dim under the cap, thinned to about this many spread
# geometrically (1 and the largest always kept), so a layer of 960 channels searches as fast as one of 13.
_FACTORS_PER_LOOP = 4


def _divisors(n: int, cap: int | None = None) -> list[int]:
    found = [d for d in range(1, n + 1) if n % d == 0 and (cap is None or d <= cap)]
    if len(found) <= _FACTORS_PER_LOOP:
        return found
    step = math.log(found[-1]) / (_FACTORS_PER_LOOP - 1)
    keep = {min(found, key=lambda d, t=math.exp(i * step): abs(math.log(d / t))) for i in range(_FACTORS_PER_LOOP)}
    return sorted(keep)


def _nest(flow: str, shape: ConvShape, f: Mapping[str, int]) -> list[Loop]:
    """The nest of ``flow`` with PE factors ``f`` (k0, c0, q0, r0 in a PE; ks, cs, ps, qs, rs across PEs) and glb
    factors (k1, c1, p1); what is left of each dim runs at the DRAM level."""
    sh = shape
    k_in = f.get("k0", 1) * f.get("ks", 1) * f.get("k1", 1)
    c_in = f.get("c0", 1) * f.get("cs", 1) * f.get("c1", 1)
    p_in = f.get("ps", 1) * f.get("p1", 1)
    dram = [Loop("n", sh.n, "dram"), Loop("k2", sh.k // k_in, "dram"), Loop("c2", sh.c // c_in, "dram"),
            Loop("p2", sh.p // p_in, "dram")]
    k1, c1, p1 = Loop("k1", f.get("k1", 1), "glb"), Loop("c1", f.get("c1", 1), "glb"), Loop("p1", f.get("p1", 1), "glb")
    if flow == "rs":
        glb = [k1, c1, p1, Loop("r1", sh.r // f["rs"], "glb"), Loop("q1", sh.q // f["q0"], "glb")]
        noc = [Loop("k9", f["ks"], "noc", spatial=True), Loop("r", f["rs"], "noc", spatial=True),
               Loop("p", f["ps"], "noc", spatial=True)]
        rf = [Loop("q0", f["q0"], "rf"), Loop("c0", f["c0"], "rf"), Loop("k0", f["k0"], "rf"), Loop("s", sh.s, "rf")]
    elif flow == "ws":  # p, q innermost at the glb: the weights in the RF stay while the image streams by
        glb = [k1, c1, Loop("r1", sh.r // f["r0"], "glb"), p1, Loop("q", sh.q, "glb")]
        noc = [Loop("c9", f["cs"], "noc", spatial=True), Loop("k9", f["ks"], "noc", spatial=True)]
        rf = [Loop("k0", f["k0"], "rf"), Loop("c0", f["c0"], "rf"), Loop("r0", f["r0"], "rf"), Loop("s", sh.s, "rf")]
    elif flow == "os":  # the reduction (c, r) innermost at the glb: the psums in the RF stay until done
        glb = [k1, p1, Loop("q1", sh.q // (f["qs"] * f["q0"]), "glb"), c1, Loop("r1", sh.r // f["r0"], "glb")]
        noc = [Loop("k9", f["ks"], "noc", spatial=True), Loop("q9", f["qs"], "noc", spatial=True)]
        rf = [Loop("k0", f["k0"], "rf"), Loop("q0", f["q0"], "rf"), Loop("c0", f["c0"], "rf"),
              Loop("r0", f["r0"], "rf"), Loop("s", sh.s, "rf")]
    elif flow == "nlr":
        glb = [k1, c1, p1, Loop("q", sh.q, "glb"), Loop("r", sh.r, "glb"), Loop("s", sh.s, "glb")]
        noc = [Loop("c9", f["cs"], "noc", spatial=True), Loop("k9", f["ks"], "noc", spatial=True)]
        rf = []
    else:
        raise UserError(f"unknown spatial dataflow {flow!r}; valid: {', '.join(SPATIAL_DATAFLOWS)}")
    return dram + glb + noc + rf


# What each dataflow keeps in the PE's RF (Eyeriss, ISCA 2016, section IV): the rest streams through the NoC.
HELD = {"rs": ("weights", "inputs", "outputs"), "ws": ("weights",), "os": ("outputs",), "nlr": ()}


def _fits(nest: list[Loop], flow: str, shape: ConvShape, array: Array) -> bool:
    spatial_rows = {"rs": ("k9", "r"), "ws": ("c9",), "os": ("k9",), "nlr": ("c9",)}[flow]
    rows = math.prod(loop.bound for loop in nest if loop.name in spatial_rows)
    cols = math.prod(loop.bound for loop in nest if loop.spatial and loop.name not in spatial_rows)
    if rows > array.rows or cols > array.cols:
        return False
    ops = ("weights", "inputs", "outputs")
    if flow != "nlr" and sum(tile_words(nest, op, ["rf"], shape.stride) for op in HELD[flow]) > array.rf_words:
        return False
    return sum(tile_words(nest, op, ["glb", "noc", "rf"], shape.stride) for op in ops) <= array.glb_words


def _price(flow: str, shape: ConvShape, f: Mapping[str, int], array: Array,
           per_access: Mapping[str, float]) -> Tiling | None:
    nest = _nest(flow, shape, f)
    if not _fits(nest, flow, shape, array):
        return None
    moved = accesses(nest, LEVELS, shape.stride, HELD[flow])
    return Tiling(tuple(nest), moved, energy_pj(moved, per_access))


def _pe_choices(flow: str, sh: ConvShape, array: Array) -> list[dict[str, int]]:
    rf = array.rf_words
    if flow == "rs":
        out = []
        for rs in _divisors(sh.r, array.rows):
            for ks, ps, q0, c0 in itertools.product(
                    _divisors(sh.k, array.rows // rs), _divisors(sh.p, array.cols), _divisors(sh.q, rf),
                    _divisors(sh.c, rf)):
                for k0 in _divisors(sh.k // ks, rf // (c0 * sh.s) if c0 * sh.s <= rf else 0):
                    if k0 * q0 > rf:
                        continue
                    out.append({"rs": rs, "ks": ks, "ps": ps, "q0": q0, "c0": c0, "k0": k0})
        return out
    if flow in ("ws", "nlr"):
        grid = itertools.product(_divisors(sh.c, array.rows), _divisors(sh.k, array.cols))
        if flow == "nlr":
            return [{"cs": cs, "ks": ks} for cs, ks in grid]
        return [{"cs": cs, "ks": ks, "k0": k0, "c0": c0, "r0": r0}
                for cs, ks in grid for k0 in _divisors(sh.k // ks, rf) for c0 in _divisors(sh.c // cs, rf)
                for r0 in _divisors(sh.r) if k0 * c0 * r0 * sh.s <= rf]
    return [{"ks": ks, "qs": qs, "k0": k0, "q0": q0, "c0": c0, "r0": r0}
            for ks in _divisors(sh.k, array.rows) for qs in _divisors(sh.q, array.cols)
            for k0 in _divisors(sh.k // ks, rf) for q0 in _divisors(sh.q // qs, rf) if k0 * q0 <= rf
            for c0 in _divisors(sh.c, rf) for r0 in _divisors(sh.r) if c0 * r0 * sh.s <= rf]


@lru_cache(maxsize=4096)
def best_mapping(flow: str, shape: ConvShape, array: Array, costs: tuple[tuple[str, float], ...]) -> Tiling:
    """The lowest-energy tiling of ``shape`` under ``flow`` on ``array`` (``costs``: per-access energy by level
    and ``mac``, as sorted pairs so the search is cached)."""
    per_access = dict(costs)
    best: Tiling | None = None
    for pe in _pe_choices(flow, shape, array):  # stage 1: the PE's tile and the spatial unrolling
        m = _price(flow, shape, pe, array, per_access)
        if m is not None and (best is None or m.total < best.total):
            best, best_pe = m, pe
    if best is None:
        raise UserError(f"layer {shape}: no {flow} tiling fits {array.rf_words} RF words per PE and "
                        f"{array.glb_words} global-buffer words")
    ks, cs = best_pe.get("ks", 1) * best_pe.get("k0", 1), best_pe.get("cs", 1) * best_pe.get("c0", 1)
    for k1, c1, p1 in itertools.product(_divisors(shape.k // ks), _divisors(shape.c // cs),  # stage 2: the glb's
                                        _divisors(shape.p // best_pe.get("ps", 1))):
        m = _price(flow, shape, {**best_pe, "k1": k1, "c1": c1, "p1": p1}, array, per_access)
        if m is not None and m.total < best.total:
            best = m
    return best
