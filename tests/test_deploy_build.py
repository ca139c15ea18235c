"""IntModel from torch models: whole zoo models PTQ-calibrated through the compress quantize step, bit-exact
against TFLM (output and every layer), tracking the float model; pads absorbed or explicit; ranges kept from a
model compress quantized; unsupported ops and bad calibration data named before anything is written."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn as nn

from nntailor import zoo
from nntailor.compress.base import Context
from nntailor.compress.quant.ptq import QuantizeConfig, quantize_model
from nntailor.cost.fusion import fused_layers
from nntailor.deploy.build import build_int_model, prepare_module, without_identities
from nntailor.deploy.tflite import run_tflm, tflm_tensors, to_tflite
from nntailor.errors import UserError
from nntailor.graph.capture import capture


def _randomize_bn(model: nn.Module, seed: int) -> nn.Module:
    """BN statistics away from (0, 1), so the folding matters."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return model.eval()


def _nhwc(x: torch.Tensor) -> np.ndarray:
    x = x.numpy()
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def _check_against_tflm(model: nn.Module, shape: tuple[int, ...], calib: int = 8, samples: int = 2,
                        seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    calibration = torch.randn((calib,) + tuple(shape[1:]))
    int_model = build_int_model(model, calibration, shape, batch_size=calib, **kwargs)
    buf = to_tflite(int_model)
    x = torch.randn((samples,) + tuple(shape[1:]))
    q = int_model.quantize_input(_nhwc(x))
    values = int_model.run(q)
    ours = values[int_model.outputs[0]]
    theirs = run_tflm(buf, [q])[0]
    assert ours.shape == theirs.shape
    assert (ours == theirs).all(), f"{(ours != theirs).sum()} of {ours.size} outputs differ from TFLM"
    return int_model, buf, x, q, values


@pytest.mark.parametrize("name", ["lenet5", "lenet300", "ds_cnn", "resnet8", "vww_mobilenet", "ad_autoencoder"])
def test_zoo_models_are_bit_exact_against_tflm(name: str) -> None:
    torch.manual_seed(1)
    model = _randomize_bn(zoo.get(name), 2)
    shape = zoo.input_shape(name)
    int_model, buf, x, q, values = _check_against_tflm(model, shape)
    # every layer, not only the output: TFLM's intermediate tensors by name (one sample)
    theirs = tflm_tensors(buf, int_model, [q[:1]])
    for tensor, value in theirs.items():
        assert (values[tensor][:1] == value).all(), f"layer {tensor} differs from TFLM"
    # the int8 model tracks the float one (a loose bound: random weights, 16 calibration samples)
    with torch.no_grad():
        expected = model(x).numpy().reshape(len(x), -1)
    got = int_model.dequantize(values[int_model.outputs[0]], int_model.outputs[0]).reshape(len(x), -1)
    cosine = (expected * got).sum(1) / np.linalg.norm(expected, axis=1) / np.linalg.norm(got, axis=1)
    assert cosine.min() > 0.95, cosine


def test_layer_outputs_are_named_after_the_module_path() -> None:
    torch.manual_seed(0)
    int_model, *_ , values = _check_against_tflm(_randomize_bn(zoo.get("ds_cnn"), 0), zoo.input_shape("ds_cnn"))
    kinds = {op.name: op.kind for op in int_model.ops}
    assert kinds["features.0.conv"] == "conv" and kinds["features.1.dw.conv"] == "depthwise"
    assert kinds["classifier"] == "fully_connected"
    assert values["features.1.pw.conv"].shape == (2, 25, 5, 64)
    # BN and ReLU fused: the conv carries the ReLU clamp, no op of their own
    assert {op.activation for op in int_model.ops if op.kind in ("conv", "depthwise")} == {"relu"}
    assert not any(".bn" in op.name or ".relu" in op.name for op in int_model.ops)


class _PadConv(nn.Module):
    """The DS-CNN stem: TF 'same' for a 10x4 stride-2 conv on 49x10 is 4/5 rows and 1/1 columns."""

    def __init__(self) -> None:
        super().__init__()
        self.pad = nn.ZeroPad2d((1, 1, 4, 5))
        self.conv = nn.Conv2d(1, 8, (10, 4), stride=2)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(8 * 25 * 5, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.relu(self.conv(self.pad(x))), 1))


def test_a_pad_folded_by_fused_layers_becomes_same_padding() -> None:
    torch.manual_seed(0)
    model, shape = _PadConv().eval(), (1, 1, 49, 10)
    calibration = torch.randn(16, 1, 49, 10)
    # cost.fusion folds this TF-'same'-shaped zero pad into the conv (fused[pad] == conv): one SAME conv
    absorbed = build_int_model(model, calibration, shape)
    assert [op.kind for op in absorbed.ops][0] == "conv" and absorbed.ops[0].padding == "same"
    # without the fold: an explicit PAD with the zero point, then a VALID conv
    graph = without_identities(capture(prepare_module(model, torch.utils.data.TensorDataset(
        calibration, torch.zeros(16))), shape))
    fused = {k: v for k, v in fused_layers(graph).items() if k != "pad"}
    explicit = build_int_model(model, calibration, shape, fused=fused)
    assert [op.kind for op in explicit.ops][:2] == ["pad", "conv"]
    assert explicit.ops[1].padding == "valid"
    x = absorbed.quantize_input(_nhwc(torch.randn(4, 1, 49, 10)))
    a = absorbed.run(x)[absorbed.outputs[0]]
    assert (a == run_tflm(to_tflite(absorbed), [x])[0]).all()
    e = explicit.run(x)[explicit.outputs[0]]
    assert (e == run_tflm(to_tflite(explicit), [x])[0]).all()
    assert (a == e).all()  # a padded tap at the zero point is a skipped tap


def test_conv_padding_that_is_not_tf_same_gets_an_explicit_pad() -> None:
    # stride 2, pad 1 on 8x8: TF 'same' pads 0 before and 1 after, torch 1 and 1
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3, stride=2, padding=1), relu=nn.ReLU(),
                                      same=nn.Conv2d(4, 4, 3, stride=1, padding=1))).eval()
    int_model, *_ = _check_against_tflm(model, (1, 3, 8, 8))
    assert [(op.kind, op.padding) for op in int_model.ops] == [("pad", "valid"), ("conv", "valid"),
                                                               ("conv", "same")]
    assert int_model.ops[0].paddings == ((0, 0), (1, 1), (1, 1), (0, 0))


class _Branches(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 1)
        self.pool = nn.MaxPool2d(2)
        self.avg = nn.AvgPool2d(2)
        self.head = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([self.pool(self.a(x)), self.avg(self.b(x))], 1)
        z = y * y + y
        return self.fc(torch.flatten(self.head(z), 1) + z.mean((2, 3)))


def test_concat_mul_add_mean_and_pools_are_bit_exact_against_tflm() -> None:
    int_model, *_ = _check_against_tflm(_Branches().eval(), (1, 3, 8, 8))
    assert {"concat", "mul", "add", "maxpool", "avgpool", "mean"} <= {op.kind for op in int_model.ops}
    cat = next(op for op in int_model.ops if op.kind == "concat")
    scales = {(int_model.tensors[t].scale, int_model.tensors[t].zero_point) for t in cat.inputs + [cat.output]}
    assert len(scales) == 1  # TFLite's int8 concatenation does not rescale: one shared range


def test_a_model_compress_quantized_keeps_its_ranges() -> None:
    torch.manual_seed(0)
    model = _randomize_bn(zoo.get("ds_cnn"), 3)
    shape = zoo.input_shape("ds_cnn")
    calibration = torch.randn(16, *shape[1:])
    data = torch.utils.data.TensorDataset(calibration, torch.zeros(16))
    quantized = quantize_model(model, QuantizeConfig(calibration="percentile", percentile=99.0),
                               Context(train=data))
    int_model = build_int_model(quantized, calibration, shape)
    first = quantized.features[0].conv.input_quant
    x = int_model.tensors[int_model.inputs[0]]
    assert x.scale == pytest.approx(float(first.scale), rel=0, abs=0)
    assert x.zero_point == int(first.zero_point)
    pw = quantized.features[2].pw.conv.input_quant  # reads the ReLU output of features.2.dw
    t = int_model.tensors["features.2.dw.conv"]
    assert (t.scale, t.zero_point) == (float(pw.scale), int(pw.zero_point))
    q = int_model.quantize_input(_nhwc(torch.randn(2, *shape[1:])))
    assert (int_model.run(q)[int_model.outputs[0]] == run_tflm(to_tflite(int_model), [q])[0]).all()


def test_single_rounding_stays_within_an_lsb_on_average() -> None:
    torch.manual_seed(0)
    int_model, _, _, q, values = _check_against_tflm(_randomize_bn(zoo.get("resnet8"), 0), zoo.input_shape("resnet8"))
    single = int_model.run(q, rounding="single")[int_model.outputs[0]]
    double = values[int_model.outputs[0]]
    assert np.abs(single.astype(int) - double).mean() < 1.0


@pytest.mark.parametrize(("module", "match"), [
    (nn.GELU(), r"layer 'act' \(GELU, op gelu\)"),
    (nn.Tanh(), r"layer 'act' \(Tanh, op tanh\) has no int8 TFLite kernel"),
    (nn.Softmax(dim=0), r"layer 'act' \(Softmax.*over the features"),
])
def test_an_unsupported_op_is_named_with_its_module_path(module: nn.Module, match: str) -> None:
    model = nn.Sequential(OrderedDict(fc=nn.Linear(4, 4), act=module))
    with pytest.raises(UserError, match=match):
        build_int_model(model, torch.randn(8, 4), (1, 4))


@pytest.mark.parametrize(("data", "match"), [
    (torch.zeros(0, 4), "non-empty"),
    (torch.full((4, 4), float("nan")), "NaN"),
    (torch.zeros(4, 4, dtype=torch.int64), "float32"),
    (torch.zeros(4, 5), r"float32 of shape \(4,\)"),
])
def test_bad_calibration_data_is_a_user_error(data: torch.Tensor, match: str) -> None:
    with pytest.raises(UserError, match=match):
        build_int_model(nn.Linear(4, 2), data, (1, 4))


def test_a_layer_not_at_8_bits_is_refused() -> None:
    data = torch.utils.data.TensorDataset(torch.randn(8, 4), torch.zeros(8))
    model = quantize_model(nn.Sequential(nn.Linear(4, 4)), QuantizeConfig(weight_bits=4), Context(train=data))
    with pytest.raises(UserError, match="layer '0': weights must be int8"):
        build_int_model(model, torch.randn(8, 4), (1, 4))


def test_a_bias_beyond_int32_at_its_scale_is_named() -> None:
    model = nn.Sequential(OrderedDict(fc=nn.Linear(4, 2)))
    with torch.no_grad():
        model.fc.weight.fill_(1e-6)
        model.fc.bias.fill_(1e4)
    with pytest.raises(UserError, match=r"fc: bias of output channel 0 .* beyond int32"):
        build_int_model(model, torch.randn(8, 4) * 1e-3, (1, 4))


def test_a_classifier_ending_in_softmax_is_bit_exact_against_tflm() -> None:
    model = nn.Sequential(OrderedDict(fc=nn.Linear(16, 10), softmax=nn.Softmax(dim=1))).eval()
    int_model, *_, values = _check_against_tflm(model, (1, 16), samples=4)
    assert int_model.ops[-1].kind == "softmax"
    out = int_model.tensors[int_model.outputs[0]]
    assert (out.scale, out.zero_point) == (1.0 / 256, -128)
    probabilities = int_model.dequantize(values[int_model.outputs[0]], int_model.outputs[0])
    assert np.abs(probabilities.sum(1) - 1).max() < 0.05


def test_an_autoencoder_ending_in_sigmoid_is_bit_exact_against_tflm() -> None:
    model = nn.Sequential(OrderedDict(enc=nn.Linear(16, 4), relu=nn.ReLU(), dec=nn.Linear(4, 16),
                                      out=nn.Sigmoid())).eval()
    int_model, _, x, _, values = _check_against_tflm(model, (1, 16), samples=4)
    assert [op.kind for op in int_model.ops] == ["fully_connected", "fully_connected", "logistic"]
    got = int_model.dequantize(values[int_model.outputs[0]], int_model.outputs[0])
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.abs(got - expected).max() < 0.05


def test_a_learned_lsq_step_is_the_scale_deployed() -> None:
    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(16, 8), torch.zeros(16))
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(8, 8), relu=nn.ReLU(), fc2=nn.Linear(8, 3)))
    quantized = quantize_model(model, QuantizeConfig(learn_ranges="lsq"), Context(train=data))
    with torch.no_grad():  # as if QAT had moved the step away from the calibrated scale
        quantized.fc2.input_quant.step_size.mul_(1.25)
    int_model, *_ = _check_against_tflm(quantized, (1, 8))
    t = int_model.tensors["fc1"]
    assert t.scale == float(np.float32(quantized.fc2.input_quant.step_size.item()))
    assert t.scale != float(quantized.fc2.input_quant.scale)


@pytest.mark.parametrize(("pool", "size", "pads", "out"), [
    # ResNet's stem pool: torch pads 1 before, TF 'same' 0 (the last window needs nothing after)
    (nn.MaxPool2d(3, 2, padding=1), 8, ((0, 0), (1, 0), (1, 0), (0, 0)), 4),
    # ceil_mode: a last window hanging 2 over the edge, which neither 'same' (1 before) nor 'valid' is
    (nn.MaxPool2d(3, 3, ceil_mode=True), 7, ((0, 0), (0, 2), (0, 2), (0, 0)), 3),
    # SqueezeNet's ceil_mode on an even input is exactly TF 'same': no pad
    (nn.MaxPool2d(3, 2, ceil_mode=True), 8, None, 4),
])
def test_max_pool_padding_torch_style_becomes_padv2_at_int8_min(pool: nn.Module, size: int, pads, out: int) -> None:
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3, padding=1), pool=pool)).eval()
    int_model, *_ = _check_against_tflm(model, (1, 3, size, size))
    found = [(op.paddings, op.pad_value) for op in int_model.ops if op.kind == "pad"]
    assert found == ([(pads, -128)] if pads else [])
    assert int_model.ops[-1].padding == ("valid" if pads else "same")
    assert int_model.tensors[int_model.outputs[0]].shape[1:3] == (out, out)
