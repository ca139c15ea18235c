"""What each popular counting tool would report for a captured network, and why they disagree.

Six tools, six conventions. These functions reproduce each tool's *rules* from the ``Graph`` alone (no tool
is imported or run), read from the installed sources of the pinned versions:

``fvcore`` (0.1.5, ``FlopCountAnalysis(model, x).total()``; ``nn/jit_handles.py``, ``nn/flop_count.py``)
    Traces aten ops with ``torch.jit`` and prices only the ops in ``_DEFAULT_SUPPORTED_OPS``. One MAC is one
    "flop". conv / linear / matmul / bmm / einsum: MACs, bias ignored. ``batch_norm`` (eval): numel x2 if
    affine else x1. ``layer_norm`` / ``group_norm`` / ``instance_norm``: numel x5 if affine else x4.
    ``adaptive_avg_pool2d`` (2-D only): input numel. ``upsample_nearest2d``: output numel,
    ``upsample_bilinear2d``: 4x output numel. Everything else (add, mul, relu, max/avg pooling, softmax,
    sdpa ...) is 0.
``thop`` (0.1.1, ``profile(model, (x,))[0]``; ``profile.py``, ``vision/basic_hooks.py``, ``calc_func.py``)
    Forward hooks on modules whose *exact* type is in ``register_hooks``; functional calls are invisible.
    conv (incl. transposed): output numel x in_channels/groups x prod(kernel), bias ignored. Linear:
    output numel x in_features, bias ignored. BatchNorm / LayerNorm / InstanceNorm: 2 x input numel, x2
    again if affine. AvgPool: output numel. AdaptiveAvgPool: (prod(in/out spatial) + 1) x output numel.
    Softmax: (3n - 1) per row. Upsample: output numel x1 / 5 / 11 / 259 by mode. PReLU: input numel.
    ReLU, ReLU6, LeakyReLU, MaxPool, Dropout: 0 (explicit ``zero_ops``); GroupNorm, GELU, attention: no hook.
``ptflops`` (0.7.5, ``backend='pytorch'``; ``pytorch_ops.py``, ``pytorch_engine.py``)
    Module hooks (exact type in ``MODULES_MAPPING``) *plus* patched functionals (``patch_functional``,
    ``patch_tensor_ops``): conv MACs + output numel if biased; Linear MACs + bias; BN / LayerNorm / GroupNorm
    / InstanceNorm: input numel, x2 if the module has a true ``affine`` attribute (LayerNorm has none, so
    x1); ReLU / ReLU6 / LeakyReLU / GELU / PReLU / ELU: output numel; every pooling module: input numel.
    Because ``nn.ReLU.forward`` calls the patched ``F.relu`` (and MaxPool -> ``F.max_pool2d``, GELU ->
    ``F.gelu`` ...), those modules are counted *twice*; ReLU6 (``F.hardtanh``) and LeakyReLU are not
    patched, so once; nn.SiLU / nn.Softmax have no hook but call the patched ``F.silu`` / ``F.softmax``, so
    once too. nn.MultiheadAttention: its own hook formula plus the patched ``torch.bmm`` x2 and ``softmax``
    inside ``multi_head_attention_forward``. ``F.linear`` patching is commented out upstream: functional
    linear is 0. ``x + y`` and ``a @ b`` go through unpatched dunder methods: 0; ``torch.add`` /
    ``Tensor.add`` / ``torch.mul`` / ``torch.matmul`` / ``torch.bmm`` ... are counted. Module hooks are
    divided by the batch size, functional counts are not (``get_flops_pytorch``).
``ptflops_aten`` (0.7.5, ``backend='aten'``; ``aten_ops.py``, ``aten_engine.py``)
    ``TorchDispatchMode`` over ``mm`` / ``addmm`` / ``bmm`` / ``convolution``: MACs, plus one add per output
    element of a biased conv and of an ``addmm`` (a biased linear on a contiguous input). Nothing else.
``torchinfo`` (1.8.0, ``summary(model, input_size).total_mult_adds``; ``layer_info.py``)
    Only executed *leaf* modules, and only their parameters: a module whose class name contains "Conv":
    (weight + bias numel) x batch x output spatial; any other leaf: output_shape[0] x its parameter
    count (so BN adds 2C per sample, a Linear adds its bias, an Embedding adds its whole table).
    ``nn.MultiheadAttention`` has a child (``out_proj``), so it is not a leaf: 0.
``flopcounter`` (``torch.utils.flop_counter.FlopCounterMode().get_total_flops()``)
    2 x MACs of ``mm`` / ``addmm`` / ``bmm`` / ``baddbmm`` / ``convolution`` (bias ignored) and of
    scaled-dot-product attention (torch 2.13 registers the CPU kernel too); nothing else.

What cannot be emulated exactly from a ``Graph`` (and is left out of the tests against the real tools):

* The train/eval mode is not captured: fvcore prices a training-mode BatchNorm as 5x numel. We assume
  ``model.eval()`` (thop and ptflops force it; the published figures use it).
* ``nn.Upsample``'s mode and scale and ``nn.Softmax``'s dim come from the capture's ``attrs`` (mode, dim,
  scale_factor); ptflops' ``F.interpolate`` inside ``nn.Upsample`` is priced as the output numel (exact
  for integer scales).
* fvcore raises on a matrix-vector product (``matmul_flop_jit`` indexes ``b[-2]``); we price it 0.
* Whether a tensor is contiguous is not captured: aten's ``linear`` uses ``addmm`` (bias counted by
  ptflops_aten) only for contiguous inputs; we assume contiguous, except for a batch-first
  ``nn.MultiheadAttention`` whose transposed projection input we know is not.
* ``nn.MultiheadAttention``: we assume the slow path (grad enabled), ``need_weights=True`` (the default)
  and no masks. With ``need_weights=False`` the attention core (QK^T, AV) goes through SDPA instead of
  two ``bmm``, which no tool but ptflops' module hook prices.
* SDPA: fvcore, thop and ptflops price none of it on CPU; ``FlopCounterMode`` counts 2 x B x H x L x S x (E + E_v).
* einsum with 3+ operands: aten contracts left to right (``opt_einsum`` absent); we follow the same order.
* A custom module that is a leaf for the capture but has children (or the reverse) is seen differently by
  torchinfo, and a subclass of ``nn.Conv2d`` gets no hook in thop/ptflops (exact-type lookup), while our
  capture prices it as a conv: we follow the tools (class-name lookup), so such layers count 0 there.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from nntailor.graph.ops import OP_KINDS, callable_name
from nntailor.graph.types import Graph, Layer, Shape, numel

TOOLS = ("fvcore", "thop", "ptflops", "ptflops_aten", "torchinfo", "flopcounter")

# What a tool adds for one layer: an int, or a float where the tool's own arithmetic is (ptflops' interpolate,
# thop's float64 buffers are exact integers here); totals are truncated once, as the tools do.
Rule = Callable[[Layer], float]

# ----------------------------------------------------------------------------------------------- helpers


def _prod(values: Iterable[int]) -> int:
    return math.prod(values)


def _zero(layer: Layer) -> int:
    """The rule for every op kind a tool's table does not list."""
    return 0


def _is_module_call(layer: Layer) -> bool:
    """A call of a leaf module (capture names it by its module path), not a functional op inside one."""
    return bool(layer.module) and layer.name.split("#")[0] == layer.module


def _from_module_class(*class_names: str) -> Callable[[Layer], bool]:
    """Exact-type lookup, as thop's ``register_hooks[type(m)]`` and ptflops' ``MODULES_MAPPING``."""
    names = frozenset(class_names)
    return lambda layer: _is_module_call(layer) and layer.target in names


def _only(gate: Callable[[Layer], bool], rule: Rule) -> Rule:
    """``rule`` where the tool sees the layer at all (a hooked module class, a patched function), else 0."""
    return lambda layer: rule(layer) if gate(layer) else 0


def _called(*functions: Callable) -> frozenset[str]:
    """Capture's target names of these functions (F.gelu is "torch.gelu", F.avg_pool2d "torch.avg_pool2d")."""
    return frozenset(callable_name(f) for f in functions)


def _conv_weight_shape(layer: Layer) -> Shape:
    attrs = layer.attrs
    if "in_channels" in attrs and "kernel_size" in attrs:  # nn.ConvNd / nn.ConvTransposeNd module
        kernel = tuple(attrs["kernel_size"])
        groups = int(attrs.get("groups", 1))
        if layer.op == "conv_transpose":  # weight is (in, out / groups, *k)
            return (attrs["in_channels"], attrs["out_channels"] // groups, *kernel)
        return (attrs["out_channels"], attrs["in_channels"] // groups, *kernel)
    return layer.input_shapes[1]  # F.conv2d(x, weight, ...): the weight is the second tensor argument


def _conv_has_bias(layer: Layer) -> bool:
    if "in_channels" in layer.attrs:
        return bool(layer.attrs.get("bias"))
    return len(layer.input_shapes) > 2


def _conv_aten_macs(layer: Layer) -> int:
    """``conv_flop_count`` of fvcore, ptflops aten and torch: batch x prod(weight) x spatial positions.

    The positions are the output's, or the *input's* for a transposed conv (that is the scatter form).
    """
    x, out = layer.input_shape, layer.output_shape
    weight = _conv_weight_shape(layer)
    unbatched = len(x) == len(weight) - 1  # (C, H, W) into a 2-D conv: batch 1, positions after dim 0
    positions = (x if layer.op == "conv_transpose" else out)[1 if unbatched else 2:]
    return (1 if unbatched else x[0]) * _prod(weight) * _prod(positions)


def _linear_features(layer: Layer) -> tuple[int, int, bool]:
    """(in_features, out_features, has_bias) of an nn.Linear or of F.linear(x, weight, bias)."""
    attrs = layer.attrs
    if "in_features" in attrs:
        return int(attrs["in_features"]), int(attrs["out_features"]), bool(attrs.get("bias"))
    out_features, in_features = layer.input_shapes[1]
    return in_features, out_features, len(layer.input_shapes) > 2


def _rows(layer: Layer) -> int:
    """Rows of the linear's matrix product: every input dim but the last."""
    return _prod(layer.input_shape[:-1])


def _matmul_shapes(layer: Layer) -> tuple[Shape, Shape]:
    return layer.input_shapes[0], layer.input_shapes[1]


def _matmul_dispatched_macs(layer: Layer) -> int:
    """MACs of the mm / bmm that ``at::matmul`` dispatches to (broadcast batch dims included).

    A vector right operand goes to ``mv`` / ``dot``, which neither torch's nor ptflops' table prices.
    """
    a, b = _matmul_shapes(layer)
    if len(b) < 2:
        return 0
    return layer.output_numel * a[-1]


def _norm_affine(layer: Layer) -> bool:
    """Whether the norm has a weight: module attribute, or a weight tensor passed to the functional."""
    attrs = layer.attrs
    if "affine" in attrs:
        return bool(attrs["affine"])
    if "elementwise_affine" in attrs:
        return bool(attrs["elementwise_affine"])
    # F.batch_norm(x, running_mean, running_var, weight, bias); F.layer_norm/group_norm(x, shape, weight, ...)
    return len(layer.input_shapes) > (3 if layer.op == "batchnorm" else 1)


def _upsample_mode(layer: Layer) -> str:
    if layer.target == "UpsamplingBilinear2d":
        return "bilinear"
    mode = layer.attrs.get("mode", layer.attrs.get("arg3", "nearest"))  # F.interpolate(x, size, scale, mode)
    return mode if isinstance(mode, str) else "nearest"


def _module_param_numels(layer: Layer) -> dict[str, int]:
    """The module's own parameters by local name, as ``module.named_parameters()`` lists them.

    The capture leaves ``weights`` empty on the second call of a shared module (so that parameter totals
    count it once), but torchinfo prices every call, so rebuild the shapes from the attributes then.
    """
    if layer.weights:
        return {name: t.numel() for name, t in layer.weights.items()}
    attrs, op = layer.attrs, layer.op
    found: dict[str, int] = {}
    if op in ("conv", "conv_transpose") and "in_channels" in attrs:
        found["weight"] = _prod(_conv_weight_shape(layer))
        if attrs.get("bias"):
            found["bias"] = int(attrs["out_channels"])
    elif op == "linear" and "in_features" in attrs:
        found["weight"] = int(attrs["in_features"]) * int(attrs["out_features"])
        if attrs.get("bias"):
            found["bias"] = int(attrs["out_features"])
    elif op in ("batchnorm", "groupnorm") and attrs.get("affine"):
        found["weight"] = found["bias"] = int(layer.input_shape[1])
    elif op == "layernorm" and attrs.get("elementwise_affine"):
        shape = attrs.get("normalized_shape") or ()
        found["weight"] = _prod(shape)
        if attrs.get("bias"):
            found["bias"] = _prod(shape)
    elif op == "embedding" and "num_embeddings" in attrs:
        found["weight"] = int(attrs["num_embeddings"]) * int(attrs["embedding_dim"])
    return found


def _mha_dims(layer: Layer) -> tuple[int, int, int, int, int, int, int]:
    """(batch, q_len, kv_len, embed_dim, kdim, vdim, heads) of an nn.MultiheadAttention call."""
    attrs = layer.attrs
    q, k, v = (layer.input_shapes + [layer.input_shapes[0]] * 2)[:3]
    if attrs.get("batch_first") and len(q) == 3:
        batch, q_len, kv_len = q[0], q[1], k[1]
    elif len(q) == 3:
        batch, q_len, kv_len = q[1], q[0], k[0]
    else:  # unbatched (L, E)
        batch, q_len, kv_len = 1, q[0], k[0]
    return batch, q_len, kv_len, int(attrs["embed_dim"]), k[-1], v[-1], int(attrs["num_heads"])


def _mha_macs(layer: Layer) -> int:
    """MACs of ``F.multi_head_attention_forward``'s slow path: projections, two bmm, output projection."""
    batch, q_len, kv_len, embed, kdim, vdim, _ = _mha_dims(layer)
    projections = batch * (q_len * embed * embed + kv_len * kdim * embed + kv_len * vdim * embed)
    scores_and_mix = 2 * batch * q_len * kv_len * embed  # bmm(q, k^T) and bmm(attn, v), all heads
    return projections + scores_and_mix + batch * q_len * embed * embed


def _mha_addmm_bias(layer: Layer) -> int:
    """Bias adds that aten runs inside ``addmm`` (the ones ptflops_aten counts).

    The in-projection input is transposed for ``batch_first``; with more than one sample and token it is
    non-contiguous, so ``at::linear`` runs ``matmul`` then ``add_`` and ptflops_aten misses that bias.
    """
    if not layer.attrs.get("bias"):
        return 0
    batch, q_len, kv_len, embed, *_ = _mha_dims(layer)
    out_proj = batch * q_len * embed  # on the flattened 2-D (L*B, E) output: always addmm
    contiguous = not (layer.attrs.get("batch_first") and batch > 1 and q_len > 1)
    return out_proj + (batch * (q_len + 2 * kv_len) * embed if contiguous else 0)


# ---------------------------------------------------------------------------------------------- einsum


def _einsum_operands(layer: Layer) -> tuple[str, list[Shape]]:
    equation = str(layer.attrs.get("arg0", "")).replace(" ", "")
    return equation, list(layer.input_shapes)


def _fvcore_einsum(layer: Layer) -> int:
    """fvcore's ``einsum_flop_jit``: two hard-coded bmm forms, else numpy's optimal path flops / 2."""
    equation, shapes = _einsum_operands(layer)
    letter_order = OrderedDict((k, 0) for k in equation if k.isalpha()).keys()
    equation = equation.translate({ord(x): 97 + i for i, x in enumerate(letter_order)})
    if equation == "abc,abd->acd":
        n, c, t = shapes[0]
        return n * c * t * shapes[-1][-1]
    if equation == "abc,adc->adb":
        n, t, g = shapes[0]
        return n * t * g * shapes[-1][1]
    # fvcore passes np.zeros(shape); a zero-strided view has the same shape without the memory.
    arrays = [np.broadcast_to(np.zeros(()), s) for s in shapes]
    report = np.einsum_path(equation, *arrays, optimize="optimal")[1]
    for line in report.split("\n"):
        if "optimized flop" in line.lower():
            return int(np.floor(float(line.split(":")[-1]) / 2))
    return 0


def _einsum_labels(equation: str, shapes: list[Shape]) -> tuple[list[dict[str, int]], list[str]]:
    """Each operand's {label: size} (ellipsis dims get labels "0", "1", ... right-aligned) and the output."""
    lhs, _, rhs = equation.partition("->")
    terms = lhs.split(",")
    ell_rank = max((len(s) - len(t.replace("...", "")) for t, s in zip(terms, shapes, strict=False)
                    if "..." in t), default=0)
    ell = [str(i) for i in range(ell_rank)]
    operands: list[dict[str, int]] = []
    for term, shape in zip(terms, shapes, strict=False):
        head, dots, tail = term.partition("...")
        n_ell = len(shape) - len(head) - len(tail) if dots else 0
        labels = list(head) + ell[ell_rank - n_ell:] + list(tail)
        operands.append(dict(zip(labels, shape, strict=False)))
    if "->" in equation:
        head, dots, tail = rhs.partition("...")
        output = list(head) + (ell if dots else []) + list(tail)
    else:  # implicit output: ellipsis, then the labels used once, alphabetically
        counts: dict[str, int] = {}
        for term in terms:
            for ch in term.replace("...", ""):
                counts[ch] = counts.get(ch, 0) + 1
        output = ell + sorted(ch for ch, c in counts.items() if c == 1)
    return operands, output


def einsum_macs(layer: Layer) -> int:
    """MACs of the ``bmm`` calls ``at::einsum`` makes, contracting left to right (``sumproduct_pair``).

    Per pair, a label last used here and kept by neither the output nor a later operand is summed by the
    bmm if both sides have it (size > 1); one side only: it is summed away first. With nothing to contract
    aten multiplies (``mul``, not priced). Size-1 dims are squeezed, so they never change the product.
    """
    equation, shapes = _einsum_operands(layer)
    if "," not in equation:
        return 0
    operands, output = _einsum_labels(equation, shapes)
    sizes = {label: size for op in operands for label, size in op.items() if size > 1}
    last_use = {label: i for i, op in enumerate(operands) for label in op}
    keep = set(output)
    first = operands[0]
    result = {label for label in first if first[label] > 1 and (label in keep or last_use[label] > 0)}
    macs = 0
    for i in range(1, len(operands)):
        operand = {label for label, size in operands[i].items() if size > 1}
        ending = {label for label in result | operand if last_use.get(label) == i and label not in keep}
        summed = ending & result & operand
        result, operand = result - (ending - summed), operand - (ending - summed)  # summed away first
        if summed:  # bmm of (kept by both) x (left only) x (summed) x (right only)
            macs += _prod(sizes[label] for label in result | operand)
        result = (result | operand) - summed
    return macs


# ------------------------------------------------------------------------------------------------ fvcore

_FVCORE_ADAPTIVE_AVG_2D = frozenset({"AdaptiveAvgPool2d"}) | _called(F.adaptive_avg_pool2d)


def _fvcore_batchnorm(layer: Layer) -> int:
    # batchnorm_flop_jit, eval branch: input numel x (2 if affine else 1).
    return numel(layer.input_shape) * (2 if _norm_affine(layer) else 1)


def _fvcore_norm(layer: Layer) -> int:
    # norm_flop_counter: "5 is just a rough estimate" -- input numel x (5 if affine else 4).
    return numel(layer.input_shape) * (5 if _norm_affine(layer) else 4)


def _fvcore_upsample(layer: Layer) -> int:
    # Only aten::upsample_nearest2d (x1) and aten::upsample_bilinear2d (x4) have handles.
    if len(layer.output_shape) != 4:
        return 0
    return {"nearest": 1, "bilinear": 4}.get(_upsample_mode(layer), 0) * layer.output_numel


def _fvcore_other(layer: Layer) -> int:
    if layer.target.startswith("InstanceNorm"):  # aten::instance_norm -> norm_flop_counter(1)
        return numel(layer.input_shape) * (5 if layer.attrs.get("affine") else 4)
    return 0


def _fvcore_matmul(layer: Layer) -> int:
    # matmul_flop_jit / bmm_flop_jit: prod(a) x b[-1] -- no broadcast batch of b (and mv/dot raise there).
    a, b = _matmul_shapes(layer)
    return _prod(a) * b[-1] if len(b) >= 2 else 0


_FVCORE: dict[str, Rule] = {
    "conv": _conv_aten_macs,  # aten::_convolution -> conv_flop_jit, bias ignored
    "conv_transpose": _conv_aten_macs,
    "linear": lambda layer: _prod(layer.input_shape) * _linear_features(layer)[1],  # linear_flop_jit
    "matmul": _fvcore_matmul,
    "einsum": _fvcore_einsum,
    "attention": _mha_macs,  # traced through: aten::linear, bmm, bmm, aten::linear
    "batchnorm": _fvcore_batchnorm,
    "layernorm": _fvcore_norm,
    "groupnorm": _fvcore_norm,
    # aten::adaptive_avg_pool2d: elementwise_flop_counter(1, 0); the 1-d and 3-d ops have no handle.
    "adaptive_avgpool": _only(lambda layer: layer.target in _FVCORE_ADAPTIVE_AVG_2D,
                              lambda layer: numel(layer.input_shape)),
    "upsample": _fvcore_upsample,
    "other": _fvcore_other,
}

# -------------------------------------------------------------------------------------------------- thop


def _thop_conv(layer: Layer) -> int:
    # calculate_conv2d_flops: prod(output) x (input channels // groups) x prod(kernel); bias is not used.
    return layer.output_numel * (layer.input_shape[1] // int(layer.attrs.get("groups", 1))) * _prod(
        _conv_weight_shape(layer)[2:])


def _thop_norm(layer: Layer) -> int:
    # count_normalization: calculate_norm = 2 x numel, doubled again for affine / elementwise_affine.
    affine = layer.attrs.get("affine") or layer.attrs.get("elementwise_affine")
    return 2 * numel(layer.input_shape) * (2 if affine else 1)


def _thop_adaptive_avgpool(layer: Layer) -> int:
    # count_adap_avgpool: kernel = prod(in / out) in float64, then int((kernel + 1) x output numel).
    kernel = 1.0
    for i, o in zip(layer.input_shape[2:], layer.output_shape[2:], strict=False):
        kernel *= float(i) / float(o)
    return int((kernel + 1) * layer.output_numel)


def _thop_softmax(layer: Layer) -> int:
    # count_softmax: rows x (n exp + (n - 1) add + n div); nn.Softmax's dim is not captured: assume -1.
    n = layer.input_shape[int(layer.attrs.get("dim", -1))]
    return (numel(layer.input_shape) // n) * (3 * n - 1)


def _thop_upsample(layer: Layer) -> int:
    # count_upsample -> calculate_upsample; other modes (trilinear included) are logged and priced 0.
    factors = {"nearest": 1, "linear": 5, "bilinear": 11, "bicubic": 224 + 35}
    return factors.get(_upsample_mode(layer), 0) * layer.output_numel


def _thop_other(layer: Layer) -> int:
    if layer.target.startswith("InstanceNorm") and _is_module_call(layer):
        return _thop_norm(layer)
    if layer.target == "PReLU" and _is_module_call(layer):  # count_prelu in eval: input numel
        return numel(layer.input_shape)
    return 0


_thop_conv_classes = _from_module_class(
    "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d")
_thop_norm_classes = _from_module_class("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm")

_THOP: dict[str, Rule] = {
    "conv": _only(_thop_conv_classes, _thop_conv),
    "conv_transpose": _only(_thop_conv_classes, _thop_conv),
    # count_linear: in_features x output numel (the bias line is commented out).
    "linear": _only(_from_module_class("Linear"),
                    lambda layer: layer.attrs["in_features"] * layer.output_numel),
    "batchnorm": _only(_thop_norm_classes, _thop_norm),
    "layernorm": _only(_thop_norm_classes, _thop_norm),
    # count_avgpool: one op per output element.
    "avgpool": _only(_from_module_class("AvgPool1d", "AvgPool2d", "AvgPool3d"),
                     lambda layer: layer.output_numel),
    "adaptive_avgpool": _only(
        _from_module_class("AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d"),
        _thop_adaptive_avgpool,
    ),
    "softmax": _only(_from_module_class("Softmax"), _thop_softmax),
    "upsample": _only(_from_module_class("Upsample", "UpsamplingBilinear2d", "UpsamplingNearest2d"),
                      _thop_upsample),
    "other": _thop_other,
    # ReLU, ReLU6, LeakyReLU (calculate_relu_flops returns 0), MaxPool*, AdaptiveMaxPool*, Dropout: zero_ops.
}

# ---------------------------------------------------------------------------------------- ptflops pytorch
# Two parts per layer: the module's forward hook (MODULES_MAPPING, divided by the batch at the end) and the
# patched torch functions that the layer calls, directly or inside the module's forward (not divided).


def _ptflops_conv_hook(layer: Layer) -> int:
    # conv_flops_counter_hook: prod(k) x in x out/groups per position (input positions if transposed)
    # + output numel when biased.
    bias = layer.output_numel if _conv_has_bias(layer) else 0
    return _conv_aten_macs(layer) + bias


def _ptflops_linear_hook(layer: Layer) -> int:
    # linear_flops_counter_hook: (in x out + out if bias) x prod(input dims but the last).
    in_features, out_features, bias = _linear_features(layer)
    return (in_features * out_features + (out_features if bias else 0)) * _rows(layer)


def _ptflops_norm_hook(layer: Layer) -> int:
    # bn_flops_counter_hook: x2 only `if hasattr(module, "affine") and module.affine` -- LayerNorm has no
    # `affine` (it is `elementwise_affine`), so it is priced x1 even when affine.
    return numel(layer.input_shape) * (2 if layer.attrs.get("affine") else 1)


def _ptflops_mha_hook(layer: Layer) -> int:
    """multihead_attention_counter_hook, line by line."""
    batch, q_len, kv_len, qdim, kdim, vdim, heads = _mha_dims(layer)
    flops = q_len * qdim  # Q scaling
    flops += q_len * qdim * qdim + kv_len * kdim * kdim + kv_len * vdim * vdim  # initial projections
    if layer.attrs.get("bias"):
        flops += (q_len + 2 * kv_len) * qdim
    flops += heads * (q_len * kv_len * (qdim // heads) + q_len * kv_len + q_len * kv_len * (vdim // heads))
    flops += q_len * vdim * (vdim + 1)  # "final projection, bias is always enabled"
    return flops * batch


def _ptflops_upsample_hook(layer: Layer) -> int:
    # upsample_flops_counter_hook reads output[0] -- the first *sample* -- so it prices one sample.
    return layer.output_numel // layer.output_shape[0]


_ptflops_activation_classes = _from_module_class("ReLU", "ReLU6", "LeakyReLU", "GELU")
_ptflops_pool_classes = _from_module_class(
    "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d",
    "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d",
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d")
_ptflops_norm_classes = _from_module_class(
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "GroupNorm", "LayerNorm")


def _ptflops_other_hook(layer: Layer) -> int:
    if not _is_module_call(layer):
        return 0
    if layer.target.startswith("InstanceNorm"):
        return _ptflops_norm_hook(layer)
    if layer.target in ("PReLU", "ELU"):  # relu_flops_counter_hook
        return layer.output_numel
    return 0


_PTFLOPS_HOOKS: dict[str, Rule] = {
    "conv": _only(_from_module_class("Conv1d", "Conv2d", "Conv3d"), _ptflops_conv_hook),
    "conv_transpose": _only(
        _from_module_class("ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"), _ptflops_conv_hook),
    "linear": _only(_from_module_class("Linear"), _ptflops_linear_hook),
    "attention": _only(_from_module_class("MultiheadAttention"), _ptflops_mha_hook),
    **{kind: _only(_ptflops_activation_classes, lambda layer: layer.output_numel)  # relu_flops_counter_hook
       for kind in ("relu", "relu6", "leaky_relu", "gelu")},
    **{kind: _only(_ptflops_pool_classes, lambda layer: numel(layer.input_shape))  # pool_flops_counter_hook
       for kind in ("maxpool", "avgpool", "adaptive_maxpool", "adaptive_avgpool")},
    **{kind: _only(_ptflops_norm_classes, _ptflops_norm_hook)  # bn_flops_counter_hook
       for kind in ("batchnorm", "layernorm", "groupnorm")},
    "upsample": _only(_from_module_class("Upsample"), _ptflops_upsample_hook),
    "other": _ptflops_other_hook,
}

# patch_functional: these F functions are wrapped with _numel_functional_flops_hook (first input's numel).
_PTFLOPS_NUMEL_FUNCTIONS = _called(
    F.relu, F.prelu, F.elu, F.relu6, F.gelu, F.silu, F.softmax,
    F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.max_pool1d, F.max_pool2d, F.max_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
    F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d,
)
_PTFLOPS_INTERPOLATE = _called(F.interpolate, F.upsample)
# patch_tensor_ops: the named functions and Tensor methods, not the `@`, `+`, `*` operators.
_PTFLOPS_MATMULS = _called(torch.matmul, torch.mm, torch.bmm) | {"Tensor.matmul", "Tensor.mm", "Tensor.bmm"}
_PTFLOPS_ELEMENTWISE = _called(torch.add, torch.mul) | {"Tensor.add", "Tensor.mul"}

# Which patched F function each hooked module's forward calls (nn.ReLU.forward -> F.relu, ...). nn.ReLU6 calls
# F.hardtanh and nn.LeakyReLU F.leaky_relu, which are not patched.
_FORWARD_CALLS_PATCHED = frozenset({
    "ReLU", "GELU", "SiLU", "Softmax", "PReLU", "ELU",
    "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d",
    "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d",
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d",
})
_FORWARD_CALLS_INTERPOLATE = frozenset({"Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d"})


def _ptflops_interpolate(layer: Layer) -> float:
    """_interpolate_functional_flops_hook: prod(size) x N x C, else input numel x scale ** spatial dims.

    Kept as a float, as ptflops sums it (1.5x upsampling of 5x5 is priced 56.25 per channel, not 49).
    nn.Upsample's scale_factor is not captured: its output numel is exact for a size or an integer scale.
    """
    scale = None if _is_module_call(layer) else layer.attrs.get("scale_factor", layer.attrs.get("arg2"))
    x = layer.input_shape
    if isinstance(scale, tuple) and len(scale) == len(x) - 2:
        return numel(x) * _prod(scale)
    if isinstance(scale, int | float) and not isinstance(scale, bool):
        return numel(x) * scale ** (len(x) - 2)
    return layer.output_numel


def _ptflops_patched(layer: Layer) -> float:
    """The patched functions this layer runs (called directly, or by its module's forward)."""
    module = _is_module_call(layer)
    if layer.target in _PTFLOPS_NUMEL_FUNCTIONS or (module and layer.target in _FORWARD_CALLS_PATCHED):
        return numel(layer.input_shape)
    if layer.target in _PTFLOPS_INTERPOLATE or (module and layer.target in _FORWARD_CALLS_INTERPOLATE):
        return _ptflops_interpolate(layer)
    if layer.target in _PTFLOPS_MATMULS:  # _matmul_tensor_flops_hook: prod(a) x b[-1]
        a, b = _matmul_shapes(layer)
        return _prod(a) * b[-1]
    if layer.target in _PTFLOPS_ELEMENTWISE:  # _elementwise_tensor_flops_hook: numel of the broadcast shape
        return layer.output_numel
    if module and layer.target == "MultiheadAttention":
        # Inside multi_head_attention_forward: torch.bmm twice (patched) and softmax (patched, a global of
        # torch.nn.functional); linear is not patched.
        batch, q_len, kv_len, embed, *_ = _mha_dims(layer)
        return 2 * batch * q_len * kv_len * embed + batch * int(layer.attrs["num_heads"]) * q_len * kv_len
    return 0


_PTFLOPS_PATCHED: dict[str, Rule] = {
    kind: _ptflops_patched for kind in (
        "relu", "relu6", "gelu", "silu", "softmax", "maxpool", "avgpool", "adaptive_maxpool",
        "adaptive_avgpool", "upsample", "matmul", "add", "mul", "attention", "other",
    )
}

_PTFLOPS: dict[str, Rule] = {
    kind: (lambda layer, k=kind: _PTFLOPS_HOOKS.get(k, _zero)(layer) + _PTFLOPS_PATCHED.get(k, _zero)(layer))
    for kind in set(_PTFLOPS_HOOKS) | set(_PTFLOPS_PATCHED)
}

# ------------------------------------------------------------------------------------------- ptflops aten


def _aten_conv(layer: Layer) -> int:
    # conv_flop -> conv_flop_count(..., bias=b is not None): + batch x out_channels x spatial.
    return _conv_aten_macs(layer) + (layer.output_numel if _conv_has_bias(layer) else 0)


def _aten_linear(layer: Layer) -> int:
    # A biased linear (contiguous input) is aten.addmm: addmm_flop adds batch x output_dim; else aten.mm.
    in_features, out_features, bias = _linear_features(layer)
    return _rows(layer) * in_features * out_features + (layer.output_numel if bias else 0)


_PTFLOPS_ATEN: dict[str, Rule] = {
    "conv": _aten_conv,
    "conv_transpose": _aten_conv,
    "linear": _aten_linear,
    "matmul": _matmul_dispatched_macs,  # at::matmul -> mm / bmm: matmul_flop, bmm_flop
    "einsum": einsum_macs,
    "attention": lambda layer: _mha_macs(layer) + _mha_addmm_bias(layer),
    # sdpa on CPU: aten._scaled_dot_product_flash_attention_for_cpu, not in ATEN_OPS_MAPPING.
}

# ----------------------------------------------------------------------------------------------- torchinfo


def _torchinfo(layer: Layer) -> int:
    """LayerInfo.calculate_macs for an executed leaf module (functional ops are invisible to it)."""
    if not _is_module_call(layer):
        return 0
    out = layer.output_shape
    macs = 0
    for name, count in _module_param_numels(layer).items():
        if name in ("weight", "bias"):
            if "Conv" in layer.target:  # "ignore C when calculating Mult-Adds in ConvNd"
                macs += count * _prod(out[:1] + out[2:])
            else:
                macs += out[0] * count  # output_size[0]: the batch, for batch-first outputs
        elif "weight" in name or "bias" in name:  # RNN-style inner weights
            macs += _prod(out[:2]) * count
    return macs


# MultiheadAttention has a child module (out_proj), so torchinfo does not treat it as a leaf.
_TORCHINFO: dict[str, Rule] = {kind: _torchinfo for kind in OP_KINDS if kind != "attention"}

# --------------------------------------------------------------------------------------------- flopcounter


def _flopcounter_linear(layer: Layer) -> int:
    in_features, out_features, _ = _linear_features(layer)
    return 2 * _rows(layer) * in_features * out_features  # addmm_flop = mm_flop: bias ignored


_FLOPCOUNTER: dict[str, Rule] = {
    # conv_flop_count: prod(positions) x prod(kernel) x batch x c_out x c_in x 2.
    "conv": lambda layer: 2 * _conv_aten_macs(layer),
    "conv_transpose": lambda layer: 2 * _conv_aten_macs(layer),
    "linear": _flopcounter_linear,
    "matmul": lambda layer: 2 * _matmul_dispatched_macs(layer),
    "einsum": lambda layer: 2 * einsum_macs(layer),
    "attention": lambda layer: 2 * _mha_macs(layer),
    # sdpa_flop_count (torch 2.13 counts the CPU kernel too): 2 x b x h x L x S x (E + E_v)
    "sdpa": lambda layer: 2 * _prod(layer.input_shapes[0][:-1]) * layer.input_shapes[1][-2]
    * (layer.input_shapes[0][-1] + layer.input_shapes[2][-1]),
}

_RULES: Mapping[str, Mapping[str, Rule]] = {
    "fvcore": _FVCORE,
    "thop": _THOP,
    "ptflops": _PTFLOPS,
    "ptflops_aten": _PTFLOPS_ATEN,
    "torchinfo": _TORCHINFO,
    "flopcounter": _FLOPCOUNTER,
}


def _rules(tool: str) -> Mapping[str, Rule]:
    try:
        return _RULES[tool]
    except KeyError:
        raise ValueError(f"unknown counting tool {tool!r}; valid: {', '.join(TOOLS)}") from None


def layer_count_like(layer: Layer, tool: str) -> int:
    """What ``tool`` attributes to this one layer (for ptflops, before its division by the batch)."""
    return int(_rules(tool).get(layer.op, _zero)(layer))


def count_like(graph: Graph, tool: str) -> int:
    """The tool's headline number for the whole network, as it would print it."""
    rules = _rules(tool)
    if tool == "ptflops":
        # get_flops_pytorch: module hooks are averaged over __batch_counter__ (the first input's batch),
        # the patched functionals are added afterwards as they are; int() of the float sum.
        batch = graph.input_shapes[0][0] if graph.input_shapes and graph.input_shapes[0] else 1
        hooks = sum(_PTFLOPS_HOOKS.get(layer.op, _zero)(layer) for layer in graph)
        patched = sum(_PTFLOPS_PATCHED.get(layer.op, _zero)(layer) for layer in graph)
        return int(hooks / batch + patched)
    return sum(int(rules.get(layer.op, _zero)(layer)) for layer in graph)
