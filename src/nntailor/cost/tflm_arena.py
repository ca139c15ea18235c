"""TFLM's persistent arena tail: what the interpreter keeps besides the planned activations (the head).

TFLM's arena is one block: the greedy planner's buffers at the head, and at the tail everything that lives as
long as the interpreter (MicroAllocator, ``micro_allocator.cc``): one ``TfLiteEvalTensor`` per tensor of the
model, one ``NodeAndRegistration`` per operator, the parsed builtin options and each kernel's op data (its
``Init``/``Prepare``), a persistent ``TfLiteTensor`` with its quantization for each model input and output,
and the per-channel output multipliers and shifts that conv and depthwise conv always allocate (``conv.h``,
``OpDataConv``) and a fully connected layer allocates when its weights are quantized per channel
(``OpDataFullyConnected``). Every kernel buffer is aligned to 16 bytes (``MicroArenaBufferAlignment``).

The struct sizes are those of the LP64 build in the ``tflite-micro`` wheel, measured with its
``print_allocations()`` and consistent with the TF_LITE_STATIC_MEMORY layouts: ``TfLiteEvalTensor`` {data,
dims, type} 24 B; ``TfLiteNode`` {6 pointers, int} + registration pointer 64 B; ``TfLiteTensor`` 64 B;
``TfLiteAffineQuantization`` 24 B + a one-entry zero-point array 8 B. A 32-bit Cortex-M build has 4-byte
pointers and a smaller tail; these figures are an upper bound for it. Pure: counts in, bytes out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

ALIGNMENT = 16  # MicroArenaBufferAlignment(): every persistent buffer a kernel allocates

# The interpreter's own objects in the tail (allocator, planner, subgraph allocations, I/O tensor lists),
# measured in the wheel (version 0.dev20261023182759): the tail of a one-conv model less all it allocates per
# tensor and per op.
FIXED_BYTES = 536
EVAL_TENSOR_BYTES = 24  # sizeof(TfLiteEvalTensor): one per tensor of the model, in one array
NODE_BYTES = 64  # sizeof(NodeAndRegistration)
IO_TENSOR_BYTES = 64  # sizeof(TfLiteTensor): the persistent view of each model input and output
IO_QUANT_BYTES = 32  # TfLiteAffineQuantization (24 B) + its one-entry zero-point TfLiteIntArray (8 B)
# Op data plus parsed builtin options per TFLM kernel, with their alignment, measured one op at a time.
OP_BYTES = {
    "conv": 104,  # OpDataConv + TfLiteConvParams (also DEPTHWISE_CONV_2D, TRANSPOSE_CONV)
    "fully_connected": 104,  # OpDataFullyConnected + TfLiteFullyConnectedParams
    "reshape": 32,  # TfLiteReshapeParams: RESHAPE runs in place and keeps no op data
    "quantize": 24,  # QUANTIZE / DEQUANTIZE: their small op data
    "other": 72,  # pools (OpDataPooling + TfLitePoolParams), ADD (OpDataAdd), SOFTMAX (SoftmaxParams), ...
}


def align(size: int, alignment: int = ALIGNMENT) -> int:
    return -(-size // alignment) * alignment


@dataclass(frozen=True)
class TailCounts:
    """What the tail is made of, as a converted .tflite file has it.

    ``ops`` counts operators by TFLM kernel class (``OP_BYTES``'s keys); ``tensors`` counts every tensor of the
    subgraph, constants included; ``per_channel`` lists the output channels of each op that keeps per-channel
    multipliers and shifts; ``io_tensors`` the model's inputs plus outputs, ``io_quantized`` whether they are
    integer (a float input or output has no quantization struct).
    """

    ops: dict[str, int] = field(default_factory=dict)
    tensors: int = 0
    per_channel: Sequence[int] = ()
    io_tensors: int = 2
    io_quantized: bool = True


def per_channel_bytes(channels: int) -> int:
    """``per_channel_output_multiplier`` and ``per_channel_output_shift``: one int32 each per output channel."""
    return 2 * align(4 * channels)


def persistent_tail_bytes(counts: TailCounts) -> int:
    """The persistent tail of TFLM's arena, in bytes, for a model with these counts."""
    unknown = set(counts.ops) - set(OP_BYTES)
    if unknown:
        raise ValueError(f"unknown TFLM kernel classes {sorted(unknown)}; valid: {sorted(OP_BYTES)}")
    ops = sum(counts.ops.values())
    io = counts.io_tensors * (IO_TENSOR_BYTES + (IO_QUANT_BYTES if counts.io_quantized else 0))
    return (
        FIXED_BYTES
        + align(EVAL_TENSOR_BYTES * counts.tensors)
        + ops * NODE_BYTES
        + sum(OP_BYTES[kind] * n for kind, n in counts.ops.items())
        + sum(per_channel_bytes(c) for c in counts.per_channel)
        + io
    )
