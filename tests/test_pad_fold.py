"""Zero pads fold into the conv or max pool that reads them, as TFLiteConverter folds them into SAME padding.

The arena heads are TFLM's own (issue 9): the MLPerf Tiny reference models converted to int8 by TFLiteConverter
and run in the tflite-micro interpreter plan DS-CNN 16,000 B, ResNet-8 49,152 B, VWW 73,728 B, AD 768 B.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nntailor import analyze, zoo
from nntailor.cost.fusion import fused_layers, tf_same_padding
from nntailor.cost.memory import activation_buffers
from nntailor.graph.capture import capture


@pytest.mark.parametrize(("name", "tflm_head"), [
    ("ds_cnn", 16_000), ("resnet8", 49_152), ("vww_mobilenet", 73_728), ("ad_autoencoder", 768),
])
def test_mlperf_tiny_arena_heads_match_tflm(name: str, tflm_head: int):
    report = analyze(zoo.get(name), zoo.input_shape(name), "stm32l476")
    assert report.totals["peak_sram_bytes"] == tflm_head
    report.arena.check_no_overlap()


def test_tf_same_padding_matches_the_reference_ports():
    # REFERENCES.md: the DS-CNN stem pads 4 rows above and 5 below, 1 column each side; stride 2 on an even
    # input pads bottom/right only; stride 1 with a 3x3 kernel pads 1 each side
    assert tf_same_padding(49, 10, 2) == (4, 5) and tf_same_padding(10, 4, 2) == (1, 1)
    assert tf_same_padding(32, 3, 2) == (0, 1) and tf_same_padding(32, 3, 1) == (1, 1)
    assert tf_same_padding(33, 3, 2) == (1, 1) and tf_same_padding(8, 1, 2) == (0, 0)
    assert tf_same_padding(16, 3, 1, dilation=2) == (2, 2)


def test_the_pad_maps_to_the_conv_that_absorbs_it_and_the_conv_reads_the_pads_input():
    graph = capture(zoo.get("resnet8"), (1, 3, 32, 32))
    fused = fused_layers(graph)
    assert fused["stack2.pad"] == "stack2.conv1" and fused["stack3.pad"] == "stack3.conv1"
    buffers = {b.name: b for b in activation_buffers(graph)}
    assert "stack2.pad" not in buffers
    # stack1's output is read by the strided conv (through the folded pad) and by the 1x1 shortcut
    assert buffers["stack1.add"].readers == {"stack2.conv1", "stack2.shortcut"}
    assert analyze(graph, target="stm32l476").layer("stack2.pad").fused_into == "stack2.conv1"


class _PadThen(nn.Module):
    def __init__(self, pad: nn.Module, reader: nn.Module, relu_first: bool = True) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 1)
        self.relu = nn.ReLU() if relu_first else nn.Identity()
        self.pad, self.reader = pad, reader

    def forward(self, x):
        return self.reader(self.pad(self.relu(self.stem(x))))


def _fused(model: nn.Module, shape=(1, 3, 16, 16)) -> dict[str, str]:
    return fused_layers(capture(model, shape))


def test_same_and_valid_shaped_pads_fold():
    same_stride2 = _PadThen(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(8, 8, 3, 2))
    assert _fused(same_stride2)["pad"] == "reader"
    # the pad supplies one side, the conv's own padding the rest: (1 + 0, 1 + 1) is not SAME for stride 1...
    assert "pad" not in _fused(_PadThen(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(8, 8, 3, 1, 1)))
    # ...but (1, 1) + (0, 0) is: 5x5 SAME at stride 1 pads 2 each side
    assert _fused(_PadThen(nn.ZeroPad2d(1), nn.Conv2d(8, 8, 5, 1, 1)))["pad"] == "reader"
    depthwise = _PadThen(nn.ConstantPad2d((0, 1, 0, 1), 0.0), nn.Conv2d(8, 8, 3, 2, groups=8))
    assert _fused(depthwise)["pad"] == "reader"
    assert _fused(_PadThen(nn.ZeroPad2d(0), nn.Conv2d(8, 8, 3)))["pad"] == "reader"  # VALID

    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, 2)

        def forward(self, x):
            return self.conv(F.pad(x, (0, 1, 0, 1)))

    assert _fused(Functional()) == {"pad": "conv"}


def test_a_zero_pad_folds_into_a_max_pool_only_after_a_relu():
    assert _fused(_PadThen(nn.ZeroPad2d((0, 1, 0, 1)), nn.MaxPool2d(3, 2)))["pad"] == "reader"
    assert "pad" not in _fused(_PadThen(nn.ZeroPad2d((0, 1, 0, 1)), nn.MaxPool2d(3, 2), relu_first=False))
    # why: over values >= 0, a zero pad gives what SAME max pooling gives (it ignores padded cells)
    x = torch.relu(torch.randn(1, 8, 16, 16))
    same = F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=float("-inf")), 3, 2)
    assert torch.equal(F.max_pool2d(F.pad(x, (0, 1, 0, 1)), 3, 2), same)
    y = torch.randn(1, 8, 16, 16) - 3  # mostly negative: a zero pad changes the border maxima
    assert not torch.equal(F.max_pool2d(F.pad(y, (0, 1, 0, 1)), 3, 2),
                           F.max_pool2d(F.pad(y, (0, 1, 0, 1), value=float("-inf")), 3, 2))


@pytest.mark.parametrize("model", [
    _PadThen(nn.ZeroPad2d((1, 0, 1, 0)), nn.Conv2d(8, 8, 3, 2)),  # top/left: TF SAME puts the extra bottom/right
    _PadThen(nn.ZeroPad2d((0, 2, 0, 2)), nn.Conv2d(8, 8, 3, 1)),  # all on one side: not SAME
    _PadThen(nn.ZeroPad2d((0, 1, 0, 1)), nn.AvgPool2d(3, 2)),  # SAME avg pool divides by real cells only
    _PadThen(nn.ConstantPad2d((0, 1, 0, 1), 0.5), nn.Conv2d(8, 8, 3, 2)),  # not zero
    _PadThen(nn.ReflectionPad2d((0, 1, 0, 1)), nn.Conv2d(8, 8, 3, 2)),
    _PadThen(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(8, 8, 3, 2, padding_mode="zeros", padding=(0, 0),
                                                    dilation=2)),  # dilated: SAME would be (1, 2)
])
def test_pads_that_are_not_tf_padding_keep_their_buffer(model: nn.Module):
    graph = capture(model, (1, 3, 16, 16))
    assert "pad" not in fused_layers(graph)
    pad = next(b for b in activation_buffers(graph) if b.name == "pad")
    assert pad.numel == 8 * 17 * 17 or pad.numel == 8 * 18 * 18


def test_a_pad_with_a_second_reader_keeps_its_buffer():
    class TwoReaders(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pad, self.a, self.b = nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(3, 4, 3, 2), nn.Conv2d(3, 4, 3, 2)

        def forward(self, x):
            p = self.pad(x)
            return self.a(p) + self.b(p)

    assert "pad" not in fused_layers(capture(TwoReaders(), (1, 3, 16, 16)))


def test_the_asymmetric_pad_costs_its_buffer_in_the_arena():
    # 3x16x16 in (768 B), 3x17x17 pad (867 -> 880 B) and 8x8x8 out (512 B) at int8: input and pad are live at
    # the pad, pad and output at the conv: 880 + 768 = 1648 B peak; folded, it would be 768 + 512 = 1280 B
    class Net(nn.Module):
        def __init__(self, pad: tuple[int, int, int, int]) -> None:
            super().__init__()
            self.pad, self.conv = nn.ZeroPad2d(pad), nn.Conv2d(3, 8, 3, 2)

        def forward(self, x):
            return self.conv(self.pad(x))

    assert analyze(Net((1, 0, 1, 0)), (1, 3, 16, 16), "stm32l476").totals["peak_sram_bytes"] == 1648
    assert analyze(Net((0, 1, 0, 1)), (1, 3, 16, 16), "stm32l476").totals["peak_sram_bytes"] == 1280


def test_a_conv_that_absorbed_a_pad_reads_the_unpadded_tensor():
    # the padded taps are skipped, never loaded: int8, 3x32x32 in (3,072 B), 8x16x16 out (2,048 B)
    model = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(3, 8, 3, stride=2)).eval()
    report = analyze(model, (1, 3, 32, 32), "stm32l476", bits=8)
    conv = report.layer("1")
    assert conv.act_bytes == 3 * 32 * 32 + 8 * 16 * 16
    assert conv.input_shape == [1, 3, 33, 33]  # the captured shape stays what the module was given
