"""A technique is a config plus one handler (torchao's pattern): ``model = apply(model, PruneConfig(...))``.

Handlers sit in one table keyed by config type, filled by ``@register``. ``walk`` is the one module
walker: it recurses, asks ``filter_fn(module, fqn)``, and swaps a child only when the handler returns a
new module. Recipes are lists of configs; each config names itself with its ``step`` field, so a YAML
list of ``{step: prune, sparsity: 0.9}`` validates field by field.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch.nn as nn
from pydantic import BaseModel, ConfigDict, ValidationError

from nntailor.errors import UserError


class CompressConfig(BaseModel):
    """Base of every technique's settings: frozen, unknown fields rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    step: str


@dataclass
class Context:
    """What some techniques need beyond the model: data (OBD's Hessian, calibration), shapes, the chip."""

    train: Any = None  # a torch Dataset
    test: Any = None
    input_shape: tuple[int, ...] | None = None
    target: Any = None  # a Target or catalog name
    seed: int = 0
    teacher: Any = None  # the model before a recipe's first technique, for distillation steps
    checkpoints: Path | None = None  # a folder for a technique's own fine-tunes (energy_prune), so they resume

    def need_train(self, technique: str) -> Any:
        if self.train is None:
            raise UserError(f"{technique} needs training data (--data, or Context(train=...))")
        return self.train


C = TypeVar("C", bound=CompressConfig)
Handler = Callable[[nn.Module, Any], nn.Module]
_HANDLERS: dict[type[CompressConfig], Handler] = {}
_WANTS_CONTEXT: set[type[CompressConfig]] = set()
_STEPS: dict[str, type[CompressConfig]] = {}


TypedHandler = Callable[[nn.Module, C], nn.Module]


def register(config_type: type[C]) -> Callable[[TypedHandler], TypedHandler]:
    """Declare the handler of a config type; the config's ``step`` default becomes its recipe name."""

    def decorate(handler: TypedHandler) -> TypedHandler:
        _HANDLERS[config_type] = handler
        if "context" in inspect.signature(handler).parameters:
            _WANTS_CONTEXT.add(config_type)
        _STEPS[config_type.model_fields["step"].default] = config_type
        return handler

    return decorate


def apply(model: nn.Module, config: CompressConfig, context: Context | None = None) -> nn.Module:
    """Run the technique ``config`` names on ``model``; returns the (possibly new) model."""
    handler = _HANDLERS.get(type(config))
    if handler is None:
        raise UserError(f"no technique is registered for {type(config).__name__}")
    if type(config) in _WANTS_CONTEXT:
        return handler(model, config, context=context or Context())
    return handler(model, config)


def steps() -> list[str]:
    return sorted(_STEPS)


def _short(value: object, limit: int = 60) -> str:
    """A value as an error message can show it: a step name that is really a 100,000-node structure stays one
    readable line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({type(value).__name__})"


def config_from_dict(data: dict[str, Any], where: str = "recipe step") -> CompressConfig:
    """A recipe step as written in YAML -> its validated config, with field-level errors."""
    if not isinstance(data, dict) or "step" not in data:
        raise UserError(f"{where}: each step needs a 'step' name; valid: {', '.join(steps())}")
    name = data["step"]
    config_type = _STEPS.get(name) if isinstance(name, str) else None
    if config_type is None:
        raise UserError(f"{where}: unknown step {_short(name)}; valid: {', '.join(steps())}")
    try:
        return config_type.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise UserError(f"{where} ({name}): {field}: {first['msg']}") from None


def walk(
    model: nn.Module,
    handler: Callable[[nn.Module, str], nn.Module | None],
    filter_fn: Callable[[nn.Module, str], bool],
    prefix: str = "",
    _done: dict[int, tuple[nn.Module, nn.Module]] | None = None,
) -> nn.Module:
    """Depth-first over children; where ``filter_fn`` accepts, ``handler`` may return a replacement.

    A module reachable by several paths (weights tied by reuse) is handled once and every reference gets the
    same replacement, so the tie survives (``named_children`` would skip the repeats)."""
    done = {} if _done is None else _done  # id(original) -> (original, replacement)
    if filter_fn(model, prefix):
        replaced = handler(model, prefix)
        if replaced is not None:
            return replaced
    for name, child in list(model._modules.items()):
        if child is None:
            continue
        fqn = f"{prefix}.{name}" if prefix else name
        if id(child) not in done:
            done[id(child)] = (child, walk(child, handler, filter_fn, fqn, done))
        new = done[id(child)][1]
        if new is not child:
            setattr(model, name, new)
    return model


def float_layer_filter(
    model: nn.Module,
    layers: list[str] | None,
    exclude: list[str],
    keep_first_last: bool,
) -> Callable[[nn.Module, str], bool]:
    """``walk``'s filter for techniques that swap plain Linear/Conv2d layers: fnmatch ``layers``/``exclude``
    patterns, and optionally the first and last of them left alone (low-bit papers keep them in float)."""
    names = [n for n, m in model.named_modules() if type(m) in (nn.Linear, nn.Conv2d)]
    skip = {names[0], names[-1]} if keep_first_last and names else set()

    def chosen(module: nn.Module, fqn: str) -> bool:
        if type(module) not in (nn.Linear, nn.Conv2d) or fqn in skip:
            return False
        if layers is not None and not any(fnmatch.fnmatch(fqn, p) for p in layers):
            return False
        return not any(fnmatch.fnmatch(fqn, p) for p in exclude)

    return chosen
