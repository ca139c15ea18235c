"""Single random int8 layers: the numpy reference equals TFLM (the tflite-micro wheel's interpreter) bit for bit.

A seeded property test: random shapes, strides, paddings, dilations, depth multipliers, fused activations,
scales (effective multipliers above and below one), zero points and biases, for every op of the IntModel. The
golden output is TFLM's, run on the .tflite the exporter writes.
"""

from __future__ import annotations

import numpy as np
import pytest
from deploy_cases import KINDS, random_case, random_inputs

from nntailor.deploy.intmodel import IntModel, IntOp, QTensor
from nntailor.deploy.tflite import run_tflm, to_tflite
from nntailor.errors import UserError

_ARENA = 1 << 18


@pytest.mark.parametrize("kind", KINDS)
def test_random_layers_are_bit_exact_against_tflm(kind: str) -> None:
    rng = np.random.default_rng(KINDS.index(kind))
    cases = 60
    for case in range(cases):
        model = random_case(rng, kind)
        x = random_inputs(rng, model, 3)
        ours = model.run(*x)["y"]
        theirs = run_tflm(to_tflite(model), x, arena_size=_ARENA)[0]
        assert ours.shape == theirs.shape, (kind, case)
        diff = np.flatnonzero(ours.reshape(-1) != theirs.reshape(-1))
        assert diff.size == 0, f"{kind} case {case}: {diff.size} of {ours.size} outputs differ, ops {model.ops[0]}"


@pytest.mark.parametrize(("s_in", "s_w", "s_out", "expected"), [
    # s_in s_w / s_out = 0.5 (1 - 2^-46): M rounds up to 2^31 and is halved, shift + 1 (TFLite: 0.5 - 1e-10)
    (1 + 2.0 ** -23, 1 - 2.0 ** -23, 2.0, (1073741824, 0)),
    (1.0, 2.0 ** -33, 1.0, (0, 0)),  # shift -32 < -31: the multiplier underflows to zero
    (1.0, 2.0 ** -32, 1.0, (1073741824, -31)),
    (1.0, 1.25, 1.0, (1342177280, 1)),  # above one: a left shift
])
def test_multipliers_are_tflm_figures_for_edge_scales(s_in: float, s_w: float, s_out: float,
                                                       expected: tuple[int, int]) -> None:
    x, y = QTensor("x", (1, 4), s_in, 3), QTensor("y", (1, 4), s_out, -2)
    # per channel (two different scales), so the effective scale is computed in double as TFLM does
    op = IntOp("fc", "fully_connected", ["x"], "y", weight=np.eye(4, dtype=np.int8) * 100,
               weight_scale=np.array([s_w, s_w, s_w, 0.5], np.float32), bias=np.zeros(4, np.int32))
    model = IntModel({"x": x, "y": y}, [op], ["x"], ["y"]).prepare()
    assert (int(op.multiplier[0]), int(op.shift[0])) == expected
    q = np.array([[-128, -1, 1, 127]], np.int8)
    assert (model.run(q)["y"] == run_tflm(to_tflite(model), [q], arena_size=_ARENA)[0]).all()


def test_reference_rejects_wrong_input() -> None:
    model = random_case(np.random.default_rng(0), "add")
    with pytest.raises(UserError, match="int8 of shape"):
        model.run(np.zeros(model.tensors["x"].shape, np.float32), np.zeros(model.tensors["x2"].shape, np.int8))


def test_rescaling_ops_need_shared_quantization() -> None:
    x = QTensor("x", (1, 2, 2, 1), 0.1, 0)
    y = QTensor("y", (1, 2, 2, 1), 0.2, 0)
    with pytest.raises(UserError, match="same scale and zero point"):
        IntModel({"x": x, "y": y}, [IntOp("pool", "maxpool", ["x"], "y")], ["x"], ["y"]).prepare()


def test_an_accumulator_that_could_overflow_int32_is_named() -> None:
    # 70,000 taps of |w| = 127 on inputs 255 away from the zero point: 2.27e9 > 2^31 - 1
    x, y = QTensor("x", (1, 70000), 0.01, -128), QTensor("y", (1, 1), 1.0, 0)
    op = IntOp("head.fc", "fully_connected", ["x"], "y", weight=np.full((1, 70000), 127, np.int8),
               weight_scale=np.array([1e-3], np.float32), bias=np.zeros(1, np.int32))
    with pytest.raises(UserError, match=r"head.fc: the int32 accumulator of output channel 0 can reach 2266950000"):
        IntModel({"x": x, "y": y}, [op], ["x"], ["y"]).prepare()
