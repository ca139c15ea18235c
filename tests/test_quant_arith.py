"""Quantization arithmetic against torch's own quantize ops and the TFLite int8 spec; observers' behaviour."""

import pytest
import torch

from nntailor import UserError
from nntailor.compress.quant.arith import QSpec, activation_spec, fake_quant, qparams, quantize, weight_spec
from nntailor.compress.quant.observers import Observer


def test_asymmetric_int8_matches_torch_quantize_per_tensor():
    torch.manual_seed(0)
    x = torch.randn(1000) * 3 + 1
    spec = activation_spec(8)
    scale, zp = qparams(x.min(), x.max(), spec)
    ref = torch.quantize_per_tensor(x, float(scale), int(zp), torch.qint8)
    assert torch.equal(quantize(x, scale, zp, spec), ref.int_repr().int())
    assert torch.allclose(fake_quant(x, scale, zp, spec), ref.dequantize())
    assert -128 <= int(zp) <= 127


def test_symmetric_per_channel_weights_match_torch_quantize_per_channel():
    torch.manual_seed(0)
    w = torch.randn(6, 4, 3, 3)
    spec = weight_spec(8)
    obs = Observer("minmax", spec)
    obs.observe(w)
    scale, zp = obs.qparams_()
    assert scale.shape == (6,) and torch.equal(zp, torch.zeros(6, dtype=torch.int32))
    # TFLite: scale = max|w| / 127 per output channel, values in [-127, 127]
    assert torch.allclose(scale, w.abs().flatten(1).max(1).values / 127)
    q = quantize(w, scale, zp, spec)
    assert int(q.min()) >= -127 and int(q.max()) <= 127
    ref = torch.quantize_per_channel(w, scale.double(), zp.long(), 0, torch.qint8)
    assert torch.equal(q, ref.int_repr().int())


def test_range_always_contains_zero():
    scale, zp = qparams(torch.tensor(2.0), torch.tensor(6.0), activation_spec(8))
    assert int(zp) == -128  # 0.0 maps to the lowest level exactly
    assert float(fake_quant(torch.zeros(1), scale, zp, activation_spec(8))) == 0.0


def test_low_bits_and_errors():
    spec = QSpec(bits=4, symmetric=True, narrow=True)
    assert (spec.qmin, spec.qmax) == (-7, 7)
    for bits in (1, 17):
        with pytest.raises(UserError, match="2..16"):
            QSpec(bits=bits)
    with pytest.raises(UserError, match="axis 3 does not exist"):
        Observer("minmax", QSpec(axis=3)).observe(torch.zeros(4, 4))
    with pytest.raises(UserError, match="calibration set is empty"):
        Observer("minmax", activation_spec()).range_()
    with pytest.raises(UserError, match="unknown calibration"):
        Observer("entropy", activation_spec())


def heavy_tailed() -> torch.Tensor:
    torch.manual_seed(0)
    x = torch.randn(200_000)
    x[:20] = 40.0  # a few outliers, as activations have
    return x


def _observe(kind, x, spec=None):
    obs = Observer(kind, spec or activation_spec(8, symmetric=True))
    obs.observe(x)
    return obs


def mse(obs, x):
    scale, zp = obs.qparams_()
    return float(((fake_quant(x, scale, zp, obs.spec) - x) ** 2).mean())


def test_mse_calibration_is_never_worse_than_minmax():
    torch.manual_seed(0)
    for x in (heavy_tailed(), torch.distributions.Laplace(0.0, 1.0).sample((100_000,)), torch.rand(50_000)):
        assert mse(_observe("mse", x), x) <= mse(_observe("minmax", x), x) + 1e-12


def test_percentile_is_numpys_percentile():
    import numpy as np

    x = heavy_tailed()[:100_000]  # under the subsampling limit: every value is kept
    lo, hi = _observe("percentile", x).range_()
    assert float(hi) == pytest.approx(float(np.percentile(x.numpy(), 99.99)), rel=1e-4)
    assert float(lo) == pytest.approx(float(np.percentile(x.numpy(), 0.01)), rel=1e-4)


def test_kl_clips_heavy_tails_not_uniform_data():
    torch.manual_seed(0)
    uniform = torch.rand(100_000) * 2 - 1
    assert float(_observe("kl", uniform).range_()[1]) > 0.95 * float(uniform.max())
    tailed = heavy_tailed()
    assert float(_observe("kl", tailed).range_()[1]) < 0.25 * float(tailed.max())


def test_moving_average_follows_batches():
    obs = Observer("moving_average", activation_spec(), momentum=0.5)
    obs.observe(torch.tensor([0.0, 1.0]))
    obs.observe(torch.tensor([0.0, 3.0]))
    assert float(obs.range_()[1]) == pytest.approx(2.0)


def test_fixed_point_formats_follow_ristretto():
    from nntailor.compress.quant.arith import fixed_point_format, fixed_point_spec

    # max 3.7 in 8 bits: 2 integer bits + sign, 5 fractional (Q2.5), largest value 127/32 = 3.97
    assert [int(v) for v in fixed_point_format(torch.tensor(3.7), 8)] == [2, 5]
    # max 0.4: no integer bit, 8 fractional bits (Q-1.8 is written Q0.8 with one bit to spare): scale 2^-8
    assert [int(v) for v in fixed_point_format(torch.tensor(0.4), 8)] == [-1, 8]
    spec = fixed_point_spec(8)
    scale, zp = qparams(torch.tensor(-3.7), torch.tensor(1.0), spec)
    assert float(scale) == 2**-5 and int(zp) == 0 and (spec.qmin, spec.qmax) == (-128, 127)
    x = torch.tensor([3.7, -3.7, 0.1234])
    assert torch.allclose(fake_quant(x, scale, zp, spec), torch.round(x * 32) / 32)


def test_lognet_weights_are_signed_powers_of_two_within_the_range():
    from nntailor.compress.quant.arith import log2_quant

    x = torch.tensor([3.0, -0.7, 0.26, 0.01, -1e-4, 0.0])
    q = log2_quant(x, QSpec(bits=3, symmetric=True, log2=True))
    # full scale: round(log2 3) = 2 -> exponents 2, 1, 0, -1 (2^(3-1) of them); below 2^-1 -> 0
    assert q.tolist() == [4.0, -0.5, 0.0, 0.0, 0.0, 0.0]
    x.requires_grad_(True)
    log2_quant(x, QSpec(bits=3, symmetric=True, log2=True)).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))  # straight through
