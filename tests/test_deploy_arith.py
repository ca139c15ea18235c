"""The integer requantization arithmetic (compress/quant/arith.py) against TFLite's own test figures.

Golden values: tensorflow/lite/kernels/internal/quantization_util_test.cc (QuantizeMultiplier,
QuantizeMultiplierSmallerThanOneExp, QuantizeMultiplierGreaterThanOne, QuantizeMultiplierUnderflow,
QuantizeMultiplierArray, MultiplyByQuantizedMultiplierInt32), gemmlowp's definition of SRDHM / RDBPOT
(REFERENCES.md), and exact rational arithmetic (fractions) for single rounding.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from nntailor.compress.quant.arith import (
    INT32_MAX,
    INT32_MIN,
    calculate_input_radius,
    exp_on_negative_values,
    logistic_fixed_point,
    multiply_by_quantized_multiplier,
    preprocess_softmax_scaling,
    quantize_multiplier,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
    wrap_int32,
)
from nntailor.errors import UserError

# (real multiplier, TFLite's (M, shift)); shift is TFLM's exponent: real = M 2^(shift - 31)
TFLITE_QUANTIZE_MULTIPLIER = [
    (0.25, (1073741824, -1)),
    (0.50 - 5e-9, (2147483627, -1)),
    (0.50 - 1e-10, (1073741824, 0)),  # M would round to 2^31: halved, shift + 1
    (0.50, (1073741824, 0)),
    (0.75, (1610612736, 0)),
    (1 - 1e-9, (2147483646, 0)),
    (1 + 1e-11, (1073741824, 1)),
    (1.25, (1342177280, 1)),
    (1.50, (1610612736, 1)),
    (1.75, (1879048192, 1)),
    (2 - 1e-9, (2147483647, 1)),
    (2 - 1e-11, (1073741824, 2)),
    (2.0, (1073741824, 2)),
    (math.ldexp(1.0, -31), (1073741824, -30)),
    (math.ldexp(1.0, -32), (1073741824, -31)),
    (math.ldexp(float(np.float32(0.99)), -32), (0, 0)),  # shift -32 < -31: underflows to zero
    (math.ldexp(1.0, -33), (0, 0)),
    (0.0, (0, 0)),
    (-4.0, (-1073741824, 3)),
    (-0.125, (-1073741824, -2)),
    (0.125, (1073741824, -2)),
    (4.0, (1073741824, 3)),
]


@pytest.mark.parametrize(("real", "expected"), TFLITE_QUANTIZE_MULTIPLIER)
def test_quantize_multiplier_matches_tflite(real: float, expected: tuple[int, int]) -> None:
    assert quantize_multiplier(real) == expected


@pytest.mark.parametrize(("x", "real", "expected"), [
    (0, 0.1, 0), (1, 0.0, 0),
    (10000, 0.00097656, 10), (10000, -0.00097656, -10), (-10000, 0.00097656, -10), (-10000, -0.00097656, 10),
    (INT32_MIN, 0.00001, -21475), (INT32_MIN, -0.00001, 21475),
    (INT32_MAX, 0.00001, 21475), (INT32_MAX, -0.00001, -21475),
])
def test_multiply_by_quantized_multiplier_matches_tflite(x: int, real: float, expected: int) -> None:
    m, shift = quantize_multiplier(real)
    assert int(multiply_by_quantized_multiplier(np.int64(x), m, shift)) == expected


def test_multiply_by_quantized_multiplier_extremes_match_tflite() -> None:
    # quantization_util_test.cc: x = M = INT32_MAX, shift -3 gives round(x M / 2^34)
    x = m = INT32_MAX
    expected = round(Fraction(x * m, 1 << 34))
    assert int(multiply_by_quantized_multiplier(np.int64(x), m, -3)) == expected
    assert int(multiply_by_quantized_multiplier(np.int64(-x), m, -3)) == -expected


def test_srdhm_saturates_and_rounds_as_gemmlowp() -> None:
    assert int(saturating_rounding_doubling_high_mul(INT32_MIN, INT32_MIN)) == INT32_MAX
    # (ab + (ab >= 0 ? 2^30 : 1 - 2^30)) / 2^31 truncated: +1.5 -> 2, but -1.5 -> -1 (the negative nudge is one
    # short of a half), -1.5 - 2^-31 -> -2
    assert int(saturating_rounding_doubling_high_mul(3, 1 << 30)) == 2
    assert int(saturating_rounding_doubling_high_mul(-3, 1 << 30)) == -1
    assert int(saturating_rounding_doubling_high_mul(-3, (1 << 30) + 1)) == -2
    assert int(saturating_rounding_doubling_high_mul(1 << 30, 1 << 30)) == 1 << 29


@pytest.mark.parametrize(("x", "e", "expected"), [
    (5, 1, 3), (-5, 1, -3), (4, 1, 2), (-6, 2, -2), (-5, 2, -1), (6, 2, 2), (7, 0, 7), (-1, 31, 0),
])
def test_rounding_divide_by_pot(x: int, e: int, expected: int) -> None:
    assert int(rounding_divide_by_pot(np.int64(x), e)) == expected


def test_rounding_divide_by_pot_is_round_half_away_from_zero() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(INT32_MIN, INT32_MAX, 2000)
    e = rng.integers(0, 31, 2000)
    got = rounding_divide_by_pot(x, e)
    for xi, ei, gi in zip(x.tolist(), e.tolist(), got.tolist(), strict=True):
        q = Fraction(xi, 1 << ei)
        expected = math.floor(abs(q) + Fraction(1, 2)) * (1 if q >= 0 else -1)
        assert gi == expected


def test_single_rounding_is_one_exact_rounding() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(-(1 << 24), 1 << 24, 500)
    m = rng.integers(1 << 30, (1 << 31) - 1, 500)
    shift = rng.integers(-20, 8, 500)
    got = multiply_by_quantized_multiplier(x, m, shift, rounding="single")
    for xi, mi, si, gi in zip(x.tolist(), m.tolist(), shift.tolist(), got.tolist(), strict=True):
        exact = Fraction(xi * mi, 1 << (31 - si))
        assert gi == math.floor(exact + Fraction(1, 2))  # rounded half up, once
    double = multiply_by_quantized_multiplier(x, m, shift)
    assert np.abs(got - double).max() <= 1


def test_wrap_int32_wraps_like_c() -> None:
    assert wrap_int32(np.int64(INT32_MAX) + 1) == INT32_MIN
    assert wrap_int32(np.int64(INT32_MIN) - 1) == INT32_MAX
    assert wrap_int32(np.int64(-5)) == -5


def test_unknown_rounding_is_a_user_error() -> None:
    with pytest.raises(UserError, match="rounding"):
        multiply_by_quantized_multiplier(np.int64(1), 1 << 30, 0, rounding="nearest")


@pytest.mark.parametrize(("beta", "scale", "bits", "expected"), [
    (1.0, 16.0, 4, (2147483647, 31)), (1.0, 8.0, 4, (1073741824, 31)),
    (2.0, 16.0, 5, (2147483647, 31)), (2.0, 8.0, 5, (1073741824, 31)),
])
def test_preprocess_softmax_scaling_matches_tflite(beta: float, scale: float, bits: int,
                                                   expected: tuple[int, int]) -> None:
    assert preprocess_softmax_scaling(beta, scale, bits) == expected


@pytest.mark.parametrize(("bits", "shift", "expected"), [(4, 27, 15), (3, 27, 14), (3, 28, 7), (4, 2, 503316480)])
def test_calculate_input_radius_matches_tflite(bits: int, shift: int, expected: int) -> None:
    assert calculate_input_radius(bits, shift) == expected


def test_exp_on_negative_values_is_exp_to_q031_precision() -> None:
    # an independent check of the fixed-point exp: float exp, within a few Q0.31 LSB x 2^-20
    raw = -np.arange(0, 1 << 31, 7919 * 997, dtype=np.int64)  # Q5.26 inputs in (-32, 0]
    got = exp_on_negative_values(raw, 5) / 2.0 ** 31
    expected = np.exp(raw / 2.0 ** 26)
    assert np.abs(got - expected).max() < 2e-6
    assert int(exp_on_negative_values(np.int64(0), 5)) == INT32_MAX


def test_logistic_fixed_point_is_the_sigmoid() -> None:
    raw = np.arange(-(1 << 31) + 1, (1 << 31) - 1, 7919 * 991, dtype=np.int64)  # Q4.27 in (-16, 16)
    got = logistic_fixed_point(raw, 4) / 2.0 ** 31
    assert np.abs(got - 1 / (1 + np.exp(-raw / 2.0 ** 27))).max() < 2e-6
    assert int(logistic_fixed_point(np.int64(0), 4)) == 1 << 30
