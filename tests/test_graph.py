"""Capture: op kinds, shapes (checked against eager forwards) and MACs (checked against torch's FlopCounterMode)."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from nntailor import UserError, analyze, capture
from nntailor.cost import metrics
from nntailor.zoo.shift import Shift


def flopcounter_macs(model: nn.Module, *inputs: torch.Tensor) -> int:
    """torch's own counter reports 2 x MACs of conv/linear/matmul (no bias): an independent reference."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(*inputs)
    return counter.get_total_flops() // 2


def graph_macs(model: nn.Module, *shapes: tuple[int, ...]) -> int:
    return sum(metrics.macs(layer) for layer in capture(model, list(shapes)))


class Everything(nn.Module):
    """One of each op the issue lists, in one forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)
        self.grouped = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=4)
        self.bn = nn.BatchNorm2d(16)
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.shift = Shift(8)
        self.shuffle = nn.ChannelShuffle(2)
        self.pool = nn.MaxPool2d(2)
        self.avg = nn.AvgPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.acts = nn.ModuleList([nn.ReLU(), nn.ReLU6(), nn.GELU(), nn.SiLU(), nn.Sigmoid(), nn.Hardswish()])
        self.conv1d = nn.Conv1d(8, 8, 3, padding=1)
        self.ln = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        y = self.dw(y) + y
        y = self.bn(self.grouped(y))
        y = self.up(y) * torch.sigmoid(y).mean()
        y = self.shuffle(self.shift(y))
        y = torch.cat([self.pool(y), self.avg(y)], dim=1)[:, :8]
        for act in self.acts:
            y = act(y)
        seq = y.flatten(2)  # (N, 8, L)
        seq = self.conv1d(seq).permute(0, 2, 1)  # (N, L, 8)
        seq = self.ln(seq)
        attn = torch.softmax(seq @ seq.transpose(1, 2), dim=-1)
        seq = torch.einsum("nij,njc->nic", attn, seq)
        pooled = self.gap(seq.permute(0, 2, 1).reshape(seq.shape[0], 8, 4, -1))
        return self.fc(torch.flatten(pooled, 1))


def test_every_listed_op_is_captured_with_eager_shapes():
    model = Everything().eval()
    x = torch.randn(2, 3, 16, 16)
    graph = capture(model, (2, 3, 16, 16))
    kinds = {layer.op for layer in graph}
    expected = {
        "conv", "conv_transpose", "batchnorm", "add", "mul", "sigmoid", "reduce", "shift", "shuffle", "maxpool",
        "avgpool", "cat", "slice", "relu", "relu6", "gelu", "silu", "hardswish", "reshape", "permute",
        "layernorm", "matmul", "softmax", "einsum", "adaptive_avgpool", "linear",
    }
    assert expected <= kinds
    assert graph.unpriced() == []
    assert graph.layer("fc").output_shape == tuple(model(x).shape)
    assert graph.layer("up").output_shape == (2, 8, 16, 16)
    assert graph.layer("dw").attrs["groups"] == 8 and graph.layer("dw").attrs["dilation"] == (2, 2)
    assert graph.total_params == sum(p.numel() for p in model.parameters())


def test_macs_equal_torch_flop_counter():
    model = Everything().eval()
    x = torch.randn(2, 3, 16, 16)
    assert graph_macs(model, (2, 3, 16, 16)) == flopcounter_macs(model, x)


@pytest.mark.parametrize(
    "module, shape",
    [
        (nn.Conv1d(4, 6, 5, stride=2, padding=2), (1, 4, 33)),
        (nn.Conv2d(6, 12, 3, padding=1, groups=3), (1, 6, 10, 10)),
        (nn.Conv2d(8, 8, 3, padding=1, groups=8), (1, 8, 10, 10)),
        (nn.Conv2d(4, 4, 3, dilation=3, padding=3), (1, 4, 12, 12)),
        (nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1), (1, 8, 7, 7)),
        (nn.Linear(16, 32), (3, 7, 16)),  # any leading dims
    ],
)
def test_layer_macs_match_torch_flop_counter(module, shape):
    assert graph_macs(module.eval(), shape) == flopcounter_macs(module.eval(), torch.randn(shape))


class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(12, 6))
        self.k = nn.Parameter(torch.randn(4, 6, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.k, padding=1)  # (N, 4, H, W)
        y = y.flatten(1)[:, :6]
        return F.linear(y, self.w) @ torch.ones(12, 5) + torch.bmm(y.unsqueeze(2), y.unsqueeze(1)).sum()


def test_functional_ops_with_parameters():
    model = Functional()
    graph = capture(model, (2, 6, 5, 5))
    assert graph_macs(model, (2, 6, 5, 5)) == flopcounter_macs(model, torch.randn(2, 6, 5, 5))
    owners = {name for layer in graph for name in layer.weights}
    assert owners == {"w", "k"}
    assert sum(layer.params for layer in graph) == 12 * 6 + 4 * 6 * 9


def test_multihead_attention_macs_from_the_formula():
    # q, k, v and output projections: 4 x L x E^2; QK^T and attention x V: 2 x L x S x E.
    mha = nn.MultiheadAttention(embed_dim=32, num_heads=4, batch_first=True)

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mha = mha

        def forward(self, x):
            return self.mha(x, x, x)[0]

    graph = capture(Block(), (2, 16, 32))
    layer = graph.layer("mha")
    assert layer.op == "attention"
    assert metrics.macs(layer) == 2 * (4 * 16 * 32 * 32 + 2 * 16 * 16 * 32)
    assert layer.params == sum(p.numel() for p in mha.parameters())


def test_embedding_takes_integer_ids():
    model = nn.Sequential(nn.Embedding(100, 16), nn.Flatten(), nn.Linear(16 * 8, 4))
    graph = capture(model, (1, 8))
    assert graph.layer("0").op == "embedding"
    assert graph.layer("2").output_shape == (1, 4)
    assert metrics.macs(graph.layer("0")) == 0


def test_shared_module_params_once_macs_twice():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x):
            return self.fc(self.fc(x))

    graph = capture(Twice(), (1, 8))
    assert [layer.name for layer in graph] == ["fc", "fc#2"]
    assert sum(layer.params for layer in graph) == 72
    assert sum(metrics.macs(layer) for layer in graph) == 2 * 64


def test_shift_is_zero_flop_zero_parameter():
    graph = capture(nn.Sequential(Shift(18)), (1, 18, 8, 8))
    (layer,) = graph.layers
    assert layer.op == "shift" and layer.params == 0 and metrics.macs(layer) == 0


class Unpriced(nn.Module):
    def forward(self, x):
        return torch.cumsum(x, dim=1)


def test_unknown_op_is_named_not_dropped():
    report = analyze(Unpriced(), (1, 4), "stm32l476")
    assert report.unpriced == ["cumsum (top level: torch.cumsum)"]
    assert report.to_dict()["layers"][0]["op"] == "other"
    with pytest.raises(UserError, match="cumsum"):
        analyze(Unpriced(), (1, 4), "stm32l476", strict=True)


def test_wrong_input_shape_is_a_user_error():
    with pytest.raises(UserError, match="does not run on input shape"):
        capture(nn.Linear(8, 2), (1, 9))
    with pytest.raises(UserError, match="positive"):
        capture(nn.Linear(8, 2), (1, 0))


class DataDependent(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x
        return -x


def test_untraceable_model_is_a_user_error():
    with pytest.raises(UserError, match="cannot trace"):
        capture(DataDependent(), (1, 4))


@pytest.mark.parametrize(
    "module, shape",
    [
        (nn.Conv2d(3, 5, 3, stride=2, padding=1), (1, 3, 17, 16)),
        (nn.Conv2d(3, 5, (3, 5), padding="same"), (2, 3, 9, 11)),
        (nn.Conv2d(3, 5, 4, padding="valid", dilation=2), (1, 3, 20, 20)),
        (nn.Conv1d(3, 5, 3, padding=2, padding_mode="reflect"), (1, 3, 12)),
        (nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1, dilation=2), (1, 4, 5, 6)),
        (nn.MaxPool2d(3, stride=2, ceil_mode=True), (1, 2, 14, 14)),
        (nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), (1, 2, 7, 9)),
        (nn.AvgPool2d(2, ceil_mode=True), (1, 2, 7, 7)),
        (nn.MaxPool1d(2, dilation=2), (1, 2, 11)),
        (nn.AdaptiveAvgPool2d((None, 3)), (1, 2, 7, 9)),
        (nn.Flatten(1, 2), (2, 3, 4, 5)),
        (nn.Linear(5, 7), (2, 3, 5)),
    ],
)
def test_shape_formulas_match_eager(module, shape):
    from nntailor.graph.ops import module_kind
    from nntailor.graph.shapes import module_output_shape

    expected = tuple(module(torch.zeros(shape)).shape)
    assert module_output_shape(module, module_kind(module), shape) == expected
    assert capture(module, shape).layers[0].output_shape == expected


def test_register_module_op_prices_a_custom_module_as_one_op():
    from nntailor.graph import register_module_op

    class Swish(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x)

    assert [layer.op for layer in capture(nn.Sequential(Swish()), (1, 4))] == ["sigmoid", "mul"]
    register_module_op(Swish, "silu")
    assert [layer.op for layer in capture(nn.Sequential(Swish()), (1, 4))] == ["silu"]
    with pytest.raises(ValueError, match="unknown op kind"):
        register_module_op(Swish, "swishy")


def test_results_nothing_reads_are_dead_but_in_place_ops_are_not():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 8)
            self.aux = nn.Linear(8, 4)  # an auxiliary head the forward computes and drops

        def forward(self, x):
            h = self.fc(x)
            self.aux(h)
            h.relu_()  # mutates h: its result is unused, its effect is not
            return h

    graph = capture(Net(), (1, 8))
    assert graph.layer("aux").attrs.get("dead") and not graph.layer("fc").attrs.get("dead")
    assert not any(layer.attrs.get("dead") for layer in graph.layers if layer.target == "Tensor.relu_")
    from nntailor import analyze

    report = analyze(Net(), (1, 8))
    assert report.totals["macs"] == 64  # fc only
    assert report.totals["params"] == 8 * 8 + 8 + 8 * 4 + 4  # the dead head's parameters still count


def test_liveness_follows_non_tensor_edges_and_inplace_modules():
    class Gated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gate, self.fc, self.fc2 = nn.Linear(8, 1), nn.Linear(8, 8), nn.Linear(8, 8)
            self.act = nn.ReLU(inplace=True)

        def forward(self, x):
            g = self.gate(x).sigmoid().mean().item()  # used, through a Python float
            h = self.fc(x) * g
            self.act(h)  # in place: its effect is the mutation
            return self.fc2(h)

    graph = capture(Gated(), (1, 8))
    assert not any(layer.attrs.get("dead") for layer in graph.layers)


def test_a_dead_reader_does_not_block_fusion():
    from nntailor.cost.fusion import fused_layers

    class Probe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn, self.relu = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU()

        def forward(self, x):
            h = self.conv(x)
            h.mean()  # a debugging probe nothing reads
            return self.relu(self.bn(h))

    assert fused_layers(capture(Probe(), (1, 3, 8, 8))) == {"bn": "conv", "relu": "conv"}
