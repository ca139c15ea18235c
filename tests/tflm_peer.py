"""A peer to check TFLM arena figures against: small int8 .tflite models built with the tflite-micro wheel's
model_editor and run in its interpreter, whose ``print_allocations()`` reports the arena head and tail.

The builder writes NHWC tensors, per-channel conv weights (axis 0, depthwise axis 3), int32 biases, as the
TFLite int8 spec has them; the values are ones and zeros (arena sizes do not depend on them).
"""

from __future__ import annotations

import os
import re
import tempfile

import flatbuffers
import numpy as np
from tflite_micro.python.tflite_micro import runtime
from tflite_micro.tensorflow.lite.micro.compression import model_editor as me
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as tfl

I8, I32, F32 = tfl.TensorType.INT8, tfl.TensorType.INT32, tfl.TensorType.FLOAT32
OPS = tfl.BuiltinOperator


ACT_SCALE, WEIGHT_SCALE = 0.05, 0.01
BIAS_SCALE = ACT_SCALE * WEIGHT_SCALE  # the int8 spec: s_in * s_w (TFLM checks it for per-tensor layers)


def _quant(n: int | None, axis: int = 0, scale: float = WEIGHT_SCALE) -> me.Quantization:
    """Per-tensor activation quantization for ``n`` None, else ``n`` per-channel scales along ``axis``."""
    return me.Quantization(ACT_SCALE, 0) if n is None else me.Quantization([scale] * n, [0] * n, axis)


class TfliteBuilder:
    """One subgraph, built op by op; ``cur`` is the tensor the next op reads."""

    def __init__(self, shape: tuple[int, ...], dtype: int = I8) -> None:
        self.sg = me.Subgraph()
        self.dtype = dtype  # I8, or F32 for a float model (no quantization anywhere)
        self.first = self.cur = self._tensor(shape, dtype)
        self.sg.inputs = [self.first]

    def _tensor(self, shape, dtype=I8, data=None, quantization=None) -> me.Tensor:
        if quantization is None and dtype == I8 and data is None:
            quantization = _quant(None)
        tensor = me.Tensor(shape=tuple(shape), dtype=dtype, data=data, quantization=quantization)
        self.sg.tensors.append(tensor)
        return tensor

    def _op(self, code, inputs, out_shape, options=None, options_type=None, dtype=None) -> me.Tensor:
        out = self._tensor(out_shape, self.dtype if dtype is None else dtype)
        op = me.Operator(opcode=code, inputs=inputs, outputs=[out])
        if options is not None:
            op._fb.builtinOptionsType, op._fb.builtinOptions = options_type, options
        self.sg.operators.append(op)
        self.cur = out
        return out

    def conv(self, out_channels: int, k: int, stride: int = 1, depthwise: bool = False) -> me.Tensor:
        """SAME padding, fused ReLU."""
        n, h, w, cin = self.cur.shape
        ch = cin if depthwise else out_channels
        shape = (1, k, k, ch) if depthwise else (ch, k, k, cin)
        if self.dtype == F32:
            weights = self._tensor(shape, F32, np.ones(shape, np.float32))
            bias = self._tensor((ch,), F32, np.zeros(ch, np.float32))
        else:
            weights = self._tensor(shape, I8, np.ones(shape, np.int8), _quant(ch, 3 if depthwise else 0))
            bias = self._tensor((ch,), I32, np.zeros(ch, np.int32), _quant(ch, scale=BIAS_SCALE))
        if depthwise:
            opt, kind, code = tfl.DepthwiseConv2DOptionsT(), tfl.BuiltinOptions.DepthwiseConv2DOptions, \
                OPS.DEPTHWISE_CONV_2D
            opt.depthMultiplier = 1
        else:
            opt, kind, code = tfl.Conv2DOptionsT(), tfl.BuiltinOptions.Conv2DOptions, OPS.CONV_2D
        opt.padding, opt.strideW, opt.strideH = tfl.Padding.SAME, stride, stride
        opt.fusedActivationFunction = tfl.ActivationFunctionType.RELU
        return self._op(code, [self.cur, weights, bias], (n, -(-h // stride), -(-w // stride), ch), opt, kind)

    def fully_connected(self, out: int, per_channel: bool = True) -> me.Tensor:
        n_in = int(np.prod(self.cur.shape[1:]))
        weights = self._tensor((out, n_in), I8, np.ones((out, n_in), np.int8),
                               _quant(out) if per_channel else me.Quantization(WEIGHT_SCALE, 0))
        bias = self._tensor((out,), I32, np.zeros(out, np.int32),
                            _quant(out, scale=BIAS_SCALE) if per_channel else me.Quantization(BIAS_SCALE, 0))
        return self._op(OPS.FULLY_CONNECTED, [self.cur, weights, bias], (1, out), tfl.FullyConnectedOptionsT(),
                        tfl.BuiltinOptions.FullyConnectedOptions)

    def avg_pool(self, k: int) -> me.Tensor:
        n, h, w, c = self.cur.shape
        opt = tfl.Pool2DOptionsT()
        opt.padding, opt.strideW, opt.strideH, opt.filterWidth, opt.filterHeight = tfl.Padding.VALID, k, k, k, k
        return self._op(OPS.AVERAGE_POOL_2D, [self.cur], (n, h // k, w // k, c), opt, tfl.BuiltinOptions.Pool2DOptions)

    def add(self, other: me.Tensor) -> me.Tensor:
        return self._op(OPS.ADD, [self.cur, other], self.cur.shape, tfl.AddOptionsT(), tfl.BuiltinOptions.AddOptions)

    def reshape(self, shape: tuple[int, ...]) -> me.Tensor:
        new_shape = self._tensor((len(shape),), I32, np.array(shape, np.int32))
        opt = tfl.ReshapeOptionsT()
        opt.newShape = list(shape)
        return self._op(OPS.RESHAPE, [self.cur, new_shape], shape, opt, tfl.BuiltinOptions.ReshapeOptions)

    def softmax(self) -> me.Tensor:
        opt = tfl.SoftmaxOptionsT()
        opt.beta = 1.0
        out = self._op(OPS.SOFTMAX, [self.cur], self.cur.shape, opt, tfl.BuiltinOptions.SoftmaxOptions)
        out.quantization = me.Quantization(1 / 256, -128)  # the int8 spec's softmax output
        return out

    def float_io(self) -> None:
        """Float input and output: a QUANTIZE in front, a DEQUANTIZE at the end."""
        x = me.Tensor(shape=self.first.shape, dtype=F32)
        self.sg.tensors.insert(0, x)
        self.sg.operators.insert(0, me.Operator(opcode=OPS.QUANTIZE, inputs=[x], outputs=[self.first]))
        self.sg.inputs = [x]
        self._op(OPS.DEQUANTIZE, [self.cur], self.cur.shape, dtype=F32)

    def build(self) -> bytes:
        self.sg.outputs = [self.cur]
        model = tfl.ModelT.InitFromPackedBuf(bytes(me.Model(subgraphs=[self.sg]).build()), 0)
        for code in model.operatorCodes:  # REFERENCES.md: model_editor leaves deprecatedBuiltinCode at 0
            code.deprecatedBuiltinCode = min(code.builtinCode, 127)
        builder = flatbuffers.Builder(0)
        builder.Finish(model.Pack(builder), b"TFL3")
        return bytes(builder.Output())


def tflm_arena(model: bytes, arena_size: int = 1 << 20) -> tuple[int, int]:
    """(head, tail) bytes as the TFLM interpreter allocates them; its report goes to file descriptor 2."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            runtime.Interpreter.from_bytes(model, arena_size=arena_size).print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        text = log.read().decode()
    head = re.search(r"allocation head (\d+) bytes", text)
    tail = re.search(r"allocation tail (\d+) bytes", text)
    assert head and tail, text
    return int(head.group(1)), int(tail.group(1))
