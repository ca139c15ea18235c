"""Dataflow loop nests: MAGNet's reuse table, tile fills against a brute-force walk of the nest, Eyeriss energy."""

import itertools
import math
import random

import pytest

from nntailor.cost.accel.dataflow import (
    EYERISS_NORMALIZED,
    HOROWITZ_45NM_INT8,
    Loop,
    accesses,
    energy_pj,
    fills,
    magnet_nest,
    reuse_loops,
)
from nntailor.errors import UserError

# Seed 001 (MAGNet, ICCAD 2019), lines 141-146: "Dataflow / Weight Reuse / Input Reuse / Output Reuse";
# "0" in the seed is no reuse (an empty product here).
MAGNET_TABLE = {
    "ws": ({"p1", "q1"}, set(), set()),
    "os": (set(), set(), {"r", "s", "c1"}),
    "is": (set(), {"r", "s", "k1"}, set()),
    "ws_los": ({"p1", "q1"}, set(), {"c0"}),
    "os_lws": ({"q0"}, set(), {"r", "s", "c1"}),
}


@pytest.mark.parametrize("dataflow", MAGNET_TABLE)
def test_magnet_reuse_table(dataflow):
    nest = magnet_nest(dataflow, {})
    got = tuple({loop.name for loop in reuse_loops(nest, op)} for op in ("weights", "inputs", "outputs"))
    assert got == MAGNET_TABLE[dataflow]


def _walk_fills(nest, operand, inner, relevant):
    """Count tile fetches by walking every iteration of the outer loops with a one-tile buffer."""
    outer = [loop for loop in nest if loop.level not in inner]
    keep = [i for i, loop in enumerate(outer) if loop.dim in relevant]
    held, count = None, 0
    for index in itertools.product(*(range(loop.bound) for loop in outer)):
        tile = tuple(index[i] for i in keep)
        if tile != held:
            held, count = tile, count + 1
    return count


RELEVANT = {"weights": {"k", "c", "r", "s"}, "inputs": {"n", "c", "p", "q", "r", "s"}, "outputs": {"n", "k", "p", "q"}}


@pytest.mark.parametrize("seed", range(12))
def test_fills_equal_a_walk_of_the_nest(seed):
    rng = random.Random(seed)
    dims = ["k", "c", "p", "q", "r", "s"]
    nest = [Loop(f"{d}{i}", rng.randint(1, 3), level=rng.choice(["dram", "glb", "rf"]))
            for i, d in enumerate(rng.sample(dims * 2, 7))]
    nest.sort(key=lambda loop: ["dram", "glb", "rf"].index(loop.level))  # a level's loops sit inside the one above
    for inner in (["glb", "rf"], ["rf"]):
        for op in ("weights", "inputs", "outputs"):
            assert fills(nest, op, inner) == _walk_fills(nest, op, inner, RELEVANT[op])


def test_weight_stationary_1d_conv_accesses_by_hand():
    # 1-D conv, 6 outputs of a 3-tap filter; the 3 weights sit in the RF while p runs at the GLB (p indexes no
    # weight: one fill of 3 words), the 3-wide input window comes again for each output (6 x 3), and each output
    # leaves once, never to be read back.
    nest = [Loop("p", 6, level="glb"), Loop("s", 3, level="rf")]
    moved = accesses(nest, ["glb", "rf"])
    assert moved.macs == 18
    assert fills(nest, "weights", ["rf"]) == 1
    assert moved.reads["glb"] == {"weights": 3, "inputs": 3 * 6, "outputs": 0}
    assert moved.writes["glb"]["outputs"] == 6
    assert moved.reads["rf"] == {"weights": 18, "inputs": 18, "outputs": 18 - 6}


def test_energy_is_accesses_times_cost_plus_macs():
    nest = [Loop("p", 6, level="glb"), Loop("s", 3, level="rf")]
    moved = accesses(nest, ["glb", "rf"])
    parts = energy_pj(moved, EYERISS_NORMALIZED)
    assert parts["mac"] == 18
    assert parts["glb"] == 6 * moved.total("glb") and parts["rf"] == 1 * moved.total("rf")
    assert HOROWITZ_45NM_INT8["dram"] / HOROWITZ_45NM_INT8["mac"] == pytest.approx(2000 / 8 / 0.3)
    with pytest.raises(UserError, match="no per-access energy for glb"):
        energy_pj(moved, {"mac": 1.0, "rf": 1.0})


def test_stride_widens_the_input_tile():
    nest = [Loop("k", 2, level="glb"), Loop("p", 4, level="rf"), Loop("r", 3, level="rf")]
    assert accesses(nest, ["glb", "rf"], stride=2).reads["glb"]["inputs"] == (4 - 1) * 2 + 3
    assert math.prod(loop.bound for loop in nest) == accesses(nest, ["glb", "rf"]).macs


def test_bad_nests_are_named():
    with pytest.raises(UserError, match="loop 'z1': unknown dim 'z'"):
        fills([Loop("z1", 2)], "weights", ["rf"])
    with pytest.raises(UserError, match="loop 'k': bound must be positive, got 0"):
        fills([Loop("k", 0)], "weights", ["rf"])
    with pytest.raises(UserError, match="unknown MAGNet dataflow 'rs'"):
        magnet_nest("rs", {})
