"""PTQ and QAT through the quantize step: int8 keeps float accuracy, 4-bit QAT recovers what 4-bit PTQ loses,
the cost model sees the bit widths, and bad input is refused."""

import copy

import pytest
import torch
import torch.nn as nn
from torch.utils.data import TensorDataset

from nntailor import UserError, analyze
from nntailor.compress import Context, QuantizeConfig, apply, quant_bits
from nntailor.compress.quant import QuantConv2d, QuantLinear
from nntailor.compress.quant.modules import ActivationQuantizer
from nntailor.compress.recipe import FinetuneConfig, run_recipe
from nntailor.data import load_dataset
from nntailor.train import TrainConfig, evaluate, fit


@pytest.fixture(scope="module")
def trained():
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 64, 32),
                          nn.ReLU(), nn.Linear(32, 10))
    fit(model, data.train, TrainConfig(epochs=4, lr=3e-3, progress=False))
    return model, data, evaluate(model, data.test)


def test_int8_ptq_keeps_float_accuracy(trained):
    model, data, float_acc = trained
    q = apply(copy.deepcopy(model), QuantizeConfig(), Context(train=data.train))
    assert isinstance(q[0], QuantConv2d) and isinstance(q[3], QuantLinear)
    assert evaluate(q, data.test) >= float_acc - 0.01
    # the output is really quantized: the first layer's input takes at most 256 levels
    x = data.test.tensors[0][:32]
    assert len(torch.unique(q[0].input_quant(x))) <= 256


def test_low_bit_qat_recovers_what_ptq_loses(trained):
    model, data, float_acc = trained
    config = QuantizeConfig(weight_bits=2, act_bits=2)
    ptq = apply(copy.deepcopy(model), config, Context(train=data.train))
    ptq_acc = evaluate(ptq, data.test)
    qat = run_recipe(copy.deepcopy(model), [config, FinetuneConfig(epochs=3, lr=1e-3)],
                     Context(train=data.train), progress=False)
    assert ptq_acc < float_acc - 0.05  # 2 bits costs accuracy after PTQ
    assert evaluate(qat, data.test) > ptq_acc + 0.05


def test_cost_model_prices_the_widths(trained):
    model, data, _ = trained
    q = apply(copy.deepcopy(model), QuantizeConfig(weight_bits=4, act_bits=8), Context(train=data.train))
    bits = quant_bits(q)
    assert bits == {"0": (4, 8), "3": (4, 8), "5": (4, 8)}
    report = analyze(q, (1, 1, 8, 8), "stm32l476", layer_bits=bits)
    assert report.totals["bops"] == report.totals["macs"] * 4 * 8
    assert report.totals["macs"] == analyze(model, (1, 1, 8, 8), "stm32l476").totals["macs"]


def test_keep_first_last_and_bad_input(trained):
    model, data, _ = trained
    q = apply(copy.deepcopy(model), QuantizeConfig(keep_first_last=True), Context(train=data.train))
    assert type(q[0]) is nn.Conv2d and type(q[5]) is nn.Linear and isinstance(q[3], QuantLinear)
    with pytest.raises(ValueError, match="bits must be in 2..16"):
        QuantizeConfig(weight_bits=1)
    with pytest.raises(UserError, match="needs training data"):
        apply(copy.deepcopy(model), QuantizeConfig())
    empty = TensorDataset(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long))
    with pytest.raises(UserError, match="calibration set is empty"):
        apply(copy.deepcopy(model), QuantizeConfig(), Context(train=empty))
    wrong = TensorDataset(torch.zeros(4, 1, 9, 9), torch.zeros(4, dtype=torch.long))
    with pytest.raises(UserError, match=r"calibration batch of shape \(4, 1, 9, 9\) does not fit"):
        apply(copy.deepcopy(model), QuantizeConfig(), Context(train=wrong))


def test_dynamic_fixed_point_ptq(trained):
    from nntailor.compress.quant.modules import fixed_point_formats

    model, data, float_acc = trained
    q = apply(copy.deepcopy(model), QuantizeConfig(scheme="fixed_point"), Context(train=data.train))
    assert evaluate(q, data.test) >= float_acc - 0.02
    formats = fixed_point_formats(q)
    assert set(formats) == {"0", "3", "5"}
    for fmt in formats.values():  # Qm.n with m + n + 1 = 8
        for kind in ("weights", "activations"):
            m, n = (int(v) for v in fmt[kind][1:].split("."))
            assert m + n + 1 == 8


@pytest.mark.parametrize("learn", ["lsq", "pact"])
def test_learned_ranges_move_and_help(trained, learn):
    model, data, _ = trained
    config = QuantizeConfig(weight_bits=2, act_bits=2, learn_ranges=learn)
    ptq_acc = evaluate(apply(copy.deepcopy(model), config.model_copy(update={"learn_ranges": "none"}),
                             Context(train=data.train)), data.test)
    qat = apply(copy.deepcopy(model), config, Context(train=data.train))
    param = "step_size" if learn == "lsq" else "alpha"
    before = {n: float(getattr(m, param)) for n, m in qat.named_modules() if getattr(m, param, None) is not None}
    assert set(before) == {"0.input_quant", "3.input_quant", "5.input_quant"}
    run_recipe(qat, [FinetuneConfig(epochs=3, lr=1e-3)], Context(train=data.train), progress=False)
    after = {n: float(getattr(m, param)) for n, m in qat.named_modules() if getattr(m, param, None) is not None}
    assert any(abs(after[n] - before[n]) > 1e-4 for n in before)  # the ranges were learned
    assert evaluate(qat, data.test) > ptq_acc + 0.05


def test_group_wise_weights_share_a_range_per_group():
    from nntailor.compress.quant.arith import QSpec
    from nntailor.compress.quant.modules import quantize_weight

    torch.manual_seed(0)
    w = torch.randn(8, 16)
    w[4:] *= 10  # the second "head" has a much larger range
    spec = QSpec(bits=4, symmetric=True, narrow=True, group_size=4)
    q = quantize_weight(w, spec)
    for rows in (slice(0, 4), slice(4, 8)):  # one step size per group: max|w| of the group / 7
        step = float(w[rows].abs().max()) / 7
        assert torch.allclose(q[rows] / step, torch.round(q[rows] / step), atol=1e-4)
    per_tensor = quantize_weight(w, QSpec(bits=4, symmetric=True, narrow=True))
    assert (q[:4] - w[:4]).norm() < (per_tensor[:4] - w[:4]).norm()  # the small head keeps its resolution
    # a size that does not divide the rows leaves a shorter last group: rows 0-2, 3-5, 6-7
    q3 = quantize_weight(w, QSpec(bits=4, symmetric=True, narrow=True, group_size=3))
    for rows in (slice(0, 3), slice(3, 6), slice(6, 8)):
        step = float(w[rows].abs().max()) / 7
        assert torch.allclose(q3[rows] / step, torch.round(q3[rows] / step), atol=1e-4)


def test_group_wise_step(trained):
    model, data, float_acc = trained
    q = apply(copy.deepcopy(model), QuantizeConfig(group_size=2), Context(train=data.train))
    assert evaluate(q, data.test) >= float_acc - 0.01


def test_a_missing_per_channel_axis_names_the_layer():
    from nntailor.data import load_dataset

    data = load_dataset("digits")
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(UserError, match="per-channel axis 2 does not exist in layer '1' \\(weight of shape \\(10, 64"):
        apply(model, QuantizeConfig(axis=2), Context(train=data.train))
    per_input = apply(copy.deepcopy(model), QuantizeConfig(axis=1), Context(train=data.train))
    assert per_input[1].weight_spec.axis == 1


def test_log_domain_activations(trained):
    from nntailor.compress.quant.arith import QSpec, log2_quant

    # unsigned 3-bit: 7 exponents below the full scale 2^2 = 4, and zero
    x = torch.tensor([0.0, 0.03, 0.05, 0.3, 1.4, 3.0, 5.0])
    q = log2_quant(x, QSpec(bits=3, log2=True), top=torch.tensor(2.0), signed=False)
    assert q.tolist() == [0.0, 0.0, 2.0**-4, 0.25, 1.0, 4.0, 4.0]  # 0.03 rounds to 2^-5, below the lowest 2^-4
    model, data, float_acc = trained
    log = apply(copy.deepcopy(model), QuantizeConfig(scheme="log2", weight_bits=5, act_bits=4, log2_activations=True),
                Context(train=data.train))
    quantizer = next(m for m in log.modules() if isinstance(m, ActivationQuantizer) and not m.log2_signed)
    seen = []
    handle = quantizer.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    evaluate(log, data.test)
    handle.remove()
    values = torch.cat([s.flatten() for s in seen])
    nonzero = values[values != 0]
    assert torch.equal(torch.log2(nonzero), torch.round(torch.log2(nonzero)))  # every activation is 0 or 2^e
    assert evaluate(log, data.test) > float_acc - 0.1
    with pytest.raises(ValueError, match="log2_activations needs scheme: log2"):
        QuantizeConfig(log2_activations=True)
