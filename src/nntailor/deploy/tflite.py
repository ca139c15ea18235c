""".tflite export of an IntModel, built with the flatbuffer builder the tflite-micro wheel ships (model_editor),
and the wheel's TFLM interpreter as the independent peer that checks it.

Tensors keep the IntModel's float32 scales and zero points, so TFLM's Prepare recomputes the very multipliers,
shifts and clamps that ``IntModel.prepare`` computed; the outputs must then agree bit for bit.
"""

from __future__ import annotations

import os
import re
import tempfile

import numpy as np

from nntailor.deploy.intmodel import IntModel, IntOp
from nntailor.errors import UserError

_ARENA_BYTES = 8 << 20  # generous for the check: TFLM's own plan is read back from print_allocations


def _schema():
    from tflite_micro.tensorflow.lite.micro.compression import model_editor as me
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    return me, fb


def _activation(fb, op: IntOp) -> int:
    return {"none": fb.ActivationFunctionType.NONE, "relu": fb.ActivationFunctionType.RELU,
            "relu6": fb.ActivationFunctionType.RELU6}[op.activation]


def _padding(fb, op: IntOp) -> int:
    return fb.Padding.SAME if op.padding == "same" else fb.Padding.VALID


def _options(fb, op: IntOp):
    """(builtin opcode, options type, options object) of one op."""
    act = _activation(fb, op)
    (sh, sw), (dh, dw) = op.stride, op.dilation
    if op.kind == "conv":
        return (fb.BuiltinOperator.CONV_2D, fb.BuiltinOptions.Conv2DOptions,
                fb.Conv2DOptionsT(padding=_padding(fb, op), strideW=sw, strideH=sh, fusedActivationFunction=act,
                                  dilationWFactor=dw, dilationHFactor=dh))
    if op.kind == "depthwise":
        return (fb.BuiltinOperator.DEPTHWISE_CONV_2D, fb.BuiltinOptions.DepthwiseConv2DOptions,
                fb.DepthwiseConv2DOptionsT(padding=_padding(fb, op), strideW=sw, strideH=sh,
                                           depthMultiplier=op.depth_multiplier, fusedActivationFunction=act,
                                           dilationWFactor=dw, dilationHFactor=dh))
    if op.kind == "fully_connected":
        return (fb.BuiltinOperator.FULLY_CONNECTED, fb.BuiltinOptions.FullyConnectedOptions,
                fb.FullyConnectedOptionsT(fusedActivationFunction=act))
    if op.kind in ("avgpool", "maxpool"):
        code = fb.BuiltinOperator.AVERAGE_POOL_2D if op.kind == "avgpool" else fb.BuiltinOperator.MAX_POOL_2D
        return (code, fb.BuiltinOptions.Pool2DOptions,
                fb.Pool2DOptionsT(padding=_padding(fb, op), strideW=sw, strideH=sh, filterWidth=op.filter[1],
                                  filterHeight=op.filter[0], fusedActivationFunction=act))
    if op.kind == "add":
        return fb.BuiltinOperator.ADD, fb.BuiltinOptions.AddOptions, fb.AddOptionsT(fusedActivationFunction=act)
    if op.kind == "mul":
        return fb.BuiltinOperator.MUL, fb.BuiltinOptions.MulOptions, fb.MulOptionsT(fusedActivationFunction=act)
    if op.kind == "concat":
        return (fb.BuiltinOperator.CONCATENATION, fb.BuiltinOptions.ConcatenationOptions,
                fb.ConcatenationOptionsT(axis=op.axis, fusedActivationFunction=act))
    if op.kind == "softmax":
        return fb.BuiltinOperator.SOFTMAX, fb.BuiltinOptions.SoftmaxOptions, fb.SoftmaxOptionsT(beta=1.0)
    if op.kind == "logistic":
        return fb.BuiltinOperator.LOGISTIC, fb.BuiltinOptions.NONE, None
    if op.kind == "mean":
        return fb.BuiltinOperator.MEAN, fb.BuiltinOptions.ReducerOptions, fb.ReducerOptionsT(keepDims=op.keep_dims)
    if op.kind == "pad" and op.pad_value is not None:
        return fb.BuiltinOperator.PADV2, fb.BuiltinOptions.PadV2Options, fb.PadV2OptionsT()
    if op.kind == "pad":
        return fb.BuiltinOperator.PAD, fb.BuiltinOptions.PadOptions, fb.PadOptionsT()
    if op.kind == "reshape":
        return fb.BuiltinOperator.RESHAPE, fb.BuiltinOptions.ReshapeOptions, fb.ReshapeOptionsT()
    raise UserError(f"{op.name}: no .tflite mapping for {op.kind!r}")


def to_tflite(model: IntModel) -> bytes:
    """The .tflite flatbuffer of ``model`` (one subgraph, int8 activations NHWC, batch 1)."""
    me, fb = _schema()
    tensors = {}
    for name, t in model.tensors.items():
        shape = (1,) + tuple(t.shape[1:])
        tensors[name] = me.Tensor(shape=shape, dtype=fb.TensorType.INT8, name=name,
                                  quantization=me.Quantization(scales=[t.scale], zero_points=[t.zero_point]))
    graph = me.Subgraph(name=model.name)
    codes: dict[int, me.OperatorCode] = {}
    for op in model.ops:
        code, options_type, options = _options(fb, op)
        inputs = [tensors[name] for name in op.inputs]
        if op.kind in ("conv", "depthwise", "fully_connected"):
            scales = [float(s) for s in np.asarray(op.weight_scale, np.float32).reshape(-1)]
            axis = 3 if op.kind == "depthwise" else 0
            inputs.append(me.Tensor(shape=op.weight.shape, dtype=fb.TensorType.INT8, name=f"{op.name}/weight",
                                    data=np.ascontiguousarray(op.weight, np.int8),
                                    quantization=me.Quantization(scales=scales, zero_points=[0] * len(scales),
                                                                 axis=axis)))
            s_in = model.tensors[op.inputs[0]].scale
            if op.bias is not None:
                bias_scales = [float(np.float64(s_in) * s) for s in scales]
                inputs.append(me.Tensor(shape=op.bias.shape, dtype=fb.TensorType.INT32, name=f"{op.name}/bias",
                                        data=np.ascontiguousarray(op.bias, np.int32),
                                        quantization=me.Quantization(scales=bias_scales,
                                                                     zero_points=[0] * len(scales), axis=0)))
            else:
                inputs.append(None)
        elif op.kind == "pad":
            paddings = np.array(op.paddings, np.int32).reshape(-1, 2)
            inputs.append(me.Tensor(shape=paddings.shape, dtype=fb.TensorType.INT32, name=f"{op.name}/paddings",
                                    data=paddings))
            if op.pad_value is not None:  # PADV2's constant, quantized as the output (pad.cc checks it)
                t = model.tensors[op.output]
                inputs.append(me.Tensor(shape=(1,), dtype=fb.TensorType.INT8, name=f"{op.name}/value",
                                        data=np.array([op.pad_value], np.int8),
                                        quantization=me.Quantization(scales=[t.scale], zero_points=[t.zero_point])))
        elif op.kind == "mean":
            axes = np.array(op.axes, np.int32)
            inputs.append(me.Tensor(shape=axes.shape, dtype=fb.TensorType.INT32, name=f"{op.name}/axes", data=axes))
        elif op.kind == "reshape":
            shape = np.array((1,) + tuple(model.tensors[op.output].shape[1:]), np.int32)
            inputs.append(me.Tensor(shape=shape.shape, dtype=fb.TensorType.INT32, name=f"{op.name}/shape",
                                    data=shape))
            options.newShape = [int(d) for d in shape]
        operator = graph.add_operator(opcode=code, inputs=inputs, outputs=[tensors[op.output]])
        if options is not None:
            operator._fb.builtinOptionsType = options_type
            operator._fb.builtinOptions = options
        if code not in codes:
            opcode = me.OperatorCode(builtin_code=code)
            # model_editor leaves deprecatedBuiltinCode 0; readers older than the extended codes read that field
            opcode._fb.deprecatedBuiltinCode = min(int(code), 127)
            codes[code] = opcode
    graph.inputs = [tensors[name] for name in model.inputs]
    graph.outputs = [tensors[name] for name in model.outputs]
    graph.tensors = list(tensors.values())
    flat = me.Model(subgraphs=[graph], operator_codes=list(codes.values()), description="nntailor int8")
    return bytes(flat.build())


def tflm_interpreter(buf: bytes, arena_size: int = _ARENA_BYTES, preserve_all: bool = False):
    from tflite_micro.python.tflite_micro import runtime

    config = (runtime.InterpreterConfig.kPreserveAllTensors if preserve_all
              else runtime.InterpreterConfig.kAllocationRecording)
    return runtime.Interpreter.from_bytes(buf, arena_size=arena_size, intrepreter_config=config)


def run_tflm(buf: bytes, inputs: list[np.ndarray], n_outputs: int = 1,
             arena_size: int = _ARENA_BYTES) -> list[np.ndarray]:
    """Outputs of the wheel's TFLM interpreter for each sample of the (batched, int8, NHWC) inputs."""
    interpreter = tflm_interpreter(buf, arena_size)
    batch = len(inputs[0])
    outputs: list[list[np.ndarray]] = []
    for i in range(batch):
        for j, x in enumerate(inputs):
            interpreter.set_input(np.ascontiguousarray(x[i:i + 1]), j)
        interpreter.invoke()
        outputs.append([np.array(interpreter.get_output(k)) for k in range(n_outputs)])
    return [np.concatenate([s[k] for s in outputs]) for k in range(n_outputs)]


def tflm_tensors(buf: bytes, model: IntModel, inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Every activation tensor TFLM computed for one sample (batch 1), by the IntModel's tensor names: the
    per-layer check. ``to_tflite`` writes the IntModel's tensors first, in order, so index i is the i-th name."""
    interpreter = tflm_interpreter(buf, preserve_all=True)
    for j, x in enumerate(inputs):
        interpreter.set_input(np.ascontiguousarray(x), j)
    interpreter.invoke()
    found = {}
    for i, name in enumerate(model.tensors):
        found[name] = np.array(interpreter.GetTensor(i, 0)["tensor_data"]).reshape(
            (1,) + tuple(model.tensors[name].shape[1:]))
    return found


def tflm_arena(buf: bytes) -> dict[str, int]:
    """TFLM's arena use after one invoke, from ``print_allocations`` (written to the C-level stderr)."""
    interpreter = tflm_interpreter(buf)
    details = interpreter.get_input_details(0)
    interpreter.set_input(np.zeros(details["shape"], np.int8), 0)
    interpreter.invoke()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            interpreter.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        text = capture.read().decode(errors="replace")
    found = {}
    for key in ("total", "head", "tail"):
        pattern = rf"Arena allocation {key} (\d+) bytes"
        match = re.search(pattern, text)
        if match:
            found[key] = int(match.group(1))
    if "head" not in found or "tail" not in found:
        raise RuntimeError(f"print_allocations gave no head usage: {text[:200]!r}")
    return found
