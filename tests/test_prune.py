"""Pruning masks against torch.nn.utils.prune, N:M and block structure, schedules against Zhu & Gupta's formula."""

import pytest
import torch
import torch.nn as nn
import torch.nn.utils.prune as torch_prune

from nntailor import UserError, analyze
from nntailor.compress import GradualPruning, MaskHook, PruneConfig, Schedule, apply, prune, sparsity
from nntailor.data import load_dataset
from nntailor.train import TrainConfig, evaluate, fit


def net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 32), nn.ReLU(),
                         nn.Linear(32, 10))


def test_layerwise_magnitude_matches_torch_l1_unstructured():
    ours, ref = net(), net()
    prune(ours, PruneConfig(sparsity=0.6))
    for i in (0, 3, 5):
        torch_prune.l1_unstructured(ref[i], "weight", amount=0.6)
        assert torch.equal(ours[i].weight != 0, ref[i].weight_mask.bool())


def test_global_magnitude_matches_torch_global_unstructured():
    ours, ref = net(), net()
    prune(ours, PruneConfig(sparsity=0.8, scope="global"))
    torch_prune.global_unstructured([(ref[i], "weight") for i in (0, 3, 5)],
                                    pruning_method=torch_prune.L1Unstructured, amount=0.8)
    for i in (0, 3, 5):
        assert torch.equal(ours[i].weight != 0, ref[i].weight_mask.bool())
    assert sparsity(ours)["total"] == pytest.approx(0.8, abs=1e-3)


def test_per_layer_sparsity_and_exclusion():
    model = prune(net(), PruneConfig(sparsity={"3": 0.9, "5": 0.5}, exclude=["0"]))
    s = sparsity(model)
    assert s["0"] == 0.0 and s["3"] == pytest.approx(0.9, abs=1e-3) and s["5"] == pytest.approx(0.5)


def test_two_four_structure():
    model = prune(net(), PruneConfig(granularity="nm", n=2, m=4, exclude=["0"]))  # conv0 has 9 inputs
    w = model[3].weight.reshape(32, -1, 4)
    assert ((w != 0).sum(-1) == 2).all()
    with pytest.raises(UserError, match=r"multiple of 4"):
        prune(net(), PruneConfig(granularity="nm", n=2, m=4))


def test_block_structure():
    model = prune(net(), PruneConfig(granularity="block", block=(4, 4), sparsity=0.5, layers=["3"]))
    blocks = (model[3].weight != 0).reshape(8, 4, 72, 4).any(dim=(1, 3))
    dense = (model[3].weight != 0).reshape(8, 4, 72, 4).all(dim=(1, 3))
    assert torch.equal(blocks, dense)  # each block all-zero or all-kept
    assert sparsity(model)["3"] == pytest.approx(0.5)


def test_config_errors():
    with pytest.raises(ValueError, match="sparsity must be in"):
        PruneConfig(sparsity=1.0)
    with pytest.raises(ValueError, match="n < m"):
        PruneConfig(granularity="nm", n=4, m=4)


def test_pruned_weights_count_in_the_cost_model():
    model = prune(net(), PruneConfig(sparsity=0.75))
    totals = analyze(model, (1, 1, 8, 8), "stm32l476").totals
    weights = sum(model[i].weight.numel() for i in (0, 3, 5))
    assert totals["nz_params"] == totals["params"] - round(0.75 * model[0].weight.numel()) - round(
        0.75 * model[3].weight.numel()) - round(0.75 * model[5].weight.numel())
    assert totals["nz_macs"] < 0.3 * totals["macs"] and weights > 0


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_masks_survive_fine_tuning(digits):
    model = apply(net(), PruneConfig(sparsity=0.7))
    before = dict(sparsity(model))
    fit(model, digits.train, TrainConfig(epochs=1, progress=False), hooks=[MaskHook(model)])
    assert sparsity(model) == before


def test_cubic_schedule_is_zhu_gupta():
    # s_t = s_f + (s_i - s_f)(1 - p)^3 with s_f = 0.7: 0.6125 at 50 %, 0.689 at 75 %, 0.7 at the end.
    # (REFERENCES.md lists 0.488 at 25 %; the formula it quotes gives 0.7 (1 - 0.75^3) = 0.405.)
    s = Schedule(kind="cubic", final=0.7, begin=0, end=100, frequency=1)
    assert [round(s.sparsity_at(t), 4) for t in (0, 25, 50, 75, 100, 150)] == [0.0, 0.4047, 0.6125, 0.6891, 0.7, 0.7]


def test_other_schedules():
    lin = Schedule(kind="linear", final=0.8, begin=10, end=50, frequency=10)
    assert [lin.sparsity_at(t) for t in (0, 10, 19, 20, 50)] == [0.0, 0.0, 0.0, pytest.approx(0.2), pytest.approx(0.8)]
    cos = Schedule(kind="cosine", final=0.5, end=10, frequency=1)
    assert cos.sparsity_at(5) == pytest.approx(0.25) and cos.sparsity_at(10) == pytest.approx(0.5)
    it = Schedule(kind="iterative", final=0.9, end=100, frequency=25, cycles=4)
    assert [round(it.sparsity_at(t), 3) for t in (0, 25, 50, 75, 100)] == [0.0, 0.225, 0.45, 0.675, 0.9]
    inv = Schedule(kind="inverse_power", final=0.8, end=10, frequency=1, power=2)
    assert inv.sparsity_at(5) == pytest.approx(0.2)
    one = Schedule(kind="one_shot", final=0.6, begin=3)
    assert (one.sparsity_at(2), one.sparsity_at(3)) == (0.0, 0.6)
    with pytest.raises(ValueError):
        Schedule(begin=10, end=5)


def test_gradual_pruning_reaches_target_and_keeps_accuracy(digits):
    model = net()
    fit(model, digits.train, TrainConfig(epochs=3, lr=3e-3, progress=False))
    dense = evaluate(model, digits.test)
    steps = 3 * 23  # 1437 training images / 64
    # global scope: the 72-weight conv keeps more of its weights than the 9,216-weight fc
    hook = GradualPruning(model, PruneConfig(scope="global"),
                          Schedule(kind="cubic", final=0.8, end=steps // 2, frequency=5))
    fit(model, digits.train, TrainConfig(epochs=3, lr=1e-3, progress=False, seed=1), hooks=[hook])
    assert sparsity(model)["total"] == pytest.approx(0.8, abs=0.01)
    assert evaluate(model, digits.test) > dense - 0.05


def conv_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))


def test_kernel_level_removes_whole_kernels():
    model = prune(conv_net(), PruneConfig(granularity="kernel", sparsity=0.5))
    kernels = model[2].weight.reshape(8, 8, 9)
    alive = (kernels != 0).any(-1)
    assert torch.equal(alive, (kernels != 0).all(-1))  # each 3x3 kernel all-zero or all-kept
    assert alive.float().mean() == pytest.approx(0.5)


def test_strided_keeps_one_in_stride_positions_per_kernel():
    model = prune(conv_net(), PruneConfig(granularity="strided", stride=2))
    taps = (model[0].weight != 0).reshape(8, 4, 9)
    for o in range(8):
        for i in range(4):
            kept = torch.nonzero(taps[o, i]).flatten()
            assert len(set((kept % 2).tolist())) == 1  # one offset
            assert len(kept) in (4, 5)  # positions 1,3,5,7 or 0,2,4,6,8
    with pytest.raises(UserError, match="2-D convolutions"):
        prune(net(), PruneConfig(granularity="strided", layers=["3"]))
