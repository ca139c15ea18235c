"""Search spaces: seed 000's ranges, field-level errors, conditional dimensions, compression dimensions."""

import optuna
import pytest
import torch

from nntailor import UserError
from nntailor.compress.prune import PruneConfig
from nntailor.compress.quant.binary import BinarizeConfig
from nntailor.compress.quant.ptq import QuantizeConfig
from nntailor.search import build, load_space, space_from_dict

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _designs(space, n, seed=0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(space.suggest(trial))
        study.tell(trial, 0.0)
    return out


def test_cnn_defaults_are_seed_000_ranges():
    spec = space_from_dict({"space": {"kind": "cnn", "input_shape": [1, 1, 28, 28]}}).spec
    # seed 000, "DSE: CNN on MNIST": 1-2 CNN layers, 8-128 filters, kernel 1x1-5x5, max-pool 2x2-4x4,
    # 1-2 FC layers, 10-250 nodes per FC, LR 0.01-0.8
    assert (spec.conv_layers.low, spec.conv_layers.high) == (1, 2)
    assert (spec.filters.low, spec.filters.high) == (8, 128)
    assert (spec.kernel.low, spec.kernel.high) == (1, 5)
    assert (spec.pool.low, spec.pool.high) == (2, 4)
    assert (spec.fc_layers.low, spec.fc_layers.high) == (1, 2)
    assert (spec.fc_nodes.low, spec.fc_nodes.high) == (10, 250)
    assert (spec.lr.low, spec.lr.high, spec.lr.log) == (0.01, 0.8, True)


def test_designs_build_and_run_with_the_described_layers():
    space = space_from_dict({"space": {"kind": "cnn", "input_shape": [1, 1, 28, 28]}})
    for design in _designs(space, 20):
        model = build(design)
        assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
        convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        p = design.params
        assert len(convs) == p["conv_layers"]
        assert len(linears) == p["fc_layers"] + 1  # hidden FC layers, then the classifier
        for i, conv in enumerate(convs):
            assert conv.out_channels == p[f"filters_{i}"] and conv.kernel_size == (p[f"kernel_{i}"],) * 2
        for i in range(p["fc_layers"]):
            assert linears[i].out_features == p[f"fc_nodes_{i}"]
        assert 0.01 <= design.lr <= 0.8


def test_second_layer_dimensions_exist_only_with_two_layers():
    space = space_from_dict({"space": {"kind": "mlp", "input_shape": [1, 64]}})
    designs = _designs(space, 30, seed=1)
    counts = {d.params["fc_layers"] for d in designs}
    assert counts == {1, 2}
    for d in designs:
        assert ("fc_nodes_1" in d.params) == (d.params["fc_layers"] == 2)
    one = space.design({"fc_layers": 1, "fc_nodes_0": 20, "fc_nodes_1": 99, "lr": 0.1})
    assert "fc_nodes_1" not in one.params  # given but not reached: ignored
    with pytest.raises(KeyError, match="fc_nodes_1"):
        space.design({"fc_layers": 2, "fc_nodes_0": 20, "lr": 0.1})


def test_every_zoo_block_builds_from_the_zoo_classes():
    from nntailor.zoo.mobilenet import DepthwiseSeparable, InvertedResidual
    from nntailor.zoo.resnet import Bottleneck
    from nntailor.zoo.shift import ShiftBlock
    from nntailor.zoo.squeezenet import Fire

    classes = {"depthwise_separable": DepthwiseSeparable, "inverted_residual": InvertedResidual,
               "bottleneck": Bottleneck, "shift": ShiftBlock, "fire": Fire}
    space = space_from_dict({"space": {"kind": "blocks", "input_shape": [1, 3, 16, 16], "stages": {"low": 1,
                                                                                                  "high": 1}}})
    for kind, cls in classes.items():
        design = space.design({"stem": 8, "stages": 1, "block_0": kind, "width_0": 16, "stride_0": 2,
                               "fc_layers": 0, "lr": 0.1})
        model = build(design)
        assert any(isinstance(m, cls) for m in model.modules()), kind
        assert model(torch.zeros(1, 3, 16, 16)).shape == (1, 10)


def test_bits_and_sparsity_map_onto_compress_configs_and_widths():
    space = space_from_dict({"space": {"kind": "mlp", "input_shape": [1, 64], "bits": {"choices": [1, 4, 8, 32]},
                                       "sparsity": {"choices": [0.0, 0.5]}}})
    design = space.design({"fc_layers": 1, "fc_nodes_0": 20, "bits_fc0": 1, "sparsity_fc0": 0.5,
                           "bits_out": 4, "sparsity_out": 0.0, "lr": 0.1})
    assert design.layer_widths == {"0.1": 1, "1.0": 4}
    pricing = design.pricing()
    assert pricing["layer_bits"] == {"0.1": (1, 8), "1.0": (4, 4)}  # binary weights, activations at 8 bits
    assert pricing["layer_arith"] == {"0.1": "add"}  # BinaryConnect: a MAC is an add or subtract
    recipe = design.recipe()
    assert recipe[0] == PruneConfig(sparsity={"0.1": 0.5}, layers=["0.1"])
    assert recipe[1] == BinarizeConfig(method="binaryconnect", keep_first_last=False, layers=["0.1"])
    assert recipe[2] == QuantizeConfig(scheme="fixed_point", weight_bits=4, act_bits=4, layers=["1.0"])
    names = dict(build(design).named_modules())
    assert all(isinstance(names[p], torch.nn.Linear) for p in design.mac_layers())


@pytest.mark.parametrize("space, message", [
    ({"kind": "cnn", "input_shape": [1, 1, 28, 28], "filters": {"low": 128, "high": 8}}, "filters: low 128 > high 8"),
    ({"kind": "mlp", "input_shape": [1, 64], "fc_nodes": {"choices": []}}, "fc_nodes"),
    ({"kind": "blocks", "input_shape": [1, 3, 16, 16], "block": {"choices": ["fire", "capsule"]}},
     "unknown block 'capsule'"),
    ({"kind": "mlp", "input_shape": [1, 64], "bits": {"choices": [8, 0]}}, "bits: 0"),
    ({"kind": "mlp", "input_shape": [1, 64], "sparsity": {"choices": [1.0]}}, "sparsity: 1.0"),
    ({"kind": "transformer", "input_shape": [1, 64]}, "kind"),
    ({"kind": "mlp", "input_shape": [1, 64], "widths": 3}, "widths"),
])
def test_bad_spaces_name_the_field(space, message):
    with pytest.raises(UserError, match="space") as info:
        space_from_dict({"space": space})
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_space_from_yaml_file(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("space:\n  kind: cnn\n  input_shape: [1, 1, 8, 8]\n  filters: {choices: [8, 16]}\n")
    space = load_space(path)
    assert space.spec.filters.choices == [8, 16]
    path.write_text("space:\n  kind: cnn\n  input_shape: [1, 1, 8, 8]\n  kernel: {low: 5, high: 1}\n")
    with pytest.raises(UserError, match=r"kernel: low 5 > high 1"):
        load_space(path)
    with pytest.raises(UserError, match="not found"):
        load_space(tmp_path / "missing.yaml")
