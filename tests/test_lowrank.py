"""Low-rank factorization: exact at full rank, ranks from energy or a MACs target, fewer MACs, bad layers named."""

import pytest
import torch
import torch.nn as nn

from nntailor import UserError, analyze
from nntailor.compress import LowRankConfig, apply
from nntailor.compress.lowrank import energy_rank


def test_energy_rank():
    s = torch.tensor([3.0, 2.0, 1.0, 0.0])  # energies 9, 4, 1 of 14
    assert energy_rank(s, 9 / 14) == 1 and energy_rank(s, 13 / 14) == 2 and energy_rank(s, 1.0) == 3


def test_svd_at_full_energy_is_exact_and_low_rank_cuts_macs():
    torch.manual_seed(0)
    fc = nn.Sequential(nn.Linear(64, 48))
    x = torch.randn(5, 64)
    expected = fc(x)
    full = apply(fc, LowRankConfig(energy=1.0))
    assert torch.allclose(full(x), expected, atol=1e-4)
    small = apply(nn.Sequential(nn.Linear(64, 48)), LowRankConfig(macs_ratio=0.25))
    assert analyze(small, (1, 64), "stm32l476").totals["macs"] <= 0.25 * 64 * 48


def test_tucker2_full_ranks_reproduce_the_conv():
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(6, 8, 3, stride=2, padding=1))
    x = torch.randn(2, 6, 9, 9)
    expected = conv(x)
    model = apply(conv, LowRankConfig(energy=1.0))
    assert [m.kernel_size for m in model[0]] == [(1, 1), (3, 3), (1, 1)]
    assert torch.allclose(model(x), expected, atol=1e-4)


def test_macs_targets_hold_for_tucker2_and_cp():
    torch.manual_seed(0)
    for method in ("tucker2", "cp"):
        model = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1))
        dense = analyze(model, (1, 32, 8, 8), "stm32l476").totals["macs"]
        apply(model, LowRankConfig(conv_method=method, macs_ratio=0.3))
        assert analyze(model, (1, 32, 8, 8), "stm32l476").totals["macs"] <= 0.3 * dense
        assert model(torch.randn(1, 32, 8, 8)).shape == (1, 32, 8, 8)


def test_cp_error_falls_with_rank():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 3, padding=1)
    x = torch.randn(2, 8, 6, 6)
    errors = []
    for ratio in (0.1, 0.6):
        model = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1))
        model[0].load_state_dict(conv.state_dict())
        apply(model, LowRankConfig(conv_method="cp", macs_ratio=ratio))
        errors.append(float((model(x) - conv(x)).norm()))
    assert errors[1] < errors[0]


def test_grouped_conv_named_explicitly_is_refused():
    model = nn.Sequential(nn.Conv2d(8, 8, 3, groups=8))
    with pytest.raises(UserError, match="low_rank cannot factorize 0 \\(Conv2d, groups=8\\)"):
        apply(model, LowRankConfig(layers=["0"]))
    assert type(apply(model, LowRankConfig())[0]) is nn.Conv2d  # skipped when not named
