"""C99 code of an IntModel: const arrays, one static arena at the TFLM-greedy offsets, our own int8 kernels.

Python is the Prepare step: every multiplier, shift, clamp, zero point and window geometry was computed by
``IntModel.prepare`` (TFLM's Prepare) and is written out here as a constant; the C only runs Eval. The arena is
planned by the one planner (``cost.memory.plan_buffers`` over ``cost.planner.GreedyPlanner``) on the buffers and
lifetimes TFLM gives, with the same rules ``analyze`` uses for its ``peak_sram_bytes``: a graph input lives from op
0, an op's output from that op to its last reader, graph outputs to the last op, and a RESHAPE owns no buffer (its
output is its input's bytes, so it costs nothing at run time).

Files written: ``model.h``/``model.c`` (the model), ``nnt_kernels.h``/``nnt_kernels.c`` (the kernels, copied from
the package), ``main.c`` (the host harness: raw int8 input bytes on stdin, raw int8 output bytes on stdout) and a
``Makefile`` (``host``, ``host-sanitize``).
"""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from nntailor.cost.memory import Buffer, plan_buffers
from nntailor.cost.planner import GreedyPlanner
from nntailor.deploy.intmodel import ADD_LEFT_SHIFT, IntModel, IntOp
from nntailor.deploy.reference import _spatial_pads
from nntailor.errors import UserError

KERNEL_FILES = ("nnt_kernels.h", "nnt_kernels.c")
HARNESS = "main.c"  # the host harness, packaged beside the kernels
ROUNDINGS = ("double", "single")
HOST_FLAGS = "-std=c99 -O2 -Wall -Wextra -Werror"
SANITIZE_FLAGS = "-g -fsanitize=undefined,address -fno-sanitize-recover=all"
# softmax.h: the Q12.19 sum of a row's exps stays below 2^28 only for rows shorter than this; beyond, TFLM's final
# RoundingDivideByPOT would shift by more than 31
SOFTMAX_MAX_DEPTH = 512
POINTWISE_MAX_C = 512  # NNT_POINTWISE_MAX_C of nnt_kernels.h
_VIEW_KINDS = frozenset({"reshape"})  # own no buffer: their output is their input's bytes


@dataclass
class CProject:
    """A generated C project: where it is, what it holds, and the arena plan it was written with."""

    out_dir: Path
    files: list[Path]
    arena_bytes: int
    offsets: dict[str, int]  # tensor name -> byte offset in the arena
    input_bytes: int  # all graph inputs, in order, as main.c reads them
    output_bytes: int
    rounding: str = "double"
    flash_arrays_bytes: int = 0  # the const arrays model.c holds (weights, biases, multipliers, shifts)
    planner: GreedyPlanner | None = field(default=None, repr=False)

    def build_host(self, sanitize: bool = False) -> Path:
        """``make host`` (or ``host-sanitize``) with the host cc; the binary's path."""
        target = "host-sanitize" if sanitize else "host"
        for tool, package in (("make", "make"), ("cc", "gcc")):
            if shutil.which(tool) is None:  # a user's machine without a compiler: one line, not a traceback
                raise UserError(f"{tool} not found: the C host build needs it (Debian package {package})")
        result = subprocess.run(["make", "-s", "-C", str(self.out_dir), target], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"make {target} failed:\n{result.stdout}{result.stderr}")
        return self.out_dir / ("model_host_sanitize" if sanitize else "model_host")


def arena_plan(model: IntModel) -> tuple[GreedyPlanner, dict[str, str]]:
    """The greedy plan of the model's activation buffers, and for each tensor the buffer that holds it."""
    root: dict[str, str] = {}
    buffers: dict[str, Buffer] = {}
    for name in model.inputs:
        root[name] = name
        buffers[name] = Buffer(name, math.prod(model.tensors[name].shape), 0, 0)
    index = -1
    for op in model.ops:
        sources = [root[name] for name in op.inputs]
        if op.kind in _VIEW_KINDS:
            root[op.output] = sources[0]
            continue
        index += 1
        for src in sources:
            buffers[src].last = max(buffers[src].last, index)
        root[op.output] = op.output
        buffers[op.output] = Buffer(op.output, math.prod(model.tensors[op.output].shape), index, index)
    final = max(index, 0)
    for name in model.outputs:
        buffers[root[name]].last = final
    return plan_buffers(list(buffers.values()), act_bits=8), root


def _ident(name: str) -> str:
    """A C identifier for a tensor or layer name."""
    out = "".join(ch if ch.isalnum() else "_" for ch in name)
    return out if out and not out[0].isdigit() else f"t_{out}"


class _Writer:
    """Collects model.c's const arrays (one per constant, named after its op) and the Eval calls."""

    def __init__(self) -> None:
        self.arrays: list[str] = []
        self.calls: list[str] = []
        self.flash = 0
        self.names: set[str] = set()

    def array(self, ctype: str, stem: str, values: np.ndarray) -> str:
        name = _ident(stem)
        while name in self.names:
            name += "_"
        self.names.add(name)
        flat = [int(v) for v in np.asarray(values).reshape(-1)]
        if ctype == "int32_t":
            flat_text = [str(v) if v != -(1 << 31) else "(-2147483647 - 1)" for v in flat]
        else:
            flat_text = [str(v) for v in flat]
        lines = [", ".join(flat_text[i:i + 24]) for i in range(0, len(flat_text), 24)] or ["0"]
        body = ",\n    ".join(lines)
        self.arrays.append(f"static const {ctype} {name}[{max(len(flat), 1)}] = {{\n    {body}\n}};")
        self.flash += max(len(flat), 1) * {"int8_t": 1, "int16_t": 2}.get(ctype, 4)
        return name


def _shape4(shape: tuple[int, ...]) -> list[int]:
    return [1] * (4 - len(shape)) + list(shape)


def _c_list(values) -> str:
    return "{" + ", ".join(str(int(v)) for v in values) + "}"


def _emit(w: _Writer, op: IntOp, model: IntModel, ptr: dict[str, str], simd_pointwise: bool = False) -> None:
    """The Eval call of one op: its constants as arrays, its geometry and quantization as literals."""
    t = model.tensors
    out = t[op.output]
    x = t[op.inputs[0]]
    stem = op.name
    comment = f"    /* {op.name}: {op.kind} */"
    if op.kind in ("conv", "depthwise", "avgpool", "maxpool"):
        n, h, wd, c = x.shape
        oh, ow, top, _, left, _ = _spatial_pads(op, h, wd)
        if op.kind in ("conv", "depthwise"):
            kh, kw = op.weight.shape[1:3]
        else:
            kh, kw = op.filter
        (sh, sw), (dh, dw) = op.stride, op.dilation
        geometry = [n, h, wd, c, oh, ow, out.shape[3], kh, kw, sh, sw, dh, dw, top, left]
        block = [comment, "    {", f"        static const nnt_geometry g = {_c_list(geometry)};"]
        if op.kind in ("avgpool", "maxpool"):
            block.append(f"        nnt_{op.kind}(&g, {op.act_min}, {op.act_max}, {ptr[op.inputs[0]]}, "
                         f"{ptr[op.output]});")
        else:
            block += _mac_block(w, op, model, stem)
            pointwise = simd_pointwise and op.kind == "conv" and _is_pointwise(geometry)
            weight = (w.array("int16_t", f"{stem}_weight", _pointwise_order(op.weight)) if pointwise
                      else w.array("int8_t", f"{stem}_weight", op.weight))
            bias = w.array("int32_t", f"{stem}_bias", op.bias) if op.bias is not None else "NULL"
            if pointwise:
                block[2] = f"        /* 1x1 conv as nnt_pointwise: {n * h * wd} pixels x {c} -> {out.shape[3]} */"
                block.append(f"        nnt_pointwise({n * h * wd}, {c}, {out.shape[3]}, &q, {ptr[op.inputs[0]]}, "
                             f"{weight}, {bias}, {ptr[op.output]});")
            elif op.kind == "conv":
                block.append(f"        nnt_conv(&g, &q, {ptr[op.inputs[0]]}, {weight}, {bias}, {ptr[op.output]});")
            else:
                block.append(f"        nnt_depthwise(&g, {op.depth_multiplier}, &q, {ptr[op.inputs[0]]}, {weight}, "
                             f"{bias}, {ptr[op.output]});")
        w.calls += block + ["    }"]
    elif op.kind == "fully_connected":
        features, units = op.weight.shape[1], op.weight.shape[0]
        batches = math.prod(x.shape) // features
        block = [comment, "    {"] + _mac_block(w, op, model, stem)
        weight = w.array("int8_t", f"{stem}_weight", op.weight)
        bias = w.array("int32_t", f"{stem}_bias", op.bias) if op.bias is not None else "NULL"
        block.append(f"        nnt_fully_connected({batches}, {features}, {units}, &q, {ptr[op.inputs[0]]}, "
                     f"{weight}, {bias}, {ptr[op.output]});")
        w.calls += block + ["    }"]
    elif op.kind == "add":
        (m1, s1), (m2, s2) = op.input_multipliers
        b = t[op.inputs[1]]
        w.calls += [comment, f"    nnt_add({math.prod(out.shape)}, {ptr[op.inputs[0]]}, {ptr[op.inputs[1]]}, "
                    f"{-x.zero_point}, {m1}, {s1}, {-b.zero_point}, {m2}, {s2}, {ADD_LEFT_SHIFT}, "
                    f"{int(op.multiplier[0])}, {int(op.shift[0])}, {out.zero_point}, {op.act_min}, {op.act_max}, "
                    f"{ptr[op.output]});"]
    elif op.kind == "mul":
        b = t[op.inputs[1]]
        w.calls += [comment, f"    nnt_mul({math.prod(out.shape)}, {ptr[op.inputs[0]]}, {ptr[op.inputs[1]]}, "
                    f"{-x.zero_point}, {-b.zero_point}, {int(op.multiplier[0])}, {int(op.shift[0])}, "
                    f"{out.zero_point}, {op.act_min}, {op.act_max}, {ptr[op.output]});"]
    elif op.kind == "mean":
        lead = 4 - len(x.shape)
        reduced = [1 if (a - lead) in {ax % len(x.shape) for ax in op.axes} else 0 for a in range(4)]
        w.calls += [comment, "    {", f"        static const int32_t shape[4] = {_c_list(_shape4(x.shape))};",
                    f"        static const int32_t reduced[4] = {_c_list(reduced)};",
                    f"        nnt_mean(shape, reduced, {-x.zero_point}, {int(op.multiplier[0])}, {int(op.shift[0])}, "
                    f"{out.zero_point}, {ptr[op.inputs[0]]}, {ptr[op.output]});", "    }"]
    elif op.kind == "concat":
        rank = len(out.shape)
        axis = op.axis % rank
        outer = math.prod(out.shape[:axis])
        inner = [math.prod(t[name].shape[axis:]) for name in op.inputs]
        parts = ", ".join(ptr[name] for name in op.inputs)
        w.calls += [comment, "    {", f"        const int8_t *const parts[{len(op.inputs)}] = {{{parts}}};",
                    f"        static const int32_t inner[{len(inner)}] = {_c_list(inner)};",
                    f"        nnt_concat({len(op.inputs)}, parts, inner, {outer}, {ptr[op.output]});", "    }"]
    elif op.kind == "pad":
        lead = 4 - len(x.shape)
        before = [0] * lead + [int(b) for b, _ in op.paddings]
        value = out.zero_point if op.pad_value is None else op.pad_value
        w.calls += [comment, "    {", f"        static const int32_t in_shape[4] = {_c_list(_shape4(x.shape))};",
                    f"        static const int32_t before[4] = {_c_list(before)};",
                    f"        static const int32_t out_shape[4] = {_c_list(_shape4(out.shape))};",
                    f"        nnt_pad(in_shape, before, out_shape, {value}, {ptr[op.inputs[0]]}, {ptr[op.output]});",
                    "    }"]
    elif op.kind == "reshape":
        if ptr[op.inputs[0]] != ptr[op.output]:
            w.calls += [comment, f"    nnt_copy({math.prod(out.shape)}, {ptr[op.inputs[0]]}, {ptr[op.output]});"]
        else:
            w.calls += [f"    /* {op.name}: reshape, the same bytes */"]
    elif op.kind == "softmax":
        depth = x.shape[-1]
        if depth >= SOFTMAX_MAX_DEPTH:
            raise UserError(f"{op.name}: softmax over {depth} values; the int8 kernel takes rows shorter than "
                            f"{SOFTMAX_MAX_DEPTH} (its Q12.19 sum must stay below 2^28)")
        w.calls += [comment, f"    nnt_softmax({math.prod(x.shape) // depth}, {depth}, {int(op.multiplier[0])}, "
                    f"{int(op.shift[0])}, {op.diff_min}, {ptr[op.inputs[0]]}, {ptr[op.output]});"]
    elif op.kind == "logistic":
        w.calls += [comment, f"    nnt_logistic({math.prod(x.shape)}, {-x.zero_point}, {int(op.multiplier[0])}, "
                    f"{int(op.shift[0])}, {-op.diff_min}, {ptr[op.inputs[0]]}, {ptr[op.output]});"]
    else:
        raise UserError(f"{op.name}: no C kernel for {op.kind!r}")


def _is_pointwise(geometry: list[int]) -> bool:
    """A conv that nnt_pointwise runs: 1x1 filter, stride 1, no padding (output pixels = input pixels), input
    channels a multiple of 4 up to POINTWISE_MAX_C (the kernel widens two pixels on the stack), output channels
    even (it computes channel pairs)."""
    n, h, wd, c, oh, ow, oc, kh, kw, sh, sw, _, _, top, left = geometry
    return ((kh, kw, sh, sw, top, left) == (1, 1, 1, 1, 0, 0) and (oh, ow) == (h, wd) and c % 4 == 0
            and c <= POINTWISE_MAX_C and oc % 2 == 0)


def _pointwise_order(weight: np.ndarray) -> np.ndarray:
    """An OHWI 1x1 weight widened to int16 in the order nnt_pointwise reads it (the Prepare-time rearrangement of
    CMSIS-NN's kernels): for each output channel pair and each group of four input channels c0..c3, the first
    channel's (c0, c2, c1, c3), then the second's: the halves SXTAB16 makes of the pixels' words."""
    out_c, in_c = weight.shape[0], weight.shape[-1]
    grouped = weight.astype(np.int16).reshape(out_c // 2, 2, in_c // 4, 4)[..., [0, 2, 1, 3]]
    return grouped.transpose(0, 2, 1, 3).reshape(-1)


def _mac_block(w: _Writer, op: IntOp, model: IntModel, stem: str) -> list[str]:
    """The nnt_quant of a conv, depthwise or fully connected op: per-channel or per-tensor multipliers."""
    mult = w.array("int32_t", f"{stem}_multiplier", op.multiplier)
    shift = w.array("int32_t", f"{stem}_shift", op.shift)
    per_channel = 1 if len(op.multiplier) > 1 else 0
    zp_in, zp_out = model.tensors[op.inputs[0]].zero_point, model.tensors[op.output].zero_point
    return [f"        static const nnt_quant q = {{{-zp_in}, {zp_out}, {op.act_min}, {op.act_max}, {per_channel}, "
            f"{mult}, {shift}}};"]


def _model_h(model: IntModel, arena: int, in_bytes: int, out_bytes: int) -> str:
    return f"""/* {model.name}: generated by nntailor (deploy/c.py). int8 in, int8 out, NHWC. */
#ifndef NNT_MODEL_H
#define NNT_MODEL_H

#include <stdint.h>

#define NNT_ARENA_BYTES {arena}
#define NNT_INPUT_BYTES {in_bytes} /* the graph inputs, in order: {', '.join(model.inputs)} */
#define NNT_OUTPUT_BYTES {out_bytes} /* the graph outputs, in order: {', '.join(model.outputs)} */

/* one inference: NNT_INPUT_BYTES int8 in, NNT_OUTPUT_BYTES int8 out */
void nnt_invoke(const int8_t *in, int8_t *out);

#endif
"""


def _model_c(model: IntModel, w: _Writer, arena: int, offsets: dict[str, int]) -> str:
    copy_in, copy_out = [], []
    at = 0
    for name in model.inputs:
        size = math.prod(model.tensors[name].shape)
        copy_in.append(f"    memcpy(arena + {offsets[name]}, in + {at}, {size});")
        at += size
    at = 0
    for name in model.outputs:
        size = math.prod(model.tensors[name].shape)
        copy_out.append(f"    memcpy(out + {at}, arena + {offsets[name]}, {size});")
        at += size
    plan = "\n".join(f" *   {offset:>8}  {math.prod(model.tensors[name].shape):>8}  {name}"
                     for name, offset in sorted(offsets.items(), key=lambda item: (item[1], item[0])))
    arrays = "\n\n".join(w.arrays)
    calls = "\n".join(w.calls)
    inputs, outputs = "\n".join(copy_in), "\n".join(copy_out)
    return f"""/* {model.name}: generated by nntailor (deploy/c.py); the constants are IntModel.prepare's. */
#include "model.h"

#include <stddef.h>
#include <string.h>

#include "nnt_kernels.h"

#if defined(__GNUC__)
#define NNT_ALIGNED16 __attribute__((aligned(16)))
#else
#define NNT_ALIGNED16
#endif

/* the one activation arena, {arena} bytes: TFLM's greedy plan (cost.planner), what analyze prices as
 * peak_sram_bytes. Tensor offsets:
 *     offset     bytes  tensor
{plan}
 */
static int8_t arena[NNT_ARENA_BYTES] NNT_ALIGNED16;

{arrays}

void nnt_invoke(const int8_t *in, int8_t *out) {{
{inputs}
{calls}
{outputs}
}}
"""


def _makefile(rounding: str) -> str:
    define = " -DNNT_SINGLE_ROUNDING" if rounding == "single" else ""
    return f"""# generated by nntailor: the model with its kernels for the host (cc). `make host`, `make host-sanitize`.
CC ?= cc
CFLAGS ?= {HOST_FLAGS}
ROUNDING = {define.strip()}
SOURCES = model.c nnt_kernels.c main.c
HEADERS = model.h nnt_kernels.h

.PHONY: host host-sanitize clean

host: model_host

host-sanitize: model_host_sanitize

model_host: $(SOURCES) $(HEADERS)
\t$(CC) $(CFLAGS) $(ROUNDING) -o $@ $(SOURCES)

model_host_sanitize: $(SOURCES) $(HEADERS)
\t$(CC) $(CFLAGS) $(ROUNDING) {SANITIZE_FLAGS} -o $@ $(SOURCES)

clean:
\trm -f model_host model_host_sanitize
"""


def _packaged(name: str) -> Path:
    return Path(str(resources.files("nntailor.deploy") / "kernels" / name))


def kernel_sources() -> list[Path]:
    """The packaged kernel sources (nnt_kernels.h, nnt_kernels.c)."""
    return [_packaged(name) for name in KERNEL_FILES]


def write_c(int_model: IntModel, out_dir: str | Path, *, rounding: str = "double",
            simd_pointwise: bool = False) -> CProject:
    """Write the model's C99 project into ``out_dir`` (created if missing); nothing is compiled.

    ``simd_pointwise`` runs 1x1 convs through ``nnt_pointwise``, whose weights are stored widened to int16 in the
    order it reads them: under 2 instructions per MAC on a Cortex-M4 (against ~4.5), for one more flash byte per
    pointwise weight (DS-CNN +16 KiB, VWW +192 KiB). Off by default, so flash is what ``analyze`` prices."""
    if rounding not in ROUNDINGS:
        raise UserError(f"rounding must be 'double' or 'single', got {rounding!r}")
    planner, root = arena_plan(int_model)
    arena = planner.peak_bytes()
    offsets = {name: planner.offsets_[buffer] for name, buffer in root.items()}
    ptr = {name: f"arena + {offset}" for name, offset in offsets.items()}
    writer = _Writer()
    for op in int_model.ops:  # every op is checked before a file is written
        _emit(writer, op, int_model, ptr, simd_pointwise)
    in_bytes = sum(math.prod(int_model.tensors[n].shape) for n in int_model.inputs)
    out_bytes = sum(math.prod(int_model.tensors[n].shape) for n in int_model.outputs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = {"model.h": _model_h(int_model, arena, in_bytes, out_bytes),
             "model.c": _model_c(int_model, writer, arena, offsets),
             "Makefile": _makefile(rounding)}
    files = []
    for name, text in texts.items():
        (out / name).write_text(text)
        files.append(out / name)
    for src in [*kernel_sources(), _packaged(HARNESS)]:
        shutil.copyfile(src, out / src.name)
        files.append(out / src.name)
    return CProject(out, files, arena, offsets, in_bytes, out_bytes, rounding, writer.flash, planner)


def run_host(binary: str | Path, inputs: list[np.ndarray], output_shape: tuple[int, ...]) -> np.ndarray:
    """Outputs of ``model_host`` for each sample of the batched int8 inputs (one process, all inputs on stdin)."""
    n = len(inputs[0])
    result = subprocess.run([str(binary)], input=_stdin_bytes(inputs), capture_output=True)
    if result.returncode != 0:
        raise RuntimeError(f"{binary} exited {result.returncode}: {result.stderr.decode(errors='replace')}")
    return np.frombuffer(result.stdout, np.int8).reshape((n,) + tuple(output_shape[1:]))


def _stdin_bytes(inputs: list[np.ndarray]) -> bytes:
    n = len(inputs[0])
    return b"".join(b"".join(np.ascontiguousarray(x[i]).tobytes() for x in inputs) for i in range(n))


def time_host(binary: str | Path, inputs: list[np.ndarray], repeats: int = 3) -> float:
    """Seconds per inference of ``model_host`` over the batch in one process launch (launch included), the best
    of ``repeats`` launches."""
    n = len(inputs[0])
    data = _stdin_bytes(inputs)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        result = subprocess.run([str(binary)], input=data, capture_output=True)
        best = min(best, time.perf_counter() - start)
        if result.returncode != 0:
            raise RuntimeError(f"{binary} exited {result.returncode}: {result.stderr.decode(errors='replace')}")
    return best / n


def host_speed(binary: str | Path, tflite: bytes, inputs: list[np.ndarray], repeats: int = 3) -> dict[str, float]:
    """Our C against the tflite-micro wheel's interpreter on the same inputs: seconds per inference of each (best
    of ``repeats``; ours in one process launch over all inputs, TFLM in one interpreter), their ratio, and whether
    the outputs agree byte for byte."""
    from nntailor.deploy.tflite import run_tflm

    ours = time_host(binary, inputs, repeats)
    theirs = math.inf
    run_tflm(tflite, [x[:1] for x in inputs])  # load the wheel once before timing
    for _ in range(repeats):
        start = time.perf_counter()
        expected = run_tflm(tflite, inputs)[0]
        theirs = min(theirs, (time.perf_counter() - start) / len(inputs[0]))
    got = run_host(binary, inputs, (1,) + expected.shape[1:])
    return {"ours_s": ours, "tflm_s": theirs, "speedup": theirs / ours,
            "bit_exact": bool((got.reshape(expected.shape) == expected).all())}
