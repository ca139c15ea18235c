"""QDQ ONNX export checked by onnx.checker and run in onnxruntime (the independent peer): shapes, the
IntModel's exact scales, zero points and int8 weights in the file, outputs within a small LSB bound of our
reference; and the op structure onnxruntime's own quantize_static gives for the same float model."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
from deploy_cases import KINDS, random_case
from onnx import numpy_helper

from nntailor import zoo
from nntailor.deploy.build import build_int_model
from nntailor.deploy.onnx import compare_onnx, onnx_model, run_onnx, to_onnx


def _int8_inputs(model, rng: np.random.Generator, n: int) -> list[np.ndarray]:
    return [rng.integers(-128, 128, (n,) + model.tensors[name].shape[1:]).astype(np.int8) for name in model.inputs]


@pytest.mark.parametrize("kind", KINDS)
def test_random_layers_stay_within_one_lsb_of_the_reference(kind: str) -> None:
    # measured over 20 random layers of each kind: at most 1 LSB (float requantization rounds half to even
    # where TFLM's fixed point rounds half away from zero); data movement ops must be exact
    rng = np.random.default_rng(7)
    for _ in range(12):
        model = random_case(rng, kind)
        found = compare_onnx(model, _int8_inputs(model, rng, 3))
        out = found["outputs"]["y"]
        assert out["values"] == 3 * int(np.prod(model.tensors["y"].shape[1:]))
        bound = 0 if kind in ("concat", "pad", "reshape", "maxpool") else 1
        assert out["max_lsb"] <= bound, (kind, out)
        assert found["layers"]["layer"]["max_lsb"] <= bound


def test_lenet5_in_onnxruntime_is_close_to_the_reference_layer_by_layer() -> None:
    torch.manual_seed(0)
    model = zoo.get("lenet5").eval()
    x = torch.randn(24, 1, 28, 28)
    int_model = build_int_model(model, x, (1, 1, 28, 28))
    q = int_model.quantize_input(x.numpy().transpose(0, 2, 3, 1))
    buf = to_onnx(int_model)
    (out,) = run_onnx(buf, [q])
    assert out.dtype == np.int8 and out.shape == (24, 10)
    found = compare_onnx(int_model, q)
    assert set(found["layers"]) == {op.name for op in int_model.ops}
    total = found["outputs"][int_model.outputs[0]]
    assert total["values"] == 240 and total["max_lsb"] <= 2, total
    assert total["differ"] <= 0.5 * total["values"]  # measured 97 of 320 on random weights
    for name, layer in found["layers"].items():
        assert layer["max_lsb"] <= 1, (name, layer)
        assert layer["differ"] <= 0.02 * layer["values"], (name, layer)  # measured at most 0.4% per layer
    # the reference itself is not what onnxruntime gives everywhere: the comparison can fail
    assert any(layer["differ"] for layer in found["layers"].values())


def test_the_file_holds_the_int_models_exact_quantization() -> None:
    rng = np.random.default_rng(3)
    model = random_case(rng, "conv")
    proto = onnx.load_from_string(to_onnx(model))
    onnx.checker.check_model(proto, full_check=True)
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    (op,) = model.ops
    np.testing.assert_array_equal(inits["layer/weight"], op.weight.transpose(0, 3, 1, 2))
    assert inits["layer/weight"].dtype == np.int8
    np.testing.assert_array_equal(inits["layer/weight_scale"], np.asarray(op.weight_scale, np.float32))
    np.testing.assert_array_equal(inits["layer/bias"], op.bias)
    assert inits["layer/bias"].dtype == np.int32
    s_in = np.float32(model.tensors["x"].scale)
    np.testing.assert_array_equal(inits["layer/bias_scale"], s_in * np.asarray(op.weight_scale, np.float32))
    dq = [n for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == "layer/weight"]
    assert [a.i for a in dq[0].attribute if a.name == "axis"] == [0]
    q = next(n for n in proto.graph.node if n.op_type == "QuantizeLinear" and n.output[0] == "y")
    assert inits[q.input[1]] == np.float32(model.tensors["y"].scale)
    assert inits[q.input[2]] == model.tensors["y"].zero_point
    # the graph reads and writes NHWC int8, as the .tflite does
    assert [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == \
        ["N", *model.tensors["x"].shape[1:]]


class _Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.fc = nn.Linear(4 * 6 * 6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.dw(torch.relu(self.conv(x))))
        return self.fc(x.flatten(1))


def _compute_ops(proto: onnx.ModelProto) -> list[str]:
    skip = {"QuantizeLinear", "DequantizeLinear", "Transpose", "Flatten", "Reshape", "Relu", "Clip"}
    return [n.op_type for n in proto.graph.node if n.op_type not in skip]


def _weight_dq(proto: onnx.ModelProto) -> list[tuple[int, int, int | None]]:
    """(weight dtype, bias dtype, axis) of each Conv/Gemm's DequantizeLinear inputs."""
    inits = {t.name: t for t in proto.graph.initializer}
    producer = {out: n for n in proto.graph.node for out in n.output}
    found = []
    for node in proto.graph.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        w, b = producer[node.input[1]], producer[node.input[2]]
        axis = next((a.i for a in w.attribute if a.name == "axis"), None)
        found.append((inits[w.input[0]].data_type, inits[b.input[0]].data_type, axis))
    return found


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter: no onnxscript needed
def test_the_op_structure_matches_onnxruntimes_own_qdq_quantizer(tmp_path) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    torch.manual_seed(0)
    model = _Small().eval()
    x = torch.randn(16, 2, 6, 6)
    float_path, q_path = tmp_path / "float.onnx", tmp_path / "qdq.onnx"
    torch.onnx.export(model, (x[:1],), str(float_path), input_names=["x"], dynamo=False, opset_version=17)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"x": x[i:i + 1].numpy()} for i in range(len(x))])

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(float_path), str(q_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    theirs = onnx.load(str(q_path))
    ours = onnx_model(build_int_model(model, x, (1, 2, 6, 6)))
    assert _compute_ops(ours) == _compute_ops(theirs) == ["Conv", "Conv", "Gemm"]
    int8, int32 = onnx.TensorProto.INT8, onnx.TensorProto.INT32
    # both: int8 weights dequantized per output channel along axis 0, int32 biases
    assert [(w, b) for w, b, _ in _weight_dq(theirs)] == [(int8, int32)] * 3
    assert _weight_dq(ours) == [(int8, int32, 0)] * 3
    assert _weight_dq(theirs) == _weight_dq(ours)
