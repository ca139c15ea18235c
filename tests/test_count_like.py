"""``count_like``: each counting tool's number, reproduced from the captured graph.

Two kinds of evidence. The published measurements of the real tools on three torchvision architectures
(golden values, never our own output), and the real tools run here on small models built to exercise each
rule: conv + bias, BN with and without affine, every pooling, activations counted once, twice or never,
transposed convs, norms, functional ops, matmul / einsum forms, attention, embedding, shared modules and a
batch of 2. Ops the module docstring lists as impossible to emulate are left out of these models.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nntailor import zoo
from nntailor.cost.count_like import TOOLS, count_like, layer_count_like
from nntailor.graph import capture
from nntailor.graph.types import Graph

pytestmark = pytest.mark.filterwarnings("ignore")

# Published measurements of the real tools, batch 1, 224x224: fvcore FlopCountAnalysis(...).total(),
# thop profile, ptflops get_model_complexity_info (pytorch and aten backends), torchinfo total mult-adds,
# torch.utils.flop_counter.FlopCounterMode.
PUBLISHED: dict[str, dict[str, int]] = {
    "resnet18": {
        "fvcore": 1_819_065_856, "thop": 1_824_033_792, "ptflops": 1_825_313_768,
        "ptflops_aten": 1_814_074_344, "torchinfo": 1_814_083_944, "flopcounter": 3_628_146_688,
    },
    "resnet50": {
        "fvcore": 4_111_512_576, "thop": 4_133_742_592, "ptflops": 4_132_436_968,
        "ptflops_aten": 4_089_185_256, "torchinfo": 4_089_238_376, "flopcounter": 8_178_368_512,
    },
    "mobilenet_v2": {
        "fvcore": 314_193_216, "thop": 327_486_720, "ptflops": 320_300_008,
        "ptflops_aten": 300_775_272, "torchinfo": 300_809_384, "flopcounter": 601_548_544,
    },
}


@pytest.fixture(scope="module")
def zoo_graphs() -> dict[str, Graph]:
    return {name: capture(zoo.get(name), (1, 3, 224, 224)) for name in PUBLISHED}


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("model", list(PUBLISHED))
def test_published_figures(zoo_graphs: dict[str, Graph], model: str, tool: str) -> None:
    assert count_like(zoo_graphs[model], tool) == PUBLISHED[model][tool]


@pytest.mark.parametrize("model", list(PUBLISHED))
def test_layers_add_up_to_the_total(zoo_graphs: dict[str, Graph], model: str) -> None:
    graph = zoo_graphs[model]
    for tool in TOOLS:  # batch 1: ptflops' division by the batch changes nothing
        assert sum(layer_count_like(layer, tool) for layer in graph) == count_like(graph, tool)


def test_unknown_tool_is_a_value_error(zoo_graphs: dict[str, Graph]) -> None:
    graph = zoo_graphs["resnet18"]
    with pytest.raises(ValueError, match="fvcore, thop, ptflops, ptflops_aten, torchinfo, flopcounter"):
        count_like(graph, "deepspeed")
    with pytest.raises(ValueError, match="unknown counting tool 'FVCORE'"):
        layer_count_like(graph.layers[0], "FVCORE")


# ------------------------------------------------------------------------------ small models, real tools


class SmallCNN(nn.Sequential):
    def __init__(self) -> None:
        super().__init__(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, stride=2), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
        )


class DepthwisePointwise(nn.Sequential):
    def __init__(self) -> None:
        super().__init__(
            nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU6(),
            nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16, affine=False), nn.ReLU6(),
        )


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()  # called twice
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


class Zoo2(nn.Module):
    """Transposed and 1-d convs, odd pooling sizes, norms and activations each tool prices differently."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Sequential(
            nn.ConvTranspose2d(4, 6, 3, stride=2),
            nn.ConvTranspose2d(6, 4, 2, stride=2, groups=2, bias=False),
            nn.Upsample(scale_factor=2), nn.UpsamplingNearest2d(scale_factor=2),
        )
        self.down = nn.Sequential(
            nn.AvgPool2d(3, 2), nn.GroupNorm(2, 4), nn.InstanceNorm2d(4, affine=True), nn.PReLU(), nn.ELU(),
            nn.LeakyReLU(), nn.SiLU(), nn.Hardswish(), nn.Sigmoid(),
            nn.AdaptiveAvgPool2d((5, 7)), nn.AdaptiveMaxPool2d(2),
        )
        self.seq = nn.Sequential(
            nn.Conv1d(4, 6, 3), nn.BatchNorm1d(6), nn.AdaptiveAvgPool1d(3), nn.MaxPool1d(1), nn.AvgPool1d(1),
        )

    def forward(self, x: Tensor) -> Tensor:
        y = self.down(self.up(x))
        return self.seq(y.flatten(2)).sum() + y.sum()


class Functional(nn.Module):
    """Functional calls: only the aten-level tools see them, and ptflops sees the ones it patches."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(6, 3, 3, 3))
        self.b = nn.Parameter(torch.randn(6))
        self.fc = nn.Parameter(torch.randn(5, 6))
        self.bn = nn.BatchNorm2d(6)

    def forward(self, x: Tensor) -> Tensor:
        y = F.conv2d(x, self.w, self.b, 1, 1) + F.conv2d(x, self.w, padding=1)
        y = F.batch_norm(y, self.bn.running_mean, self.bn.running_var, self.bn.weight, self.bn.bias)
        y = F.max_pool2d(F.gelu(torch.relu(F.relu(y))), 2)
        y = F.interpolate(y, scale_factor=2) + F.interpolate(y, size=(14, 14))
        y = y + F.avg_pool2d(y, 2).repeat(1, 1, 2, 2)
        y = F.layer_norm(F.silu(y), (14,)) + F.interpolate(y, scale_factor=1.5)[..., :14, :14]
        z = F.adaptive_avg_pool2d(y, 1).flatten(1)
        z = torch.add(F.linear(z, self.fc), F.linear(z, self.fc, self.b[:5])).mul(2)
        return F.softmax(z, dim=1).add(z) * 3


class Matmuls(nn.Module):
    """Every spelling of a matrix product: the operator, torch functions, Tensor methods, einsum."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(5, 4))
        self.left = nn.Parameter(torch.randn(3, 6))
        self.a = nn.Parameter(torch.randn(4, 7))
        self.b = nn.Parameter(torch.randn(7, 2))

    def forward(self, x: Tensor) -> Tensor:
        xt = x.transpose(1, 2)
        out = (x @ self.w).sum() + torch.matmul(x, self.w).sum() + x.matmul(self.w).sum()
        out = out + torch.bmm(x, xt).sum() + x.bmm(xt).sum()
        out = out + torch.mm(x[0], self.w).sum() + x[0].mm(self.w).sum()
        out = out + (self.left @ x).sum()  # broadcast: fvcore misses the batch of the right operand
        out = out + torch.einsum("bij,bjk->bik", x, xt).sum() + torch.einsum("bik,kj->bij", x, self.w).sum()
        out = out + torch.einsum("bi,bj->bij", x[:, 0], x[:, 1]).sum()  # outer product: aten multiplies
        out = out + torch.einsum("...ij,jk,kl->...il", x, self.w, self.a @ self.b).sum()  # 3 operands
        return out + torch.einsum("bij,bij->b", x, x).sum() + torch.einsum("bij->b", x).sum()


class Tokens(nn.Module):
    """Embedding, batch-first attention, LayerNorm, GELU MLP on 3-d inputs, softmax over the last dim."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
        self.norm = nn.LayerNorm(16)
        self.mlp = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 16, bias=False))
        self.norm2 = nn.LayerNorm(16, elementwise_affine=False)
        self.cross = nn.MultiheadAttention(16, 2, bias=False, kdim=8, vdim=12)
        self.memory_k = nn.Parameter(torch.randn(5, 2, 8))
        self.memory_v = nn.Parameter(torch.randn(5, 2, 12))
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.embed(tokens)
        x = self.norm(x + self.attn(x, x, x)[0])
        x = self.norm2(x + self.mlp(x))
        x = x + self.cross(x.transpose(0, 1), self.memory_k, self.memory_v)[0].transpose(0, 1)
        return self.softmax(x)


class Shared(nn.Module):
    """Modules called twice: every tool prices each call (the capture keeps the weights on the first)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        x = self.bn(self.conv(self.bn(self.conv(x))))
        return self.fc(self.fc(x.mean((2, 3))))


SMALL: dict[str, tuple[Callable[[], nn.Module], Callable[[], Tensor]]] = {
    "small_cnn": (SmallCNN, lambda: torch.randn(1, 3, 32, 32)),
    "depthwise_pointwise": (DepthwisePointwise, lambda: torch.randn(1, 8, 16, 16)),
    "residual": (Residual, lambda: torch.randn(1, 8, 16, 16)),
    "residual_batch2": (Residual, lambda: torch.randn(2, 8, 16, 16)),  # ptflops divides module hooks by 2
    "zoo2": (Zoo2, lambda: torch.randn(1, 4, 7, 7)),
    "functional": (Functional, lambda: torch.randn(1, 3, 14, 14)),
    "matmuls": (Matmuls, lambda: torch.randn(2, 6, 5)),
    "tokens": (Tokens, lambda: torch.randint(0, 50, (2, 7))),
    "shared": (Shared, lambda: torch.randn(1, 4, 8, 8)),
}


def _run_real_tools(model: nn.Module, x: Tensor) -> dict[str, int]:
    """Each tool's headline number, run the way its README shows, with its printing silenced."""
    from fvcore.nn import FlopCountAnalysis
    from ptflops import get_model_complexity_info
    from thop import profile
    from torch.utils.flop_counter import FlopCounterMode
    from torchinfo import summary

    found: dict[str, int] = {}
    sink = io.StringIO()
    logging.disable(logging.WARNING)  # fvcore logs every unsupported op
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            analysis = FlopCountAnalysis(model, (x,))
            found["fvcore"] = int(analysis.total())
            found["thop"] = int(profile(model, (x,), verbose=False)[0])
            for tool, backend in (("ptflops", "pytorch"), ("ptflops_aten", "aten")):
                macs, _ = get_model_complexity_info(
                    model, tuple(x.shape[1:]), as_strings=False, print_per_layer_stat=False, backend=backend,
                    input_constructor=lambda _: x,  # our own tensor: batch and dtype as given
                )
                found[tool] = int(macs)
            found["torchinfo"] = int(summary(model, input_data=x, verbose=0).total_mult_adds)
            with FlopCounterMode(display=False) as counter:
                model(x)
            found["flopcounter"] = int(counter.get_total_flops())
    finally:
        logging.disable(logging.NOTSET)
    return found


Measured = dict[str, tuple[Graph, dict[str, int]]]  # model name: (our capture, each real tool's number)


@pytest.fixture(scope="module")
def measured() -> Measured:
    torch.manual_seed(0)
    results = {}
    for name, (build, make_input) in SMALL.items():
        model, x = build().eval(), make_input()  # eval: thop and ptflops force it; fvcore prices BN by mode
        graph = capture(model, tuple(x.shape))
        results[name] = (graph, _run_real_tools(model, x))
    return results


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("model", list(SMALL))
def test_matches_the_real_tool(measured: Measured, model: str, tool: str) -> None:
    graph, real = measured[model]
    assert count_like(graph, tool) == real[tool]


def test_the_tools_really_disagree(measured: Measured) -> None:
    """The point of the module: on one small CNN the six tools give six different numbers."""
    graph, real = measured["small_cnn"]
    assert len({count_like(graph, tool) for tool in TOOLS}) == len(TOOLS)
    assert len(set(real.values())) == len(TOOLS)


def test_flopcounter_sdpa_and_unbatched_conv_match_torch():
    from torch.utils.flop_counter import FlopCounterMode

    from nntailor.graph import capture

    class Attn(nn.Module):
        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v)

    shapes = [(2, 4, 7, 8), (2, 4, 5, 8), (2, 4, 5, 6)]
    counter = FlopCounterMode(display=False)
    with counter:
        Attn()(*(torch.randn(s) for s in shapes))
    assert count_like(capture(Attn(), shapes), "flopcounter") == counter.get_total_flops()

    conv = nn.Conv2d(3, 6, 3, groups=3)
    counter = FlopCounterMode(display=False)
    with counter:
        conv(torch.randn(3, 8, 8))
    assert count_like(capture(conv, (3, 8, 8)), "flopcounter") == counter.get_total_flops()
