"""Resolve a MODEL argument: ``zoo:NAME[?k=v&...]`` or ``path/to/file.py:factory_or_class``.

A user's file is imported as code (that is what they asked for); weights are never unpickled here.
"""

from __future__ import annotations

import importlib.util
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


def parse_shape(text: str) -> Shape:
    """``"1,3,32,32"`` (or ``1x3x32x32``) -> (1, 3, 32, 32)."""
    parts = [p for p in text.replace("x", ",").replace(" ", "").split(",") if p]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise UserError(f"input shape {text!r} must be comma-separated integers, e.g. 1,3,32,32") from None
    if not shape or any(d <= 0 for d in shape):
        raise UserError(f"input shape {text!r} must be positive sizes, e.g. 1,3,32,32")
    return shape


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
    except (Exception, SystemExit) as exc:  # a factory that calls sys.exit() is a failing factory too
        raise UserError(f"{path}:{attr}() raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise UserError(f"{path}:{attr} returned {type(model).__name__}, not a torch.nn.Module")
    default = getattr(model, "input_shape", None) or getattr(factory, "input_shape", None)
    shape = None
    if default is not None:
        if not isinstance(default, tuple | list) or not all(isinstance(d, int) and d > 0 for d in default):
            raise UserError(f"{path}:{attr} has input_shape {default!r}: expected a tuple of positive ints")
        shape = tuple(default)
    return LoadedModel(model.eval(), attr, shape)


def load_model(spec: str, seed: int | None = None) -> LoadedModel:
    """Build the model ``spec`` names; with ``seed``, every RNG is seeded first, so the initial weights (of a zoo
    model, or whatever a user's file draws at import or in its factory) are the same in every run."""
    if seed is not None:
        seed_everything(seed)
    if spec.startswith("zoo:"):
        name, options = zoo.parse_spec(spec.removeprefix("zoo:"))
        return LoadedModel(zoo.get(name, **options), spec.removeprefix("zoo:"), zoo.input_shape(name, **options))
    return _from_file(spec)
