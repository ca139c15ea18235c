"""What a torch.fx trace of a module depends on, as one comparable value: a trace can be reused while it holds.

fx records the calls a forward makes, not the values flowing through them, and it does not look inside leaf
modules. So the graph it builds is fixed by: the module tree (names, objects, classes, which are leaves),
and, for every module it traces into, the Python state its forward can branch on (plain attributes, which
parameters, buffers and children are None, forward hooks, a forward replaced on the instance) and its
training flag. Parameter and buffer values and shapes are not part of it: fx reads them as ``get_attr``
nodes, and shapes are propagated afresh on every capture. What the key cannot see is state outside the
module tree (globals, class attributes other than ``forward``) that a forward reads.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import torch
import torch.nn as nn

# nn.Module's own bookkeeping in a module's __dict__: what of it matters is keyed explicitly below
_MODULE_INTERNALS = frozenset(vars(nn.Module()))
_FORWARD_HOOKS = (
    "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_forward_hooks", "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
)
_SCALARS = (int, float, complex, bool, str, bytes, type(None), type)


def _freeze(value: Any) -> Hashable:
    """A plain value by value, containers item by item, anything else (tensors, objects) by identity."""
    if isinstance(value, _SCALARS):
        return type(value), value
    if isinstance(value, tuple | list):
        return type(value), tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return dict, tuple((_freeze(k), _freeze(v)) for k, v in value.items())
    if isinstance(value, set | frozenset):
        return type(value), frozenset(_freeze(v) for v in value)
    if isinstance(value, torch.Tensor):
        return torch.Tensor, id(value)  # fx reads a tensor attribute as a get_attr node, not by its value
    return object, id(value)


def _traced_state(module: nn.Module) -> tuple:
    fields = vars(module)
    plain = tuple((k, _freeze(v)) for k, v in fields.items() if k not in _MODULE_INTERNALS)
    present = tuple(
        (k, v is None) for slot in ("_parameters", "_buffers", "_modules") for k, v in fields[slot].items()
    )
    hooks = tuple(tuple(map(id, fields[h].values())) for h in _FORWARD_HOOKS if h in fields)
    return module.training, plain, present, hooks, id(type(module).forward)


def trace_key(model: nn.Module, is_leaf: Callable[[nn.Module], bool]) -> tuple:
    """Equal keys, equal fx graphs. ``is_leaf`` is the tracer's rule (fx's defaults plus our known kinds)."""
    key: list[Any] = []
    stack = [("", model)]
    while stack:  # preorder, children in registration order: the order fx's named_modules() walk sees them
        name, module = stack.pop()
        leaf = is_leaf(module)
        key.append((name, id(module), type(module), leaf))
        if leaf:
            continue  # fx neither runs a leaf's forward nor looks at its children
        key.append(_traced_state(module))
        children = [(f"{name}.{k}" if name else k, m) for k, m in module._modules.items() if m is not None]
        stack.extend(reversed(children))
    return tuple(key)
