"""Build an IntModel from a float ``nn.Module`` plus calibration data, or from a model compress already quantized.

The path, stage by stage, reusing what exists:
1. float model: ``fold_bn``, then the compress ``quantize`` step (int8 TFLite spec, minmax calibration); a model
   with fake-quantized layers keeps its calibrated or learned ranges (BN left after it is folded the same way);
2. ``graph.capture`` and ``cost.fusion.fused_layers``: BN and ReLU/ReLU6 fused into their producer, a zero pad
   absorbed by the conv or pool that ``fused_layers`` folds it into (padding SAME or VALID);
3. lowering, layer by layer, to TFLite ops (NHWC); what has no int8 kernel is named with its module path
   before anything is written;
4. tensor ranges: the input quantizer of the layer that reads a tensor (exactly as calibrated or learned),
   else minmax over the calibration data of the fake-quantized model's own value there; tensors that TFLite's
   kernels require to share scale and zero point (pad, reshape, pools, concatenation) share one range;
5. weights quantized as the compress layer quantizes them (its ``qparams``/``quantize``), biases int32 at
   s_in s_w[c], then ``IntModel.prepare``.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import Dataset, TensorDataset

from nntailor.compress.base import Context
from nntailor.compress.fold import fold_bn
from nntailor.compress.quant.arith import activation_spec, qparams, quantize
from nntailor.compress.quant.modules import QUANT_LAYERS, ActivationQuantizer
from nntailor.compress.quant.observers import Observer
from nntailor.compress.quant.ptq import QuantizeConfig, quantize_model
from nntailor.cost.fusion import fused_layers
from nntailor.cost.memory import components
from nntailor.deploy.intmodel import SOFTMAX_OUTPUT, IntModel, IntOp, QTensor, same_padding
from nntailor.errors import UserError
from nntailor.graph.capture import capture, node_values
from nntailor.graph.types import Graph, Layer

_ADD_TARGETS = frozenset({"add", "iadd", "torch.add", "Tensor.add", "Tensor.add_"})
_MUL_TARGETS = frozenset({"mul", "imul", "torch.mul", "Tensor.mul", "Tensor.mul_"})
_ALIAS_OPS = frozenset({"identity"})


def calibration_dataset(data: torch.Tensor | np.ndarray | Dataset) -> Dataset:
    """A Dataset of (input, label) for the compress calibration loop; checks shape, dtype, emptiness, NaNs."""
    if isinstance(data, Dataset):
        if len(data) == 0:  # type: ignore[arg-type]
            raise UserError("the calibration set is empty")
        return data
    x = torch.as_tensor(np.asarray(data))
    if x.numel() == 0 or x.dim() < 2:
        raise UserError(f"calibration data must be a non-empty batch (N, ...) of inputs, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise UserError(f"calibration data must be float32 inputs, got {x.dtype}")
    if not torch.isfinite(x).all():
        raise UserError("calibration data contains NaN or infinite values")
    x = x.float()
    return TensorDataset(x, torch.zeros(len(x), dtype=torch.long))


def _check_int8(model: nn.Module) -> None:
    """A compress-quantized model must be in the TFLite int8 scheme to deploy: say which layer is not."""
    for name, m in model.named_modules():
        if not isinstance(m, QUANT_LAYERS):
            continue
        w, a, q = m.weight_spec, m.input_quant.spec, m.input_quant
        if w.bits != 8 or not w.symmetric or not w.narrow or w.log2 or w.power_of_two or w.group_size or \
                w.axis not in (None, 0):
            raise UserError(f"layer {name!r}: weights must be int8 symmetric [-127, 127] per tensor or per output "
                            f"channel to deploy, got {w}")
        if a.bits != 8 or a.log2 or a.power_of_two or q.alpha is not None:
            raise UserError(f"layer {name!r}: input activations must be int8 affine to deploy, got {a}"
                            + (" with PACT clipping" if q.alpha is not None else ""))
        if q.calibrating:
            raise UserError(f"layer {name!r}: its activation quantizer was never calibrated")


def prepare_module(model: nn.Module, calibration: Dataset, config: QuantizeConfig | None = None,
                   seed: int = 0) -> nn.Module:
    """A folded, fake-quantized copy (the input is not changed): quantized by compress if it was not yet."""
    m = copy.deepcopy(model).eval()
    already = any(isinstance(x, QUANT_LAYERS) for x in m.modules())
    fold_bn(m)  # into conv/linear, quantized or not (then weights are quantized after the fold, as TFLite does)
    if not already:
        m = quantize_model(m, config or QuantizeConfig(), Context(train=calibration, seed=seed))
    _check_int8(m)
    return m.eval()


@dataclass
class _Lowering:
    graph: Graph
    module: nn.Module
    fused: dict[str, str]
    ops: list[IntOp] = field(default_factory=list)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # int tensor -> NHWC shape
    tensor_of: dict[str, str] = field(default_factory=dict)  # layer (or graph input) -> int tensor
    source: dict[str, str] = field(default_factory=dict)  # int tensor -> layer whose float value it holds
    ties: list[tuple[str, str]] = field(default_factory=list)  # tensors that must share scale and zero point
    reader_quant: dict[str, ActivationQuantizer] = field(default_factory=dict)  # tensor -> the quantizer reading it
    nchw_flat: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # flattened (C, H, W) tensors
    absorbed: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)  # pad layer -> (l, r, t, b)
    fixed: dict[str, tuple[float, int]] = field(default_factory=dict)  # tensors whose range the spec fixes

    def where(self, layer: Layer) -> str:
        return layer.module or layer.name

    def unsupported(self, layer: Layer, why: str = "") -> UserError:
        return UserError(f"deploy: layer {self.where(layer)!r} ({layer.target}, op {layer.op}) has no int8 TFLite "
                         f"kernel{': ' + why if why else ''}")

    def tensor(self, layer_name: str, layer: Layer) -> str:
        t = self.tensor_of[layer_name]
        if t in self.nchw_flat and layer.op != "linear":
            raise self.unsupported(layer, "it reads a flattened NCHW tensor (only a fully connected layer can)")
        return t

    def emit(self, op: IntOp, layer: Layer, shape: tuple[int, ...]) -> None:
        self.ops.append(op)
        self.shapes[op.output] = shape
        self.tensor_of[layer.name] = op.output
        self.source[op.output] = layer.name


def _nhwc(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[0], shape[2], shape[3], shape[1]) if len(shape) == 4 else tuple(shape)


def _pair(v) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, tuple | list) else (int(v), int(v))


def _geometry(size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
              before: tuple[int, int], after: tuple[int, int]) -> str | None:
    """'same' or 'valid' when the explicit padding (before, after) per spatial axis gives exactly TFLite's taps."""
    valid = all(b == 0 for b in before)
    same = True
    for n, k, s, d, b, a in zip(size, kernel, stride, dilation, before, after, strict=True):
        torch_out = (n + b + a - (k - 1) * d - 1) // s + 1
        valid &= torch_out == (n - (k - 1) * d - 1) // s + 1
        out, top, _ = same_padding(n, k, s, d)
        same &= torch_out == out and b == top
    return "valid" if valid else "same" if same else None


def _pad_amounts(layer: Layer, module: nn.Module | None) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) of a constant-zero 2-D pad module or F.pad call."""
    if isinstance(module, nn.ZeroPad2d | nn.ConstantPad2d):
        if float(getattr(module, "value", 0.0)) != 0.0:
            raise UserError(f"deploy: pad {layer.module!r} pads with {module.value}, only zero padding has an int8 "
                            "kernel")
        return tuple(int(p) for p in module.padding)  # type: ignore[return-value]
    if layer.target == "F.pad":
        pad = layer.attrs.get("arg1")
        if layer.attrs.get("mode", "constant") != "constant" or layer.attrs.get("value") not in (None, 0, 0.0):
            raise UserError(f"deploy: pad {layer.name!r} is not a constant zero pad")
        if not isinstance(pad, tuple) or len(pad) not in (2, 4):
            raise UserError(f"deploy: pad {layer.name!r} must pad the last two axes, got {pad}")
        return tuple(pad) + ((0, 0) if len(pad) == 2 else ())  # type: ignore[return-value]
    raise UserError(f"deploy: layer {layer.module or layer.name!r} ({layer.target}) is not a constant zero pad")


def _weights(module: nn.Module) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(int8 weight in torch layout, float32 scales per output channel, float bias) as compress quantizes them."""
    w = module.weight.detach().float()
    spec = module.weight_spec
    if spec.axis is None:
        lo, hi = w.min(), w.max()
    else:
        flat = w.reshape(w.shape[0], -1)
        lo, hi = flat.min(1).values, flat.max(1).values
    scale, zero_point = qparams(lo, hi, spec)
    q = quantize(w, scale, zero_point, spec).numpy().astype(np.int8)
    bias = module.bias.detach().double().numpy() if module.bias is not None else np.zeros(w.shape[0])
    return q, scale.numpy().astype(np.float32).reshape(-1), bias


def _bias(layer: str, bias: np.ndarray, s_in: float, scales: np.ndarray) -> np.ndarray:
    """int32 bias at scale s_in s_w[c] (TFLite's convention); a bias that does not fit int32 names its layer."""
    per = np.broadcast_to(scales.astype(np.float64), bias.shape)
    q = np.round(bias / (np.float64(s_in) * per))
    worst = float(np.abs(q).max()) if q.size else 0.0
    if worst > (1 << 31) - 1:
        channel = int(np.argmax(np.abs(q)))
        raise UserError(f"{layer}: bias of output channel {channel} is {worst:.3g} steps of s_in s_w = "
                        f"{s_in * float(per[channel]):.3g}, beyond int32; the input or weight scale is too small")
    return q.astype(np.int32)


def _lower_mac(lw: _Lowering, layer: Layer, module: nn.Module) -> None:
    src = layer.inputs[0]
    pads = (0, 0, 0, 0)
    if src in lw.absorbed:  # a pad fused_layers folded into this conv
        pads = lw.absorbed[src]
    x = lw.tensor(src, layer)
    lw.reader_quant.setdefault(x, module.input_quant)
    q, scales, bias = _weights(module)
    out_shape = _nhwc(layer.output_shape)
    if isinstance(module, nn.Linear):
        if len(layer.input_shape) != 2:
            raise lw.unsupported(layer, f"a fully connected layer on a {len(layer.input_shape)}-D input")
        if x in lw.nchw_flat:  # torch flattened C, H, W; the int8 tensor is H, W, C: permute the columns
            c, h, w = lw.nchw_flat[x]
            q = q.reshape(len(q), c, h, w).transpose(0, 2, 3, 1).reshape(len(q), -1)
        op = IntOp(layer.name, "fully_connected", [x], layer.name, weight=np.ascontiguousarray(q),
                   weight_scale=scales)
    else:
        if module.padding_mode != "zeros" or len(layer.input_shape) != 4:
            raise lw.unsupported(layer, "only 2-D convolutions with zero padding")
        n, h, w, c = lw.shapes[x]
        kernel, stride, dilation = _pair(module.kernel_size), _pair(module.stride), _pair(module.dilation)
        if isinstance(module.padding, str):
            own = (0, 0) if module.padding == "valid" else None
        else:
            own = _pair(module.padding)
        if own is None:  # torch 'same' (stride 1): TF 'same' too, the odd pixel after
            padding = "same"
        else:
            left, right, top, bottom = pads
            before, after = (top + own[0], left + own[1]), (bottom + own[0], right + own[1])
            padding = _geometry((h, w), kernel, stride, dilation, before, after)
            if padding is None:  # no TFLite padding equals it: an explicit PAD (zero point), then VALID
                x = _explicit_pad(lw, layer, x, ((0, 0), (before[0], after[0]), (before[1], after[1]), (0, 0)))
                padding = "valid"
        groups = module.groups
        if groups == 1:
            weight = q.transpose(0, 2, 3, 1)  # [O, KH, KW, I]
            op = IntOp(layer.name, "conv", [x], layer.name, weight=np.ascontiguousarray(weight),
                       weight_scale=np.broadcast_to(scales, (q.shape[0],)).copy(), stride=stride, dilation=dilation,
                       padding=padding)
        elif groups == module.in_channels:
            weight = q.transpose(1, 2, 3, 0)  # [1, KH, KW, C*M]
            op = IntOp(layer.name, "depthwise", [x], layer.name, weight=np.ascontiguousarray(weight),
                       weight_scale=np.broadcast_to(scales, (q.shape[0],)).copy(), stride=stride, dilation=dilation,
                       padding=padding, depth_multiplier=module.out_channels // module.in_channels)
        else:
            raise lw.unsupported(layer, f"grouped convolution with {groups} groups")
    op.bias = bias  # float: quantized once the input scale is known (build_int_model)
    lw.emit(op, layer, out_shape)


def _explicit_pad(lw: _Lowering, layer: Layer, x: str, paddings: tuple[tuple[int, int], ...],
                  value: int | None = None) -> str:
    name = f"{layer.name}/pad"
    shape = tuple(d + b + a for d, (b, a) in zip(lw.shapes[x], paddings, strict=True))
    lw.ops.append(IntOp(name, "pad", [x], name, paddings=paddings, pad_value=value))
    lw.shapes[name] = shape
    lw.source[name] = lw.source[x]
    lw.ties.append((x, name))
    return name


def _lower_pool(lw: _Lowering, layer: Layer, module: nn.Module | None) -> None:
    x = lw.tensor(layer.inputs[0], layer)
    n, h, w, c = lw.shapes[x]
    if layer.op == "adaptive_avgpool":
        oh, ow = _pair(layer.attrs.get("output_size", layer.attrs.get("arg1", 1)))
        oh, ow = oh or h, ow or w
        if h % oh or w % ow:
            raise lw.unsupported(layer, f"adaptive pooling {h}x{w} -> {oh}x{ow} has unequal windows")
        kernel = stride = (h // oh, w // ow)
        padding, kind = "valid", "avgpool"
    else:
        if module is None:
            raise lw.unsupported(layer, "functional pooling; use the nn module")
        kernel = _pair(module.kernel_size)
        stride = _pair(module.stride if module.stride is not None else module.kernel_size)
        own = _pair(module.padding)
        if _pair(getattr(module, "dilation", 1)) != (1, 1):
            raise lw.unsupported(layer, "dilation in pooling")
        kind = "maxpool" if layer.op == "maxpool" else "avgpool"
        if getattr(module, "ceil_mode", False) and kind == "avgpool":
            raise lw.unsupported(layer, "ceil_mode in average pooling")
        if kind == "avgpool" and own != (0, 0):  # torch counts padded taps, TFLM divides by the taps inside
            raise lw.unsupported(layer, "average pooling with padding")
        left, right, top, bottom = lw.absorbed.get(layer.inputs[0], (0, 0, 0, 0))
        # torch's output size (ceil_mode may add a last window that hangs over the bottom/right edge)
        oh, ow = layer.output_shape[2], layer.output_shape[3]
        before = (top + own[0], left + own[1])
        after = tuple(max(0, (o - 1) * s + k - n - b) for o, s, k, n, b in zip(
            (oh, ow), stride, kernel, (h, w), before, strict=True))
        padding = _geometry((h, w), kernel, stride, (1, 1), before, after)
        if padding is None and kind == "maxpool" and (top, bottom, left, right) == (0, 0, 0, 0):
            # torch pads a max pool with -inf: PADV2 with int8 -128 (no value is below it), then VALID
            x = _explicit_pad(lw, layer, x, ((0, 0), (before[0], after[0]), (before[1], after[1]), (0, 0)),
                              value=-128)
            padding = "valid"
        elif padding is None:
            raise lw.unsupported(layer, f"pooling padding {own} matches neither TF 'same' nor 'valid'")
    op = IntOp(layer.name, kind, [x], layer.name, filter=kernel, stride=stride, padding=padding)
    lw.emit(op, layer, _nhwc(layer.output_shape))
    lw.ties.append((x, layer.name))


def _lower_mean(lw: _Lowering, layer: Layer) -> None:
    """torch.mean over the spatial axes of an NCHW tensor: TFLite MEAN over NHWC axes 1 and 2."""
    src, dst = layer.input_shape, layer.output_shape
    dims = layer.attrs.get("arg1", layer.attrs.get("dim"))
    dims = (dims,) if isinstance(dims, int) else dims
    if dims is None and len(src) == 4 and tuple(dst) in ((src[0], src[1], 1, 1), (src[0], src[1])):
        dims = (2, 3)  # dims given as a keyword list, which the capture does not keep: read from the shapes
    if len(src) != 4 or dims is None or {int(d) % 4 for d in dims} != {2, 3}:
        raise lw.unsupported(layer, "only the mean over both spatial axes of an NCHW tensor")
    x = lw.tensor(layer.inputs[0], layer)
    op = IntOp(layer.name, "mean", [x], layer.name, axes=(1, 2), keep_dims=len(dst) == 4)
    lw.emit(op, layer, _nhwc(tuple(dst)))


def _lower_layer(lw: _Lowering, layer: Layer) -> None:
    if layer.attrs.get("dead"):
        return
    called = layer.module and layer.name.split("#")[0] == layer.module  # a module call, not a function in one
    module = lw.module.get_submodule(layer.module) if called else None
    host = lw.fused.get(layer.name)
    if host is not None and layer.op != "pad":  # BN or ReLU/ReLU6 merged into the op that makes its input
        t = lw.tensor_of[layer.inputs[0]]
        lw.tensor_of[layer.name] = t
        lw.source[t] = layer.name
        if layer.op in ("relu", "relu6"):
            op = next(o for o in reversed(lw.ops) if o.output == t)
            op.activation = layer.op
        elif layer.op == "batchnorm":  # fold_bn folds every BN fused_layers would: one left means it could not
            raise lw.unsupported(layer, "a BatchNorm that could not be folded")
        return
    if layer.op in _ALIAS_OPS:
        lw.tensor_of[layer.name] = lw.tensor_of[layer.inputs[0]]
        return
    if layer.op in ("conv", "linear"):
        if not isinstance(module, QUANT_LAYERS):
            raise lw.unsupported(layer, "not quantized (excluded from the quantize step?)")
        _lower_mac(lw, layer, module)
    elif layer.op == "pad":
        pads = _pad_amounts(layer, module)
        x = lw.tensor(layer.inputs[0], layer)
        if host is not None:  # fused_layers folds it into its consumer's padding
            lw.absorbed[layer.name] = pads
            lw.tensor_of[layer.name] = x
            return
        left, right, top, bottom = pads
        if len(lw.shapes[x]) != 4:
            raise lw.unsupported(layer, "padding of a tensor that is not 4-D")
        op = IntOp(layer.name, "pad", [x], layer.name, paddings=((0, 0), (top, bottom), (left, right), (0, 0)))
        lw.emit(op, layer, _nhwc(layer.output_shape))
        lw.ties.append((x, layer.name))
    elif layer.op in ("maxpool", "avgpool", "adaptive_avgpool"):
        _lower_pool(lw, layer, module)
    elif layer.op in ("add", "mul"):
        targets = _ADD_TARGETS if layer.op == "add" else _MUL_TARGETS
        if layer.target not in targets or len(layer.inputs) != 2 or layer.attrs.get("const_inputs") or \
                layer.attrs.get("alpha") not in (None, 1):
            raise lw.unsupported(layer, f"only {layer.op} of two activation tensors")
        if layer.input_shapes[0] != layer.input_shapes[1]:
            raise lw.unsupported(layer, f"broadcasting {layer.input_shapes[0]} with {layer.input_shapes[1]}")
        inputs = [lw.tensor(name, layer) for name in layer.inputs]
        lw.emit(IntOp(layer.name, layer.op, inputs, layer.name), layer, _nhwc(layer.output_shape))
    elif layer.op == "softmax":
        rank = len(layer.input_shape)
        dim = layer.attrs.get("dim", layer.attrs.get("arg1"))
        if dim is None or int(dim) % rank != rank - 1 or rank != 2:
            raise lw.unsupported(layer, "only a softmax over the features of an (N, features) tensor")
        x = lw.tensor(layer.inputs[0], layer)
        lw.emit(IntOp(layer.name, "softmax", [x], layer.name), layer, tuple(layer.output_shape))
        lw.fixed[layer.name] = SOFTMAX_OUTPUT
    elif layer.op == "sigmoid":
        x = lw.tensor(layer.inputs[0], layer)
        lw.emit(IntOp(layer.name, "logistic", [x], layer.name), layer, _nhwc(layer.output_shape))
        lw.fixed[layer.name] = SOFTMAX_OUTPUT  # the spec fixes LOGISTIC's int8 output as softmax's
    elif layer.op == "reduce" and layer.target in ("torch.mean", "Tensor.mean"):
        _lower_mean(lw, layer)
    elif layer.op == "cat":
        rank = len(layer.output_shape)
        dim = layer.attrs.get("dim", layer.attrs.get("arg1", 0))
        dim = int(dim) % rank
        axis = {0: 0, 1: 3, 2: 1, 3: 2}[dim] if rank == 4 else dim
        inputs = [lw.tensor(name, layer) for name in layer.inputs]
        lw.emit(IntOp(layer.name, "concat", inputs, layer.name, axis=axis), layer, _nhwc(layer.output_shape))
        lw.ties.extend((inputs[0], t) for t in inputs[1:] + [layer.name])
    elif layer.op == "reshape":
        x = lw.tensor_of[layer.inputs[0]]
        src, dst = layer.input_shape, layer.output_shape
        if src == dst:
            lw.tensor_of[layer.name] = x
            return
        if len(dst) != 2 or len(src) not in (2, 4):
            raise lw.unsupported(layer, f"reshape {src} -> {dst}: only flattening to (N, features)")
        lw.emit(IntOp(layer.name, "reshape", [x], layer.name), layer, tuple(dst))
        lw.ties.append((x, layer.name))
        if len(src) == 4 and src[2] * src[3] > 1:
            lw.nchw_flat[layer.name] = (src[1], src[2], src[3])
    else:
        why = ""
        if layer.op in ("relu", "relu6"):
            why = "an activation that does not fuse into its producer (the producer has other consumers)"
        raise lw.unsupported(layer, why)


def without_identities(graph: Graph) -> Graph:
    """The graph with identity layers (Dropout, and the Identity fold_bn leaves where a BN was) cut out and their
    readers wired to what they read, so that ``fused_layers`` sees conv -> ReLU where fold_bn left
    conv -> Identity -> ReLU."""
    through: dict[str, str] = {}
    layers = []
    for layer in graph.layers:
        inputs = [through.get(name, name) for name in layer.inputs]
        if layer.op == "identity" and len(inputs) == 1:
            through[layer.name] = inputs[0]
            continue
        layers.append(dataclasses.replace(layer, inputs=inputs))
    return dataclasses.replace(graph, layers=layers,
                               output_names=[through.get(name, name) for name in graph.output_names])


def lower(graph: Graph, module: nn.Module, fused: dict[str, str] | None = None) -> _Lowering:
    """The TFLite ops of a captured, fake-quantized graph; UserError names the first layer without a kernel."""
    graph = without_identities(graph)
    lw = _Lowering(graph, module, fused_layers(graph) if fused is None else fused)
    for name, shape in zip(graph.input_names, graph.input_shapes, strict=True):
        lw.tensor_of[name] = name
        lw.shapes[name] = _nhwc(shape)
        lw.source[name] = name
    for layer in graph.layers:
        _lower_layer(lw, layer)
    for name in lw.graph.output_names:
        if lw.tensor_of.get(name) in lw.nchw_flat:
            raise UserError(f"deploy: output {name!r} is a flattened NCHW tensor; end the model with a linear layer")
    return lw


@torch.no_grad()
def _observe(lw: _Lowering, module: nn.Module, data: Dataset, batches: int, batch_size: int) -> dict[str, Observer]:
    """minmax of each int tensor's float value (the fake-quantized model's, at the layer it stands for)."""
    layer_of = {layer.name: layer for layer in lw.graph.layers}
    observers = {t: Observer("minmax", activation_spec()) for t in lw.source}
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    for i, (x, *_) in enumerate(loader):
        if i >= batches:
            break
        values = node_values(module, [x])
        for t, src in lw.source.items():  # a graph input is its own source
            observers[t].observe(values[layer_of[src].attrs["fx_node"]] if src in layer_of else x)
    return observers


def build_int_model(model: nn.Module, calibration: torch.Tensor | np.ndarray | Dataset,
                    input_shape: tuple[int, ...] | None = None, *, config: QuantizeConfig | None = None,
                    fused: dict[str, str] | None = None, batches: int = 8, batch_size: int = 64,
                    seed: int = 0) -> IntModel:
    """The IntModel of ``model`` (float, or fake-quantized by compress) calibrated on ``calibration``."""
    data = calibration_dataset(calibration)
    sample = data[0][0]
    if input_shape is None:
        input_shape = (1,) + tuple(sample.shape)
    if tuple(sample.shape) != tuple(input_shape[1:]) or sample.dtype != torch.float32:
        raise UserError(f"calibration inputs must be float32 of shape {tuple(input_shape[1:])}, got "
                        f"{sample.dtype} {tuple(sample.shape)}")
    module = prepare_module(model, data, config, seed)
    graph = capture(module, input_shape, name=type(model).__name__)
    lw = lower(graph, module, fused)
    observers = _observe(lw, module, data, batches, batch_size)
    tensors = _tensors(lw, observers)
    for op in lw.ops:
        if op.bias is not None and op.bias.dtype != np.int32:
            op.bias = _bias(op.name, op.bias, tensors[op.inputs[0]].scale, np.asarray(op.weight_scale))
    outputs = [lw.tensor_of[name] for name in lw.graph.output_names]
    return IntModel(tensors, lw.ops, list(graph.input_names), outputs, name=graph.name).prepare()


def _tensors(lw: _Lowering, observers: dict[str, Observer]) -> dict[str, QTensor]:
    """One (scale, zero point) per group of tied tensors: a reading quantizer's, else the union of the ranges."""
    names = list(lw.shapes)
    tensors: dict[str, QTensor] = {}
    for group in components(names, lw.ties):
        quantizers = [lw.reader_quant[t] for t in group if t in lw.reader_quant]
        fixed = [lw.fixed[t] for t in group if t in lw.fixed]
        if fixed:  # the softmax output: 1/256, -128, whatever reads it
            scale, zero_point = fixed[0]
        elif quantizers:
            q = quantizers[0]
            scale = q.step_size.detach() if q.step_size is not None else q.scale  # LSQ's learned step
            zero_point = q.zero_point
        else:
            ranges = [observers[t].range_() for t in group if observers[t].lo is not None]
            if not ranges:
                raise UserError(f"deploy: no calibration value reached tensor {group[0]!r}")
            lo = torch.stack([r[0] for r in ranges]).min()
            hi = torch.stack([r[1] for r in ranges]).max()
            scale, zero_point = qparams(lo, hi, activation_spec())
        for t in group:
            tensors[t] = QTensor(t, lw.shapes[t], float(scale), int(zero_point))
    return tensors
