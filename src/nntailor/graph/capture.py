"""Capture an ``nn.Module`` as a typed ``Graph`` with torch.fx and shape propagation.

Shapes are propagated on the meta device by interpreting the fx graph node by node: common layers get
their output shape from a formula (``graph.shapes``), everything else runs on meta tensors (a module's
parameters are swapped for meta tensors through ``torch.func.functional_call``). No real arithmetic runs
and the model is neither changed nor copied: capture of VGG-16 costs milliseconds, not a forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
from torch.utils.weak import WeakIdKeyDictionary

from nntailor.errors import UserError
from nntailor.graph.ops import (
    SHAPE_METHODS,
    callable_name,
    function_kind,
    method_kind,
    module_kind,
)
from nntailor.graph.shapes import SAME_SHAPE_KINDS, module_output_shape
from nntailor.graph.structure import trace_key
from nntailor.graph.types import Graph, Layer, Shape
from nntailor.hostmem import human

_MODULE_ATTRS = frozenset({
    "in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
    "in_features", "out_features", "num_features", "affine", "eps", "normalized_shape",
    "elementwise_affine", "output_size", "embed_dim", "num_heads", "kdim", "vdim", "batch_first",
    "num_embeddings", "embedding_dim", "output_padding", "num_groups", "ceil_mode", "mode", "dim",
    "scale_factor", "value", "padding_mode",
})


class _Tracer(fx.Tracer):
    """fx's default leaves (torch.nn modules) plus any module whose kind we know."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if module_kind(m) is not None:
            return True
        return super().is_leaf_module(m, module_qualified_name)


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


def _flatten(value: Any, kind: type, found: list) -> list:
    """Items of ``kind`` in nested tuples, lists and dicts (fx's map_aggregate, without rebuilding)."""
    if isinstance(value, kind):
        found.append(value)
    elif isinstance(value, tuple | list):
        for v in value:
            _flatten(v, kind, found)
    elif isinstance(value, dict):
        for v in value.values():
            _flatten(v, kind, found)
    return found


def _tensors(value: Any) -> list[torch.Tensor]:
    return _flatten(value, torch.Tensor, [])


def _arg_nodes(args: Any) -> list[fx.Node]:
    return _flatten(args, fx.Node, [])


def _wants_integer_input(root: nn.Module, placeholder: fx.Node) -> bool:
    """Token ids feed an embedding: such an input must be integer."""
    for user in placeholder.users:
        if user.op == "call_module" and isinstance(_submodule(root, str(user.target)), nn.Embedding):
            return True
        if user.op == "call_function" and user.target is torch.nn.functional.embedding:
            return True
    return False


def trace(model: nn.Module, name: str) -> tuple[nn.Module, fx.Graph]:
    """fx-trace ``model`` with our leaf rules: (the root actually traced, its graph). No shapes."""
    if module_kind(model) is not None:
        model = nn.Sequential(model)  # a bare layer is a leaf: give it a parent to be called from
    try:
        graph = _Tracer().trace(model)
    except RecursionError:  # fx recurses once per module level (and per Python call inside each)
        raise UserError(f"model nested too deep for torch.fx: {name} exceeds Python's recursion limit") from None
    except Exception as exc:  # fx raises many types for untraceable Python
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"torch.fx cannot trace {name}: {first} (control flow must not depend on tensor values)"
        ) from exc
    return model, graph


_LEAVES = _Tracer()
# model -> (trace_key, its fx graph), weakly: tracing is most of a capture and analyses repeat on one model
# (search, compression loops, a benchmark); the key changes whenever the graph fx would build can (structure.py)
_TRACES: WeakIdKeyDictionary = WeakIdKeyDictionary()


def _is_leaf(module: nn.Module) -> bool:
    return _LEAVES.is_leaf_module(module, "")


def _trace_cached(model: nn.Module, name: str) -> tuple[nn.Module, fx.Graph]:
    """``trace``, reusing the last graph of this model while the state the trace depends on is unchanged."""
    if module_kind(model) is not None:
        return trace(model, name)  # traced inside a fresh wrapper: nothing to reuse
    cached = _TRACES.get(model)
    if cached is not None and cached[0] == trace_key(model, _is_leaf):
        return model, cached[1]
    root, graph = trace(model, name)
    _TRACES[model] = (trace_key(model, _is_leaf), graph)  # after tracing: fx may add _tensor_constant attributes
    return root, graph


def _submodule(root: nn.Module, target: str) -> nn.Module:
    """``root.get_submodule(target)`` for the paths fx gives call_module nodes (always registered children):
    straight through ``_modules``, without nn.Module.__getattr__ and its isinstance checks at every step."""
    module = root
    for part in target.split("."):
        module = module._modules[part]  # type: ignore[assignment]
    return module


def _fetch(root: nn.Module, target: str) -> Any:
    obj: Any = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _meta(shape: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    return torch.empty(tuple(shape), dtype=like.dtype, device="meta")


def _first_tensor(args: Sequence[Any]) -> torch.Tensor | None:
    return next((a for a in args if isinstance(a, torch.Tensor)), None)


def _call_meta(root: nn.Module, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """One node on meta tensors: a shape formula where there is one, else meta execution."""
    x = _first_tensor(args)
    if node.op == "call_module":
        module = _submodule(root, str(node.target))
        kind = module_kind(module)
        if x is not None:
            shape = module_output_shape(module, kind, tuple(x.shape))
            if shape is not None:
                return torch.empty(shape, dtype=torch.float32 if kind == "embedding" else x.dtype, device="meta")
        state = {k: torch.empty_like(v, device="meta") for k, v in module.named_parameters()}
        state.update({k: torch.empty_like(v, device="meta") for k, v in module.named_buffers()})
        return torch.func.functional_call(module, state, args, kwargs)
    kind = function_kind(node.target) if node.op == "call_function" else method_kind(str(node.target))
    if x is not None and kind in SAME_SHAPE_KINDS:
        return _meta(x.shape, x)
    if x is not None and kind in ("add", "mul", "div") and len(args) == 2 and not kwargs:
        shapes = [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]
        return _meta(torch.broadcast_shapes(*shapes), x)
    if node.op == "call_function":
        return node.target(*args, **kwargs)
    return getattr(args[0], str(node.target))(*args[1:], **kwargs)


def _call_real(root: nn.Module, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    if node.op == "call_module":
        return _submodule(root, str(node.target))(*args, **kwargs)
    if node.op == "call_function":
        return node.target(*args, **kwargs)
    return getattr(args[0], str(node.target))(*args[1:], **kwargs)


def _run(root: nn.Module, graph: fx.Graph, inputs: list[torch.Tensor], meta: bool,
         env: dict[fx.Node, Any] | None = None) -> dict[fx.Node, Any]:
    """Every node's value; ``env`` (when given) is filled in place, so a caller sees how far a failed run got."""
    env = {} if env is None else env
    feed = iter(inputs)
    call = _call_meta if meta else _call_real
    with torch.no_grad():
        for node in graph.nodes:
            if node.op == "placeholder":
                env[node] = next(feed)
            elif node.op == "get_attr":
                obj = _fetch(root, str(node.target))
                env[node] = torch.empty_like(obj, device="meta") if meta and isinstance(obj, torch.Tensor) else obj
            elif node.op != "output":
                args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda n: env[n])
                env[node] = call(root, node, tuple(args), dict(kwargs))
    return env


# A real forward is the fallback for ops without a meta kernel; above this it would cost more memory than a
# shape check is worth (ResNet-8 at 4000x4000 needs 13.5 GB), and the meta pass's error is reported instead.
MAX_REAL_FORWARD_BYTES = 256 << 20


def _real_forward_bytes(graph: fx.Graph, env: dict[fx.Node, Any], inputs: list[torch.Tensor]) -> int:
    """Memory of a real forward, estimated from a meta pass that stopped part-way: ``_run`` keeps every value
    alive, so it is the sum of all outputs; the nodes the meta pass did not reach are priced at the largest
    tensor it saw (an input included)."""
    seen = [t for value in env.values() for t in _tensors(value)] + list(inputs)
    done = sum(t.numel() * t.element_size() for t in seen)
    largest = max(t.numel() * t.element_size() for t in seen)
    remaining = sum(1 for n in graph.nodes if n not in env and n.op not in ("placeholder", "output"))
    return done + remaining * largest


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _failed_at(root: nn.Module, graph: fx.Graph, env: dict[fx.Node, Any]) -> str:
    """The node a meta pass stopped at, with what it was given: meta kernels' messages are terse ("Invalid
    channel dimensions"), so the layer and its input shapes say what did not fit."""
    node = next((n for n in graph.nodes if n not in env and n.op != "output"), None)
    if node is None:
        return ""
    if node.op == "call_module":
        module = root.get_submodule(str(node.target))
        text = repr(module)
        what = f"{node.target} {text if chr(10) not in text else type(module).__name__}"
    else:
        what = node.name
    given = [tuple(t.shape) for a in _arg_nodes((node.args, node.kwargs)) for t in _tensors(env.get(a))]
    return f"at {what} on {', '.join(map(str, given)) or 'no tensor'}: "


def _propagate(root: nn.Module, graph: fx.Graph, inputs: list[torch.Tensor], name: str) -> dict[fx.Node, Any]:
    """Shapes on meta tensors; if that fails, one real forward on zeros, in eval mode (so BN statistics and
    other buffers are not touched) and with every module's train/eval flag restored afterwards, when that
    forward is small enough (``MAX_REAL_FORWARD_BYTES``); else the meta pass's error is the answer."""
    env: dict[fx.Node, Any] = {}
    shapes = ", ".join(str(tuple(t.shape)) for t in inputs)
    try:
        return _run(root, graph, inputs, meta=True, env=env)
    except RecursionError:
        raise UserError(f"model nested too deep for torch.fx: {name} exceeds Python's recursion limit") from None
    except Exception as exc:  # an op without a meta kernel or a shape rule we got wrong: a real forward decides
        needed = _real_forward_bytes(graph, env, inputs)
        if needed > MAX_REAL_FORWARD_BYTES:
            where = _failed_at(root, graph, env)
            raise UserError(
                f"{name} does not run on input shape {shapes}: {where}{_first_line(exc)} "
                f"(checked on the meta device; a real forward would need ~{human(needed)})"
            ) from exc
    modes = {m: m.training for m in root.modules()}
    try:
        real = [torch.zeros(t.shape, dtype=t.dtype) for t in inputs]
        root.eval()
        return _run(root, graph, real, meta=False)
    except Exception as exc:
        raise UserError(f"{name} does not run on input shape {shapes}: {_first_line(exc)}") from exc
    finally:
        for module, training in modes.items():
            module.training = training


def node_values(model: nn.Module, inputs: Sequence[torch.Tensor]) -> dict[str, Any]:
    """Every fx node's real output for one forward, by node name (a layer's is at ``attrs["fx_node"]``): what
    deploy calibrates tensor ranges on. The caller sets train/eval mode."""
    root, fx_graph = trace(model, type(model).__name__)
    return {node.name: value for node, value in _run(root, fx_graph, list(inputs), meta=False).items()}


def _module_attrs(module: nn.Module) -> dict[str, Any]:
    # vars(), not hasattr(): a missing name on nn.Module goes through __getattr__ and an exception, per key
    fields = vars(module)
    attrs: dict[str, Any] = {}
    for key in _MODULE_ATTRS.intersection(fields):
        value = fields[key]
        if isinstance(value, int | float | bool | str | tuple | list) or value is None:
            attrs[key] = tuple(value) if isinstance(value, list) else value
    params = module._parameters
    attrs["bias"] = params.get("bias") is not None or params.get("in_proj_bias") is not None
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


def _in_place(root: nn.Module, node: fx.Node) -> bool:
    """An op whose effect is a mutation (x.relu_(), nn.ReLU(inplace=True), F.relu(x, inplace=True))."""
    if node.op == "call_method" and str(node.target).endswith("_"):
        return True
    if node.op == "call_module":
        module = _submodule(root, str(node.target))  # vars() first: a missing attribute costs an exception
        return bool(vars(module).get("inplace", getattr(type(module), "inplace", False)))
    return node.op == "call_function" and node.kwargs.get("inplace") is True


def _mark_dead(root: nn.Module, fx_graph: fx.Graph, node_layer: dict[fx.Node, Layer]) -> None:
    """Flag ``dead`` the layers whose result reaches no output (attention weights a caller drops): a converter
    removes them, so the cost model prices them at zero; the counting tools ran them and still count them.
    Liveness follows every fx edge, non-tensor ones too (a gate read through .item() is used), and in-place
    ops are live for their mutation."""
    stack = [n for n in fx_graph.nodes if n.op == "output" or _in_place(root, n)]
    live: set[fx.Node] = set()
    while stack:
        node = stack.pop()
        if node not in live:
            live.add(node)
            stack.extend(node.all_input_nodes)
    for node, layer in node_layer.items():
        if node not in live and not layer.attrs.get("constant"):
            layer.attrs["dead"] = True


def capture(
    model: nn.Module,
    input_shape: Shape | Sequence[Shape],
    *,
    name: str | None = None,
    input_dtype: torch.dtype | None = None,
) -> Graph:
    """Trace ``model`` and propagate ``input_shape`` (batch included) through it.

    Raises ``UserError`` when the model cannot be traced or does not run on that shape. The fx trace of a model
    is reused by later captures while its module tree and the state its forwards read are unchanged
    (``graph.structure``); shapes, attributes and parameters are read afresh every time.
    """
    name = name or type(model).__name__
    shapes = _as_shapes(input_shape)
    root, fx_graph = _trace_cached(model, name)
    placeholders = [n for n in fx_graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(shapes):
        raise UserError(f"{name} takes {len(placeholders)} input(s) but {len(shapes)} shape(s) were given")
    inputs = []
    for node, shape in zip(placeholders, shapes, strict=True):
        dtype = input_dtype or (torch.long if _wants_integer_input(root, node) else torch.float32)
        inputs.append(torch.empty(shape, dtype=dtype, device="meta"))  # no memory: shapes only
    values = _propagate(root, fx_graph, inputs, name)

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

    # Nodes that do not depend on an input (self.w.t(), self.a @ self.b) are constants: a converter folds them
    # into the model's data. They become layers flagged "constant" (the counting tools do count them), own
    # the parameters they read, and pass those on to the layers using them as shared (read, not recounted).
    const_params: dict[fx.Node, dict[str, torch.Tensor]] = {}
    node_layer: dict[fx.Node, Layer] = {}

    for node in fx_graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        arg_nodes = _arg_nodes((node.args, node.kwargs))
        constant = not any(a in producer for a in arg_nodes)
        if node.op == "get_attr":
            obj = _fetch(root, str(node.target))
            const_params[node] = {str(node.target): obj} if isinstance(obj, nn.Parameter) else {}
            continue
        if constant:
            const_params[node] = {k: v for a in arg_nodes for k, v in const_params.get(a, {}).items()}
        value = values.get(node)
        out_tensors = _tensors(value)
        if not out_tensors or (node.op == "call_method" and node.target in SHAPE_METHODS):
            continue  # shape arithmetic (x.size(0) and friends): no tensor, no cost
        if node.op == "call_module" and constant:
            const_params[node] = {}  # a module run on constants only: its own parameters, below

        in_shapes: list[Shape] = []
        const_inputs: list[int] = []
        for a in arg_nodes:
            for t in _tensors(values.get(a)):
                if a not in producer:
                    const_inputs.append(len(in_shapes))
                in_shapes.append(tuple(t.shape))
        inputs_from = [producer[a] for a in arg_nodes if a in producer]
        stack = node.meta.get("nn_module_stack") or {}
        module_path = next(reversed(stack.values()))[0] if stack else ""

        if node.op == "call_module":
            module = _submodule(root, str(node.target))
            kind = module_kind(module) or "other"
            target = type(module).__name__
            module_path = str(node.target)
            calls = module_calls.get(module_path, 0) + 1
            module_calls[module_path] = calls
            layer_name = unique(module_path if calls == 1 else f"{module_path}#{calls}")
            attrs = _module_attrs(module)
            # a leaf without children owns exactly its _parameters; named_parameters() walks the tree
            if module._modules:
                candidates = dict(module.named_parameters())
            else:  # _parameters holds None for absent ones (bias=False)
                candidates = {k: p for k, p in module._parameters.items() if p is not None}
        else:
            if node.op == "call_function":
                kind = function_kind(node.target)
                target = callable_name(node.target)
                if kind == "getitem" and isinstance(values.get(node.args[0]), torch.Tensor):
                    kind = "slice"  # indexing a tensor copies (TFLite StridedSlice / Gather), unlike tuple unpacking
            else:  # call_method
                kind = method_kind(str(node.target))
                target = f"Tensor.{node.target}"
            layer_name = unique(f"{module_path}.{node.name}" if module_path else node.name)
            attrs = _const_args(node)
            candidates = {}
            for a in arg_nodes:
                candidates.update(const_params.get(a, {}))
        weights: dict[str, torch.Tensor] = {}
        shared: dict[str, torch.Tensor] = {}
        for key, p in candidates.items():
            if id(p) in seen_params:
                shared[key] = p  # priced again (traffic), counted once (params, flash)
            else:
                seen_params.add(id(p))
                weights[key] = p
        if node.op == "call_module" and module_calls[module_path] > 1:
            attrs["shared"] = True
        attrs["fx_node"] = node.name  # where node_values() finds this layer's real output
        if const_inputs:
            attrs["const_inputs"] = tuple(const_inputs)
        if constant:
            attrs["constant"] = True
            const_params[node] = {**shared, **weights}

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
            shared_weights=shared,
        )
        layers.append(layer)
        node_layer[node] = layer
        if not constant:
            producer[node] = layer_name

    output_node = next(n for n in fx_graph.nodes if n.op == "output")
    output_names = [producer[n] for n in _arg_nodes(output_node.args) if n in producer]
    _mark_dead(root, fx_graph, node_layer)

    unique_params = {id(p): p for p in model.parameters()}
    return Graph(
        name=name,
        layers=layers,
        input_shapes=shapes,
        input_names=input_names,
        output_names=output_names,
        total_params=sum(p.numel() for p in unique_params.values()),
        model=model,
        unowned=[p for i, p in unique_params.items() if i not in seen_params],
    )
