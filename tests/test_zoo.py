"""The model zoo: exact parameter and MAC counts, shapes, fx tracing, specs and user errors.

MACs are measured independently of nntailor by ``torch.utils.flop_counter.FlopCounterMode``, which counts
2 FLOPs per multiply-accumulate of conv/linear/matmul and nothing for bias, BN, activations or pooling.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.fx as fx
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from nntailor import zoo
from nntailor.errors import UserError
from nntailor.zoo.shift import Shift

# name: (params, MACs, output shape) at the default input shape, batch 1. These numbers come from the
# papers and torchvision; if a model disagrees, the model is wrong.
EXPECTED: dict[str, tuple[int, int, tuple[int, ...]]] = {
    "lenet300": (266_610, 266_200, (1, 10)),
    "lenet5": (431_080, 2_293_000, (1, 10)),
    "alexnet": (60_965_224, 724_406_816, (1, 1000)),
    "vgg16": (138_357_544, 15_470_264_320, (1, 1000)),
    "googlenet": (6_624_904, 1_498_376_192, (1, 1000)),
    "resnet18": (11_689_512, 1_814_073_344, (1, 1000)),
    "resnet50": (25_557_032, 4_089_184_256, (1, 1000)),
    "resnet50_v1": (25_557_032, 3_857_973_248, (1, 1000)),
    # Howard et al. 2017, Table 1: 567,716,352 conv MACs + 1,024,000 FC = "569 M"; 4.2 M params.
    "mobilenet_v1": (4_231_976, 568_740_352, (1, 1000)),
    "mobilenet_v2": (3_504_872, 300_774_272, (1, 1000)),
    "squeezenet1_0": (1_248_424, 818_924_576, (1, 1000)),
    "squeezenet1_1": (1_235_496, 349_151_936, (1, 1000)),
    "shufflenet_v2": (2_278_604, 144_907_992, (1, 1000)),
    # our own design (see nntailor.zoo.shift.ShiftNet): pinned to catch accidental changes
    "shiftnet": (95_642, 16_433_792, (1, 10)),
    "ds_cnn": (23_756, 2_656_768, (1, 12)),
    "resnet8": (78_186, 12_501_632, (1, 10)),
    "vww_mobilenet": (216_322, 7_489_664, (1, 2)),
    "ad_autoencoder": (267_928, 264_192, (1, 640)),
}

DEFAULT_SHAPES: dict[str, tuple[int, ...]] = {
    "lenet300": (1, 1, 28, 28),
    "lenet5": (1, 1, 28, 28),
    "alexnet": (1, 3, 227, 227),
    "shiftnet": (1, 3, 32, 32),
    "ds_cnn": (1, 1, 49, 10),
    "resnet8": (1, 3, 32, 32),
    "vww_mobilenet": (1, 3, 96, 96),
    "ad_autoencoder": (1, 640),
}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, x: Tensor) -> tuple[int, Tensor]:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = model(x)
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return flops // 2, out


@dataclass
class Built:
    name: str
    model: nn.Module
    x: Tensor
    out: Tensor
    macs: int


@pytest.fixture(scope="module", params=list(EXPECTED))
def built(request: pytest.FixtureRequest) -> Built:
    """Each model is built and run once per module; all per-model tests share it."""
    name: str = request.param
    torch.manual_seed(0)
    model = zoo.get(name)
    x = torch.randn(zoo.input_shape(name))
    macs, out = count_macs(model, x)
    return Built(name, model, x, out, macs)


# ------------------------------------------------------------------------------------------- per model


def test_params(built: Built) -> None:
    assert count_params(built.model) == EXPECTED[built.name][0]


def test_macs(built: Built) -> None:
    assert built.macs == EXPECTED[built.name][1]


def test_output_shape_and_eval_mode(built: Built) -> None:
    assert tuple(built.out.shape) == EXPECTED[built.name][2]
    assert torch.isfinite(built.out).all()
    assert not any(m.training for m in built.model.modules())


def test_fx_trace_matches_eager(built: Built) -> None:
    gm = fx.symbolic_trace(built.model)
    assert any(node.op == "call_module" for node in gm.graph.nodes)
    with torch.no_grad():
        torch.testing.assert_close(gm(built.x), built.out)


# ------------------------------------------------------------------------------------------- registry


def test_names_are_the_contract() -> None:
    assert sorted(zoo.names()) == sorted(EXPECTED)
    assert len(zoo.names()) == len(set(zoo.names()))


@pytest.mark.parametrize("name", list(EXPECTED))
def test_default_input_shapes(name: str) -> None:
    assert zoo.input_shape(name) == DEFAULT_SHAPES.get(name, (1, 3, 224, 224))


def test_num_classes_option() -> None:
    for name, classes in [("lenet5", 7), ("ds_cnn", 35), ("shiftnet", 100), ("squeezenet1_1", 3)]:
        model = zoo.get(name, num_classes=classes)
        with torch.no_grad():
            assert tuple(model(torch.randn(zoo.input_shape(name))).shape) == (1, classes)


def test_mobilenet_v1_width_and_resolution() -> None:
    name, options = zoo.parse_spec("mobilenet_v1?width=0.5&resolution=128")
    assert zoo.input_shape(name, **options) == (1, 3, 128, 128)
    model = zoo.get(name, **options)
    macs, out = count_macs(model, torch.randn(1, 3, 128, 128))
    assert out.shape == (1, 1000)
    assert macs < EXPECTED["mobilenet_v1"][1]
    # TF-Slim's MobileNet_v1_0.50_128 table entry: 49 M MACs, 1.34 M params
    assert macs == 49_160_192
    assert count_params(model) == 1_331_592
    # width alone: the paper's Table 6 lists 0.50 MobileNet-224 at 150 M MACs, 1.3 M params
    assert count_macs(zoo.get("mobilenet_v1", width=0.5), torch.randn(1, 3, 224, 224))[0] == 149_497_088


# -------------------------------------------------------------------------------------------- specs


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("resnet18", ("resnet18", {})),
        ("resnet18?", ("resnet18", {})),
        ("mobilenet_v1?width=0.5&resolution=128", ("mobilenet_v1", {"width": 0.5, "resolution": 128})),
        ("m?a=1&b=2.5&c=1e-3&d=true&e=False&f=abc&g=", ("m", {"a": 1, "b": 2.5, "c": 0.001, "d": True,
                                                           "e": False, "f": "abc", "g": ""})),
        (" lenet5 ? num_classes = 7 ", ("lenet5", {"num_classes": 7})),
    ],
)
def test_parse_spec(spec: str, expected: tuple[str, dict[str, object]]) -> None:
    name, options = zoo.parse_spec(spec)
    assert (name, options) == expected
    assert [type(v) for v in options.values()] == [type(v) for v in expected[1].values()]


@pytest.mark.parametrize("spec", ["", "?width=1", "mobilenet_v1?width", "mobilenet_v1?=3",
                                  "mobilenet_v1?width=1&width=2"])
def test_parse_spec_errors(spec: str) -> None:
    with pytest.raises(UserError):
        zoo.parse_spec(spec)


# ------------------------------------------------------------------------------------------- errors


def _message(excinfo: pytest.ExceptionInfo[UserError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_unknown_name_lists_valid_names() -> None:
    for call in (zoo.get, zoo.input_shape):
        with pytest.raises(UserError) as excinfo:
            call("resnet19")
        message = _message(excinfo)
        assert "resnet19" in message
        assert all(name in message for name in EXPECTED)


def test_unknown_option_lists_valid_options() -> None:
    with pytest.raises(UserError) as excinfo:
        zoo.get("mobilenet_v1", depth=2)
    message = _message(excinfo)
    assert "depth" in message
    assert all(option in message for option in ("num_classes", "width", "resolution"))

    with pytest.raises(UserError) as excinfo:
        zoo.input_shape("resnet18", resolution=128)  # resolution is a mobilenet_v1 option only
    assert "num_classes" in _message(excinfo)

    with pytest.raises(UserError) as excinfo:
        zoo.get("ad_autoencoder", num_classes=10)
    assert "none" in _message(excinfo)


@pytest.mark.parametrize(
    "options",
    [
        {"width": 0},
        {"width": -0.5},
        {"width": "wide"},
        {"width": float("nan")},
        {"width": float("inf")},
        {"resolution": 0},
        {"resolution": 127.5},
        {"num_classes": 0},
        {"num_classes": True},
        {"num_classes": 2.0},
    ],
)
def test_bad_option_values(options: dict[str, object]) -> None:
    with pytest.raises(UserError) as excinfo:
        zoo.input_shape("mobilenet_v1", **options)
    key = next(iter(options))
    assert key in _message(excinfo)
    with pytest.raises(UserError):
        zoo.get("mobilenet_v1", **options)


def test_factories_check_values_too() -> None:
    from nntailor.zoo import lenet, mobilenet

    with pytest.raises(UserError):
        mobilenet.mobilenet_v1(width=-1.0)
    with pytest.raises(UserError):
        lenet.lenet5(num_classes=0)


# -------------------------------------------------------------------------------------------- Shift


def test_shift_moves_each_group_by_its_offset() -> None:
    shift = Shift(9)
    assert count_params(shift) == 0
    x = torch.arange(1.0, 9 * 16 + 1).reshape(1, 9, 4, 4)
    with FlopCounterMode(display=False) as counter:
        y = shift(x)
    assert counter.get_total_flops() == 0
    assert y.shape == x.shape
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    for c, (dy, dx) in enumerate(offsets):
        expected = torch.zeros(4, 4)
        for i in range(4):
            for j in range(4):
                if 0 <= i - dy < 4 and 0 <= j - dx < 4:
                    expected[i, j] = x[0, c, i - dy, j - dx]
        torch.testing.assert_close(y[0, c], expected)


def test_shift_leftover_channels_stay_in_the_centre() -> None:
    shift = Shift(20)  # 9 groups of 2, plus 2 leftovers in the centre group
    x = torch.randn(2, 20, 5, 6)
    y = shift(x)
    torch.testing.assert_close(y[:, 8:12], x[:, 8:12])
    assert not torch.equal(y[:, :8], x[:, :8])
    assert (y[:, 0, -1, :] == 0).all() and (y[:, 0, :, -1] == 0).all()  # group 0 moves up-left
    fx.symbolic_trace(shift)  # plain slice/pad/cat nodes


def test_shift_5x5_and_bad_kernel() -> None:
    assert Shift(50, kernel_size=5)(torch.randn(1, 50, 7, 7)).shape == (1, 50, 7, 7)
    with pytest.raises(ValueError):
        Shift(9, kernel_size=2)
