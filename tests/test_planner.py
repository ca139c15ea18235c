"""The arena planner against TFLM's own unit tests (greedy_memory_planner_test.cc) and MCUNetV2's figure."""

import pytest

from nntailor import analyze, zoo
from nntailor.cost.planner import GreedyPlanner, align


def _planner(buffers: list[tuple[int, int, int]]) -> GreedyPlanner:
    planner = GreedyPlanner(alignment=1)  # TFLM's planner tests use unaligned sizes
    for i, (size, first, last) in enumerate(buffers):
        planner.add(str(i), size, first, last)
    return planner.plan()


def test_tflm_greedy_basics():
    planner = _planner([(10, 0, 1), (20, 2, 3)])
    assert planner.offsets_ == {"0": 0, "1": 0}
    assert planner.peak_bytes() == 20
    planner.check_no_overlap()


def test_tflm_greedy_medium():
    planner = _planner([(10, 0, 1), (20, 1, 2), (30, 2, 3), (40, 3, 4), (50, 0, 1)])
    assert [planner.offsets_[str(i)] for i in range(5)] == [50, 70, 40, 0, 0]
    assert planner.peak_bytes() == 90
    planner.check_no_overlap()


def test_tflm_overlap_case():
    planner = _planner([(100, 0, 1), (50, 2, 3), (20, 1, 2)])
    assert planner.peak_bytes() == 120
    planner.check_no_overlap()


def test_tflm_person_detection_buffers_fit_below_their_sum():
    # The 250 KB MobileNet of TFLM's person detection example, as the TFLM test lists its buffers.
    sizes = [9216, 3, 256, 2304, 2304, 2304, 1152] + [4608] * 11 + [2304, 9216, 9216, 9216, 4608]
    sizes += [18432, 18432, 18432, 9216, 36864, 18432, 18432]
    lifetimes = [(0, 29), (28, 29)] + [(t, t + 1) for t in range(27, -1, -1)]
    assert sum(sizes) == 241027
    planner = _planner([(s, a, b) for s, (a, b) in zip(sizes, lifetimes, strict=True)])
    planner.check_no_overlap()
    assert planner.peak_bytes() < 241027  # the bound TFLM's test asserts
    assert planner.peak_bytes() >= planner.lower_bound_bytes()


def test_alignment_is_16_bytes_by_default():
    assert align(1) == 16 and align(16) == 16 and align(17) == 32
    planner = GreedyPlanner()
    planner.add("a", 1, 0, 0)
    assert planner.peak_bytes() == 16


def test_overlap_check_catches_a_bad_plan():
    planner = _planner([(10, 0, 1), (10, 1, 2)])
    planner.offsets_ = {"0": 0, "1": 5}
    with pytest.raises(AssertionError, match="overlap"):
        planner.check_no_overlap()


def test_invalid_lifetime_is_rejected():
    with pytest.raises(ValueError):
        GreedyPlanner().add("x", 10, 3, 1)


def test_mobilenet_v2_peak_matches_mcunetv2():
    # MCUNetV2: MobileNetV2 1.0-224 int8 has a per-layer peak of 1372 KiB at the 16 -> 96 expansion at 112x112
    # (BN folded and ReLU6 fused, as deployed).
    report = analyze(zoo.get("mobilenet_v2"), (1, 3, 224, 224), "stm32h743", bits=8)
    step = next(b.first_use for b in report.arena.buffers if b.name == "features.2.conv.0.0")
    assert report.arena.live_bytes(step) == 1372 * 1024
    # TFLM does not run depthwise in place: the stride-2 depthwise right after holds 96x112x112 + 96x56x56.
    assert report.totals["act_lower_bound_bytes"] == 96 * 112 * 112 + 96 * 56 * 56
    assert report.totals["peak_sram_bytes"] >= report.totals["act_lower_bound_bytes"]
    report.arena.check_no_overlap()


@pytest.mark.parametrize("name", ["resnet8", "ds_cnn", "vww_mobilenet", "shufflenet_v2", "googlenet", "squeezenet1_1"])
def test_zoo_arenas_have_no_overlap(name):
    report = analyze(zoo.get(name), zoo.input_shape(name), "stm32h743")
    report.arena.check_no_overlap()
    assert report.totals["act_lower_bound_bytes"] <= report.totals["peak_sram_bytes"]


def test_equal_sizes_are_placed_in_reverse_insertion_order():
    # greedy_memory_planner.cc fills its sort array from the tail (idx_from_tail--) and bubble-sorts it
    # stably, so of two equal buffers the one added last is placed first, at offset 0.
    planner = _planner([(16, 0, 1), (16, 0, 1)])
    assert planner.offsets_ == {"0": 16, "1": 0}


def test_activation_lifetimes_through_views_and_fusion():
    import torch.nn as nn

    from nntailor import capture
    from nntailor.cost.memory import plan_activations

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 1)
            self.relu = nn.ReLU()
            self.fc = nn.Linear(64, 8)

        def forward(self, x):
            y = self.relu(self.conv(x))  # relu fuses into conv: one buffer
            y = (y + x).flatten(1)  # x is used late; flatten is a view of the add's buffer
            return self.fc(y).view(2, 4)  # a view as the graph output

    plan = plan_activations(capture(Net(), (1, 4, 4, 4)), act_bits=8)
    life = {b.name: (b.first_use, b.last_use, b.size) for b in plan.buffers}
    # ops in order: conv (0), add (1), fc (2); relu, flatten and view own no buffer
    assert life == {"input": (0, 1, 64), "conv": (0, 1, 64), "add": (1, 2, 64), "fc": (2, 2, 16)}
