"""BN folding (seed 000): outputs equal to 1e-5, parameter counts equal MLPerf Tiny's folded figures."""

import pytest
import torch
import torch.nn as nn

from nntailor import UserError, zoo
from nntailor.compress import FoldBNConfig, apply, config_from_dict, fold_bn


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Trained-looking BN statistics, so folding has something to fold."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return model.eval()


# REFERENCES.md: parameters once BN is folded.
FOLDED = {"ds_cnn": 22_604, "resnet8": 77_706, "vww_mobilenet": 210_850, "ad_autoencoder": 265_864}


@pytest.mark.parametrize("name", ["ds_cnn", "resnet8", "vww_mobilenet", "ad_autoencoder", "mobilenet_v2", "lenet5"])
def test_folding_keeps_outputs(name):
    model = randomize_bn(zoo.get(name))
    x = torch.randn(4, *zoo.input_shape(name)[1:])
    with torch.no_grad():
        before = model(x)
        folded = apply(model, FoldBNConfig())
        after = folded(x)
    assert torch.allclose(before, after, atol=1e-5, rtol=1e-5)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    if name in FOLDED:
        assert sum(p.numel() for p in folded.parameters()) == FOLDED[name]


def test_conv_without_bias_gains_one():
    model = randomize_bn(nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4)))
    x = torch.randn(2, 3, 8, 8)
    expected = model(x)
    fold_bn(model)
    assert model[0].bias is not None and isinstance(model[1], nn.Identity)
    assert torch.allclose(model(x), expected, atol=1e-5)


def test_bn_after_a_shared_or_branching_conv_is_left_alone():
    class Branch(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)
            self.bn = nn.BatchNorm2d(3)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y  # the conv output is needed unfolded too

    model = randomize_bn(Branch())
    fold_bn(model)
    assert isinstance(model.bn, nn.BatchNorm2d)


def test_recipe_step_validation():
    assert isinstance(config_from_dict({"step": "fold_bn"}), FoldBNConfig)
    with pytest.raises(UserError, match="unknown step 'fold'.*fold_bn"):
        config_from_dict({"step": "fold"})
    with pytest.raises(UserError, match="eps: Extra inputs"):
        config_from_dict({"step": "fold_bn", "eps": 3})
