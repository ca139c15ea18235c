"""Uniform quantization arithmetic: ranges to (scale, zero point), and fake quantization. Pure tensors.

real = (q - zero_point) x scale (REFERENCES.md, the TFLite int8 spec). The represented range always
contains 0 so that zero padding is exact. Weights are symmetric (zero point 0) and, for the int8 default,
narrow: [-127, 127]. Activations are asymmetric, int8 [-128, 127], zero point nudged onto the integer grid.
Fake quantization uses torch's fake_quantize_per_{tensor,channel}_affine, which pass gradients straight
through inside the range (the straight-through estimator of BinaryConnect/QAT).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from nntailor.errors import UserError

SUPPORTED_BITS = range(2, 17)


@dataclass(frozen=True)
class QSpec:
    bits: int = 8
    symmetric: bool = False
    narrow: bool = False  # symmetric weights drop the most negative level: [-127, 127] for int8
    axis: int | None = None  # per-channel axis; None = per tensor
    # fixed point Qm.n (seed 000; Ristretto's dynamic fixed point, seed 002): scale 2^-n, zero point 0
    power_of_two: bool = False
    # LogNet (Miyashita et al. 2016): values sign x 2^e, e in 2^(bits-1) steps below the largest; 0 below that
    log2: bool = False
    # Q-BERT (Shen et al. 2020): one range per group of this many consecutive output rows (per attention head)
    group_size: int | None = None

    def __post_init__(self) -> None:
        if self.bits not in SUPPORTED_BITS:
            raise UserError(f"quantization bits must be in 2..16, got {self.bits}")

    @property
    def qmin(self) -> int:
        return -(1 << (self.bits - 1)) + (1 if self.narrow else 0)

    @property
    def qmax(self) -> int:
        return (1 << (self.bits - 1)) - 1


def weight_spec(bits: int = 8, per_channel: bool = True, axis: int = 0) -> QSpec:
    """TFLite int8 weights: symmetric, narrow range, per output channel (conv axis 0)."""
    return QSpec(bits=bits, symmetric=True, narrow=True, axis=axis if per_channel else None)


def activation_spec(bits: int = 8, symmetric: bool = False) -> QSpec:
    """TFLite int8 activations: asymmetric, per tensor."""
    return QSpec(bits=bits, symmetric=symmetric)


def qparams(lo: torch.Tensor, hi: torch.Tensor, spec: QSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale float32, zero_point int32), one per channel or a scalar, for the range [lo, hi]."""
    lo = torch.minimum(torch.as_tensor(lo, dtype=torch.float32), torch.zeros(()))
    hi = torch.maximum(torch.as_tensor(hi, dtype=torch.float32), torch.zeros(()))
    eps = torch.finfo(torch.float32).eps
    if spec.power_of_two:
        _, fractional = fixed_point_format(torch.maximum(-lo, hi), spec.bits)
        scale = torch.pow(2.0, -fractional.float())
        return scale, torch.zeros_like(scale, dtype=torch.int32)
    if spec.symmetric:
        scale = torch.maximum(-lo, hi) / spec.qmax
        scale = torch.clamp(scale, min=eps)
        return scale, torch.zeros_like(scale, dtype=torch.int32)
    scale = torch.clamp((hi - lo) / (spec.qmax - spec.qmin), min=eps)
    # nudge the zero point onto the grid so that real 0 is exactly representable
    zero_point = torch.clamp(torch.round(spec.qmin - lo / scale), spec.qmin, spec.qmax).to(torch.int32)
    return scale, zero_point


def fixed_point_format(max_abs: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(integer bits m, fractional bits n) of Qm.n for values up to ``max_abs`` in ``bits`` signed bits.

    Ristretto (Gysel et al.): integer length incl. sign = ceil(log2(max|x|)) + 1, fractional = bits - that.
    m excludes the sign bit, so m + n + 1 = bits; n may exceed bits (tiny ranges) or go negative (huge ones).
    """
    max_abs = torch.clamp(torch.as_tensor(max_abs, dtype=torch.float32), min=torch.finfo(torch.float32).tiny)
    integer_with_sign = torch.ceil(torch.log2(max_abs)).to(torch.int64) + 1
    return integer_with_sign - 1, bits - integer_with_sign


def fixed_point_spec(bits: int = 8) -> QSpec:
    """Signed fixed point: the full two's-complement range, a power-of-two scale, zero point 0."""
    return QSpec(bits=bits, symmetric=True, narrow=False, power_of_two=True)


def fake_quant(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, spec: QSpec) -> torch.Tensor:
    if spec.axis is None:
        return torch.fake_quantize_per_tensor_affine(x, scale.reshape(()), zero_point.reshape(()),
                                                     spec.qmin, spec.qmax)
    return torch.fake_quantize_per_channel_affine(x, scale, zero_point, spec.axis, spec.qmin, spec.qmax)


def quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, spec: QSpec) -> torch.Tensor:
    """The integers: clamp(round(x / scale) + zero_point) (round half to even, as torch does)."""
    shape = [1] * x.dim()
    if spec.axis is not None:
        shape[spec.axis] = -1
    q = torch.round(x / scale.reshape(shape)) + zero_point.reshape(shape)
    return torch.clamp(q, spec.qmin, spec.qmax).to(torch.int32)


def log2_quant(x: torch.Tensor, spec: QSpec, top: torch.Tensor | None = None, signed: bool = True) -> torch.Tensor:
    """sign(x) 2^round(log2|x|), exponents clamped to the levels below the full-scale one ``top`` (default
    round(log2 max|x|) of this tensor; activations pass the calibrated one). Signed data spends a bit on the
    sign: 2^(bits-1) exponents; unsigned data (after a ReLU) has 2^bits - 1 exponents and the code for 0.
    Smaller magnitudes become 0. Gradients pass straight through."""
    magnitude = x.detach().abs()
    if top is None:
        top = torch.round(torch.log2(magnitude.max().clamp(min=torch.finfo(torch.float32).tiny)))
    levels = (1 << (spec.bits - 1)) if signed else (1 << spec.bits) - 1
    lowest = top - levels + 1
    exponent = torch.round(torch.log2(magnitude.clamp(min=torch.finfo(torch.float32).tiny)))
    q = torch.sign(x.detach()) * torch.pow(2.0, exponent.clamp(max=top))
    q = torch.where(exponent < lowest, torch.zeros_like(q), q)
    if not signed:  # no code for a negative value: it clips to 0
        q = q.clamp(min=0)
    return x + (q - x).detach()


# ------------------------------------------------------------------------------------------------------------
# Integer-only requantization, as TFLite Micro runs it (REFERENCES.md "Integer inference"; TFLM's
# quantization_util.cc QuantizeMultiplier and gemmlowp's fixed-point SaturatingRoundingDoublingHighMul and
# RoundingDivideByPOT). numpy on int64 arrays holding int32 values: every step wraps or saturates exactly as the
# int32 C does, so the deploy reference interpreter and the generated C share one arithmetic.

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def wrap_int32(x: np.ndarray) -> np.ndarray:
    """Two's-complement wrap to int32 of int64 values (what an int32 accumulator does on overflow)."""
    x = np.asarray(x, dtype=np.int64)
    return ((x - INT32_MIN) & 0xFFFFFFFF) + INT32_MIN


def quantize_multiplier(real: float) -> tuple[int, int]:
    """(multiplier M in [2^30, 2^31), shift) with real = M 2^(shift - 31), TFLM's QuantizeMultiplier.

    frexp in double; M = round half away from zero of q 2^31; M = 2^31 halves with shift + 1; a shift below
    -31 underflows to M = shift = 0 (the product is below one LSB of any int32 accumulator)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(float(real))
    fixed = int(math.floor(abs(q) * (1 << 31) + 0.5)) * (1 if q >= 0 else -1)
    if fixed == 1 << 31:
        fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return fixed, shift


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gemmlowp's SRDHM: the high 32 bits of 2ab, rounded to nearest (ties away from zero); INT32_MIN^2 saturates."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ab = a * b  # |ab| <= 2^62: exact in int64
    nudged = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    high = np.where(nudged >= 0, nudged >> 31, -((-nudged) >> 31))  # C's division truncates toward zero
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, high)


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray | int) -> np.ndarray:
    """gemmlowp's RoundingDivideByPOT: x / 2^exponent, rounded to nearest, ties away from zero."""
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def multiply_by_quantized_multiplier(x: np.ndarray, multiplier: np.ndarray | int, shift: np.ndarray | int,
                                     rounding: str = "double") -> np.ndarray:
    """x real_multiplier in int32 fixed point, TFLM's MultiplyByQuantizedMultiplier.

    "double" (TFLM's default build): SRDHM of x 2^max(shift, 0) (wrapping, as the int32 C shift does), then
    RDBPOT by max(-shift, 0). "single" (TFLITE_SINGLE_ROUNDING): one 64-bit product, rounded once,
    (x M + 2^(30 - shift)) >> (31 - shift), the shift clamped to [-31, 30] as its QuantizeMultiplier does."""
    x = np.asarray(x, dtype=np.int64)
    multiplier = np.asarray(multiplier, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if rounding == "double":
        left = np.maximum(shift, 0)
        right = np.maximum(-shift, 0)
        return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(wrap_int32(x << left), multiplier),
                                      right)
    if rounding == "single":
        big = shift > 30
        multiplier = np.where(big, INT32_MAX, multiplier)
        shift = np.where(big, 30, shift)
        total = 31 - shift
        result = (x * multiplier + (np.int64(1) << (total - 1))) >> total
        return np.clip(result, INT32_MIN, INT32_MAX)
    raise UserError(f"rounding must be 'double' or 'single', got {rounding!r}")


# gemmlowp fixed point (fixedpoint.h), as TFLite's int8 softmax uses it: a FixedPoint<int32, k> holds
# real = raw 2^(k - 31); a product of two is SRDHM of the raws, with k1 + k2 integer bits.

def _saturating_shift_left(x: np.ndarray, exponent: int) -> np.ndarray:
    """SaturatingRoundingMultiplyByPOT with a positive exponent: x 2^e, saturated to int32."""
    threshold = (1 << (31 - exponent)) - 1
    return np.where(x > threshold, INT32_MAX, np.where(x < -threshold, INT32_MIN, x << exponent))


def _exp_on_interval_between_negative_one_quarter_and_0_excl(a: np.ndarray) -> np.ndarray:
    """exp(a) for a in [-1/4, 0), Q0.31 in and out: Taylor expansion around -1/8 (gemmlowp)."""
    srdhm = saturating_rounding_doubling_high_mul
    constant_term = 1895147668  # exp(-1/8)
    constant_1_over_3 = 715827883
    x = a + (1 << 28)  # + 1/8
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = rounding_divide_by_pot(x4, 2)
    poly = rounding_divide_by_pot(srdhm(x4_over_4 + x3, constant_1_over_3) + x2, 1)
    return constant_term + srdhm(constant_term, x + poly)


def exp_on_negative_values(a: np.ndarray, integer_bits: int = 5) -> np.ndarray:
    """gemmlowp's exp_on_negative_values: exp(a) for a <= 0 given as FixedPoint<int32, integer_bits>, result Q0.31.

    exp of the remainder modulo 1/4 by the Taylor polynomial, then a barrel shifter multiplies in exp(-2^k) for
    each set bit of the rest (k = -2 .. integer_bits - 1); a = 0 gives the largest Q0.31 value."""
    a = np.asarray(a, dtype=np.int64)
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    a_mod_quarter_minus_one_quarter = (a & (one_quarter - 1)) - one_quarter
    result = _exp_on_interval_between_negative_one_quarter_and_0_excl(
        _saturating_shift_left(a_mod_quarter_minus_one_quarter, integer_bits))
    remainder = a_mod_quarter_minus_one_quarter - a
    # exp(-2^k) in Q0.31 for k = -2, -1, 0, 1, 2, 3, 4 (gemmlowp's GEMMLOWP_EXP_BARREL_SHIFTER constants)
    for exponent, multiplier in ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
                                 (2, 39332535), (3, 720401), (4, 242)):
        if integer_bits > exponent:
            bit = (remainder >> (fractional_bits + exponent)) & 1
            result = np.where(bit == 1, saturating_rounding_doubling_high_mul(result, multiplier), result)
    return np.where(a == 0, INT32_MAX, result)


def one_over_one_plus_x_for_x_in_0_1(a: np.ndarray) -> np.ndarray:
    """gemmlowp: 1 / (1 + a) for a in [0, 1) in Q0.31, by three Newton-Raphson steps in Q2.29 (48/17 - 32/17 d)."""
    srdhm = saturating_rounding_doubling_high_mul
    a = np.asarray(a, dtype=np.int64)
    total = a + INT32_MAX
    # RoundingHalfSum(a, One): (sum + sign(sum)) / 2, C's truncating division
    half_denominator = np.where(total >= 0, (total + 1) // 2, -((-total + 1) // 2))
    x = 1515870810 + srdhm(half_denominator, -1010580540)
    for _ in range(3):
        one_minus = (1 << 29) - srdhm(half_denominator, x)
        x = x + _saturating_shift_left(srdhm(x, one_minus), 2)
    return _saturating_shift_left(x, 1)


def get_reciprocal(x: np.ndarray, x_integer_digits: int) -> tuple[np.ndarray, np.ndarray]:
    """TFLite's GetReciprocal: (1/x as Q0.31 of x scaled into [1, 2), num_bits_over_unit) for x > 0 in Q(digits)."""
    x = np.asarray(x, dtype=np.int64)
    headroom_plus_one = 32 - np.frexp(x.astype(np.float64))[1].astype(np.int64)  # CountLeadingZeros (x < 2^53)
    num_bits_over_unit = x_integer_digits - headroom_plus_one
    shifted_sum_minus_one = wrap_int32(((x << headroom_plus_one) & 0xFFFFFFFF) - (1 << 31))
    return one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one), num_bits_over_unit


def preprocess_softmax_scaling(beta: float, input_scale: float, input_integer_bits: int) -> tuple[int, int]:
    """TFLite's PreprocessSoftmaxScaling: beta s_in in Q(integer bits), capped at 2^31 - 1 (double rounding)."""
    real = min(beta * input_scale * (1 << (31 - input_integer_bits)), (1 << 31) - 1.0)
    return quantize_multiplier(real)


def calculate_input_radius(input_integer_bits: int, input_left_shift: int, total_signed_bits: int = 31) -> int:
    """TFLite's CalculateInputRadius: the largest input difference whose rescaled value still fits."""
    max_input_rescaled = (1.0 * ((1 << input_integer_bits) - 1) * (1 << (total_signed_bits - input_integer_bits))
                          / (1 << input_left_shift))
    return int(math.floor(max_input_rescaled))


def logistic_fixed_point(a: np.ndarray, integer_bits: int = 4) -> np.ndarray:
    """gemmlowp's logistic: 1 / (1 + exp(-|a|)) for FixedPoint<int32, integer_bits> a, mirrored for a < 0, 1/2 at 0;
    result Q0.31."""
    a = np.asarray(a, dtype=np.int64)
    positive = one_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(-np.abs(a), integer_bits))
    result = np.where(a > 0, positive, INT32_MAX - positive)
    return np.where(a == 0, 1 << 30, result)


def logistic_input_multiplier(input_scale: float, integer_bits: int = 4) -> tuple[int, int]:
    """TFLM logistic.cc: frexp of s_in 2^(31 - integer bits), rounded, with no halving of a 2^31 (cast as int32)."""
    q, shift = math.frexp(float(input_scale) * (1 << (31 - integer_bits)))
    fixed = int(math.floor(abs(q) * (1 << 31) + 0.5)) * (1 if q >= 0 else -1)
    return int(wrap_int32(np.int64(fixed))), shift
