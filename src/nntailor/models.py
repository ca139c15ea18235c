"""Resolve a MODEL argument: ``zoo:NAME[?k=v&...]`` or ``path/to/file.py:factory_or_class``.

A user's file is imported as code (that is what they asked for); weights are never unpickled here.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn

from nntailor import zoo
from nntailor.errors import UserError
from nntailor.graph.types import Shape
from nntailor.seeding import seed_everything


@dataclass
class LoadedModel:
    model: nn.Module
    name: str
    input_shape: Shape | None  # the model's default, when it has one


# TFLite stores a tensor's sizes and its byte count as int32: an input past these bounds can be neither
# deployed nor priced as one tensor, and it is a typo far more often than a model.
MAX_DIM = 2**31 - 1
MAX_ELEMENTS = 2**31 - 1


def parse_shape(text: str) -> Shape:
    """``"1,3,32,32"`` (or ``1x3x32x32``) -> (1, 3, 32, 32). An empty text is an error, not the default."""
    parts = [p for p in text.replace("x", ",").replace(" ", "").split(",") if p]
    if not parts:
        raise UserError(f"input shape {text!r} is empty; give sizes, e.g. 1,3,32,32")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise UserError(f"input shape {text!r} must be comma-separated integers, e.g. 1,3,32,32") from None
    if any(d <= 0 for d in shape):
        raise UserError(f"input shape {text!r} must be positive sizes, e.g. 1,3,32,32")
    check_shape(shape, text)
    return shape


def check_shape(shape: Shape, text: str | None = None) -> None:
    """Refuse an input too large to be one tensor (a model's default shape goes through here too)."""
    shown = text if text is not None else ",".join(map(str, shape))
    for i, d in enumerate(shape):
        if d > MAX_DIM:
            raise UserError(f"input shape {shown!r}: dimension {i} = {d} is larger than {MAX_DIM:,}")
    elements = math.prod(shape)
    if elements > MAX_ELEMENTS:
        raise UserError(f"input shape {shown!r} has {elements:,} elements, more than {MAX_ELEMENTS:,} (int32 sizes)")


def _depth(model: nn.Module) -> int:
    """Nesting depth of the module tree, counted without recursion (the tree may be deeper than the stack)."""
    deepest, stack = 0, [(model, 1)]
    while stack:
        module, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in module._modules.values() if child is not None)
    return deepest


def check_trainable(model: nn.Module, name: str) -> None:
    """Refuse, before any training, a model that ``compress`` cannot fine-tune: training runs in float32 on
    one logits tensor (cross-entropy), so every floating parameter and buffer must be float32 and the
    forward must return a single tensor, not a dict or a tuple."""
    import torch
    import torch.fx as fx

    from nntailor.graph.capture import trace

    for key, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and tensor.dtype != torch.float32:
            dtype = str(tensor.dtype).removeprefix("torch.")
            raise UserError(f"{name}: {key} is {dtype}; compress trains in float32 (convert the model with .float())")
    _, graph = trace(model, name)
    output = next(n for n in graph.nodes if n.op == "output").args[0]
    if not isinstance(output, fx.Node):
        kind = next((k for t, k in ((dict, "dict"), (list, "list"), (tuple, "tuple")) if isinstance(output, t)),
                    "non-tensor")
        raise UserError(f"{name}: forward returns a {kind}; compress needs one tensor of logits")


def _from_file(spec: str) -> LoadedModel:
    path_text, _, attr = spec.rpartition(":")
    if not path_text or not attr:
        raise UserError(f"model {spec!r}: expected zoo:NAME or path/to/file.py:factory")
    path = Path(path_text)
    if not path.is_file():
        raise UserError(f"model file not found: {path}")
    module_name = f"_nntailor_user_{abs(hash(path.resolve()))}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise UserError(f"model file {path} is not a Python file")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module  # dataclasses and pickling-free reflection need it registered
    try:
        loader_spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        raise UserError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    factory = getattr(module, attr, None)
    if factory is None:
        found = sorted(n for n in vars(module) if not n.startswith("_") and callable(vars(module)[n]))
        raise UserError(f"{path} has no {attr!r}; callables there: {', '.join(found) or 'none'}")
    try:
        model = factory() if callable(factory) and not isinstance(factory, nn.Module) else factory
    except MemoryError as exc:  # a factory runs arbitrary code: its size cannot be estimated before it runs
        raise UserError(f"{path}:{attr}() ran out of memory building the model") from exc
    except (Exception, SystemExit) as exc:  # a factory that calls sys.exit() is a failing factory too
        first = f": {str(exc).strip().splitlines()[0]}" if str(exc).strip() else ""
        raise UserError(f"{path}:{attr}() raised {type(exc).__name__}{first}") from exc
    if not isinstance(model, nn.Module):
        raise UserError(f"{path}:{attr} returned {type(model).__name__}, not a torch.nn.Module")
    try:
        model.eval()
    except RecursionError:
        raise UserError(f"{path}:{attr}: model nested too deep ({_depth(model)} modules deep) for torch.fx") from None
    default = getattr(model, "input_shape", None) or getattr(factory, "input_shape", None)
    shape = None
    if default is not None:
        if not isinstance(default, tuple | list) or not all(isinstance(d, int) and d > 0 for d in default):
            raise UserError(f"{path}:{attr} has input_shape {default!r}: expected a tuple of positive ints")
        shape = tuple(default)
        check_shape(shape)
    return LoadedModel(model, attr, shape)


def load_model(spec: str, seed: int | None = None) -> LoadedModel:
    """Build the model ``spec`` names; with ``seed``, every RNG is seeded first, so the initial weights (of a zoo
    model, or whatever a user's file draws at import or in its factory) are the same in every run."""
    if seed is not None:
        seed_everything(seed)
    if spec.startswith("zoo:"):
        name, options = zoo.parse_spec(spec.removeprefix("zoo:"))
        return LoadedModel(zoo.get(name, **options), spec.removeprefix("zoo:"), zoo.input_shape(name, **options))
    return _from_file(spec)
