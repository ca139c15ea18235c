"""Physical channel removal: the network stays valid across adds, concats and depthwise convs, channel counts
follow the ratio, and the cost model's MACs equal torch's FlopCounterMode on the pruned network."""

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from nntailor import UserError, analyze, zoo
from nntailor.compress import ChannelPruneConfig, apply


def flop_macs(model, shape):
    c = FlopCounterMode(display=False)
    with c, torch.no_grad():
        model(torch.zeros(shape))
    return c.get_total_flops() // 2


@pytest.mark.parametrize("name", ["resnet8", "ds_cnn", "vww_mobilenet", "squeezenet1_1", "mobilenet_v2"])
def test_channels_are_removed_and_the_network_runs(name):
    model = zoo.get(name)
    shape = zoo.input_shape(name)
    dense = analyze(model, shape, "stm32h743").totals
    out_features = model(torch.zeros(shape)).shape
    apply(model, ChannelPruneConfig(sparsity=0.5, input_shape=shape))
    pruned = analyze(model, shape, "stm32h743").totals
    assert model(torch.zeros(shape)).shape == out_features  # the classes are kept
    assert pruned["macs"] == flop_macs(model, shape)  # independent count of what is really left
    assert pruned["macs"] < 0.4 * dense["macs"] and pruned["params"] < 0.5 * dense["params"]


def test_channel_counts_follow_the_ratio():
    model = zoo.get("resnet8")
    apply(model, ChannelPruneConfig(sparsity=0.25, input_shape=(1, 3, 32, 32)))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert sorted({c.out_channels for c in convs}) == [12, 24, 48]  # 16/32/64 x 0.75


def test_round_to_keeps_simd_multiples():
    model = zoo.get("ds_cnn")
    apply(model, ChannelPruneConfig(sparsity=0.3, input_shape=(1, 1, 49, 10), round_to=8))
    assert all(m.out_channels % 8 == 0 for m in model.modules() if isinstance(m, nn.Conv2d))


def test_a_model_torch_pruning_cannot_handle_is_one_line():
    with pytest.raises(UserError, match="structured pruning"):
        apply(zoo.get("shufflenet_v2"), ChannelPruneConfig(sparsity=0.5, input_shape=(1, 3, 224, 224)))


def test_grouped_convs_keep_their_groups():
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 32, 3, groups=2), nn.ReLU(),
                          nn.Conv2d(32, 32, 3, groups=4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    apply(model, ChannelPruneConfig(sparsity=0.5, input_shape=(1, 3, 16, 16)))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.groups for c in convs] == [1, 2, 4]
    assert all(c.in_channels % c.groups == 0 and c.out_channels % c.groups == 0 for c in convs)
    assert model(torch.zeros(1, 3, 16, 16)).shape == (1, 10)
    assert analyze(model, (1, 3, 16, 16), "stm32h743").totals["macs"] == flop_macs(model, (1, 3, 16, 16))
