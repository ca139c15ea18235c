"""Capture an ``nn.Module`` as a typed ``Graph`` with torch.fx and shape propagation.

Shapes are propagated on the meta device: parameters are swapped for meta tensors through
``torch.func.functional_call``, so no real arithmetic runs and the model is not changed or copied.
That is what makes capture of VGG-16 cost milliseconds instead of a real forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
from torch.fx.node import map_aggregate

from nntailor.errors import UserError
from nntailor.graph.ops import (
    SHAPE_METHODS,
    callable_name,
    function_kind,
    method_kind,
    module_kind,
)
from nntailor.graph.types import Graph, Layer, Shape

_MODULE_ATTRS = (
    "in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
    "in_features", "out_features", "num_features", "affine", "eps", "normalized_shape",
    "elementwise_affine", "output_size", "embed_dim", "num_heads", "kdim", "vdim", "batch_first",
    "num_embeddings", "embedding_dim", "output_padding", "num_groups", "ceil_mode", "mode", "dim",
    "scale_factor",
)


class _Tracer(fx.Tracer):
    """fx's default leaves (torch.nn modules) plus any module whose kind we know."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if module_kind(m) is not None:
            return True
        return super().is_leaf_module(m, module_qualified_name)


class _ShapeRecorder(fx.Interpreter):
    """Runs the graph once and keeps every node's result (meta tensors: shapes only)."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm, garbage_collect_values=False)
        self.values: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        self.values[n] = result
        return result


class _Propagate(nn.Module):
    """Wrapper so that functional_call can swap the traced module's parameters for meta tensors."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__()
        self.gm = gm

    def forward(self, *inputs: torch.Tensor) -> dict[fx.Node, Any]:
        recorder = _ShapeRecorder(self.gm)
        recorder.run(*inputs)
        return recorder.values


def _as_shapes(shapes: Shape | Sequence[Shape]) -> list[Shape]:
    if isinstance(shapes, torch.Size) or (shapes and isinstance(shapes[0], int)):
        shapes = [tuple(shapes)]  # type: ignore[list-item]
    out = []
    for s in shapes:  # type: ignore[union-attr]
        shape = tuple(int(d) for d in s)
        if not shape or any(d <= 0 for d in shape):
            raise UserError(f"input shape {shape} must be a non-empty list of positive sizes")
        out.append(shape)
    return out


def _tensors(value: Any) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []
    map_aggregate(value, lambda v: found.append(v) if isinstance(v, torch.Tensor) else None)
    return found


def _arg_nodes(args: Any) -> list[fx.Node]:
    found: list[fx.Node] = []
    map_aggregate(args, lambda a: found.append(a) if isinstance(a, fx.Node) else None)
    return found


def _wants_integer_input(gm: fx.GraphModule, placeholder: fx.Node) -> bool:
    """Token ids feed an embedding: such an input must be integer."""
    for user in placeholder.users:
        if user.op == "call_module" and isinstance(gm.get_submodule(str(user.target)), nn.Embedding):
            return True
        if user.op == "call_function" and user.target is torch.nn.functional.embedding:
            return True
    return False


def _trace(model: nn.Module, name: str) -> fx.GraphModule:
    if module_kind(model) is not None:
        model = nn.Sequential(model)  # a bare layer is a leaf: give it a parent to be called from
    try:
        graph = _Tracer().trace(model)
    except Exception as exc:  # fx raises many types for untraceable Python
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"torch.fx cannot trace {name}: {first} (control flow must not depend on tensor values)"
        ) from exc
    return fx.GraphModule(model, graph, name)


def _propagate(gm: fx.GraphModule, inputs: list[torch.Tensor], name: str) -> dict[fx.Node, Any]:
    wrapper = _Propagate(gm)
    state = {f"gm.{k}": torch.empty_like(v, device="meta") for k, v in gm.named_parameters()}
    state.update({f"gm.{k}": torch.empty_like(v, device="meta") for k, v in gm.named_buffers()})
    meta_inputs = [t.to("meta") for t in inputs]
    try:
        with torch.no_grad():
            return torch.func.functional_call(wrapper, state, tuple(meta_inputs))
    except Exception:
        pass  # an op without a meta kernel: fall back to one real forward on zeros
    try:
        with torch.no_grad():
            return wrapper(*inputs)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        shapes = ", ".join(str(tuple(t.shape)) for t in inputs)
        raise UserError(f"{name} does not run on input shape {shapes}: {first}") from exc


def _module_attrs(module: nn.Module) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for key in _MODULE_ATTRS:
        if hasattr(module, key):
            value = getattr(module, key)
            if isinstance(value, int | float | bool | str | tuple | list) or value is None:
                attrs[key] = tuple(value) if isinstance(value, list) else value
    attrs["bias"] = getattr(module, "bias", None) is not None or getattr(module, "in_proj_bias", None) is not None
    return attrs


def _const_args(node: fx.Node) -> dict[str, Any]:
    """Non-tensor arguments of a functional call (dims, strides, equations), kept for pricing."""
    attrs: dict[str, Any] = {}
    for i, arg in enumerate(node.args):
        if isinstance(arg, int | float | str | bool) or (
            isinstance(arg, tuple | list) and all(isinstance(a, int) for a in arg)
        ):
            attrs[f"arg{i}"] = tuple(arg) if isinstance(arg, list) else arg
    for key, arg in node.kwargs.items():
        if isinstance(arg, int | float | str | bool) or arg is None:
            attrs[key] = arg
    return attrs


def capture(
    model: nn.Module,
    input_shape: Shape | Sequence[Shape],
    *,
    name: str | None = None,
    input_dtype: torch.dtype | None = None,
) -> Graph:
    """Trace ``model`` and propagate ``input_shape`` (batch included) through it.

    Raises ``UserError`` when the model cannot be traced or does not run on that shape.
    """
    name = name or type(model).__name__
    shapes = _as_shapes(input_shape)
    gm = _trace(model, name)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(shapes):
        raise UserError(f"{name} takes {len(placeholders)} input(s) but {len(shapes)} shape(s) were given")
    inputs = []
    for node, shape in zip(placeholders, shapes, strict=True):
        dtype = input_dtype or (torch.long if _wants_integer_input(gm, node) else torch.float32)
        inputs.append(torch.zeros(shape, dtype=dtype))
    values = _propagate(gm, inputs, name)

    layers: list[Layer] = []
    producer: dict[fx.Node, str] = {}  # node -> name of the layer (or graph input) that made its tensor
    used_names: set[str] = set()
    module_calls: dict[str, int] = {}
    seen_params: set[int] = set()

    def unique(base: str) -> str:
        candidate, i = base, 1
        while candidate in used_names:
            i += 1
            candidate = f"{base}#{i}"
        used_names.add(candidate)
        return candidate

    input_names = []
    for node in placeholders:
        producer[node] = unique("input" if len(placeholders) == 1 else f"input_{len(input_names)}")
        input_names.append(producer[node])

    for node in gm.graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        value = values.get(node)
        out_tensors = _tensors(value)
        if node.op == "get_attr":
            continue  # parameters/buffers used directly: owned by the layer that consumes them
        if not out_tensors or (node.op == "call_method" and node.target in SHAPE_METHODS):
            continue  # shape arithmetic (x.size(0) and friends): no tensor, no cost

        arg_nodes = _arg_nodes((node.args, node.kwargs))
        in_shapes = [tuple(t.shape) for a in arg_nodes for t in _tensors(values.get(a))]
        inputs_from = [producer[a] for a in arg_nodes if a in producer]
        weights: dict[str, torch.Tensor] = {}
        stack = node.meta.get("nn_module_stack") or {}
        module_path = next(reversed(stack.values()))[0] if stack else ""

        if node.op == "call_module":
            module = gm.get_submodule(str(node.target))
            kind = module_kind(module) or "other"
            target = type(module).__name__
            module_path = str(node.target)
            calls = module_calls.get(module_path, 0) + 1
            module_calls[module_path] = calls
            layer_name = unique(module_path if calls == 1 else f"{module_path}#{calls}")
            attrs = _module_attrs(module)
            candidates = dict(module.named_parameters())
        else:
            if node.op == "call_function":
                kind = function_kind(node.target)
                target = callable_name(node.target)
            else:  # call_method
                kind = method_kind(str(node.target))
                target = f"Tensor.{node.target}"
            layer_name = unique(f"{module_path}.{node.name}" if module_path else node.name)
            attrs = _const_args(node)
            candidates = {}
            for a in arg_nodes:
                if a.op == "get_attr":
                    obj = gm
                    for part in str(a.target).split("."):
                        obj = getattr(obj, part)
                    if isinstance(obj, nn.Parameter):
                        candidates[str(a.target)] = obj
        for key, p in candidates.items():
            if id(p) not in seen_params:
                seen_params.add(id(p))
                weights[key] = p
        if node.op == "call_module" and module_calls[module_path] > 1:
            attrs["shared"] = True

        layer = Layer(
            name=layer_name,
            op=kind,
            target=target,
            module=module_path,
            input_shapes=in_shapes,
            output_shapes=[tuple(t.shape) for t in out_tensors],
            inputs=inputs_from,
            attrs=attrs,
            weights=weights,
        )
        layers.append(layer)
        producer[node] = layer_name

    output_node = next(n for n in gm.graph.nodes if n.op == "output")
    output_names = [producer[n] for n in _arg_nodes(output_node.args) if n in producer]

    unique_params = {id(p): p for p in model.parameters()}
    return Graph(
        name=name,
        layers=layers,
        input_shapes=shapes,
        input_names=input_names,
        output_names=output_names,
        total_params=sum(p.numel() for p in unique_params.values()),
        model=model,
    )
