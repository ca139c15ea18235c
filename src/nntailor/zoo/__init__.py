"""Reference architectures as plain ``torch.nn`` modules: no weights, no downloads.

A model is named by a *spec*, a zoo name with optional ``key=value`` options that are passed to its
factory as keyword arguments::

    >>> from nntailor import zoo
    >>> name, options = zoo.parse_spec("mobilenet_v1?width=0.5&resolution=128")
    >>> model = zoo.get(name, **options)           # in eval() mode
    >>> zoo.input_shape(name, **options)
    (1, 3, 128, 128)

Every model can be traced by ``torch.fx.symbolic_trace``. Bad names, options and option values raise
:class:`nntailor.errors.UserError` with a one-line message.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nntailor.errors import UserError
from nntailor.hostmem import check_param_bytes
from nntailor.zoo._common import check_num_classes, check_resolution, check_width

if TYPE_CHECKING:
    from torch import nn

__all__ = ["get", "input_shape", "names", "parse_spec"]


@dataclass(frozen=True)
class _Entry:
    where: str  # "module:function" in nntailor.zoo, imported on first use: listing the zoo needs no torch
    input_shape: tuple[int, ...]  # default, batch 1 included

    @property
    def factory(self) -> Callable[..., nn.Module]:
        module, _, function = self.where.partition(":")
        return getattr(importlib.import_module(f"nntailor.zoo.{module}"), function)

    @property
    def options(self) -> list[str]:
        return list(inspect.signature(self.factory).parameters)


_IMAGENET = (1, 3, 224, 224)

_REGISTRY: dict[str, _Entry] = {
    "lenet300": _Entry("lenet:lenet300", (1, 1, 28, 28)),
    "lenet5": _Entry("lenet:lenet5", (1, 1, 28, 28)),
    "alexnet": _Entry("classic:alexnet", (1, 3, 227, 227)),
    "vgg16": _Entry("classic:vgg16", _IMAGENET),
    "googlenet": _Entry("classic:googlenet", _IMAGENET),
    "resnet18": _Entry("resnet:resnet18", _IMAGENET),
    "resnet50": _Entry("resnet:resnet50", _IMAGENET),
    "resnet50_v1": _Entry("resnet:resnet50_v1", _IMAGENET),
    "mobilenet_v1": _Entry("mobilenet:mobilenet_v1", _IMAGENET),
    "mobilenet_v2": _Entry("mobilenet:mobilenet_v2", _IMAGENET),
    "squeezenet1_0": _Entry("squeezenet:squeezenet1_0", _IMAGENET),
    "squeezenet1_1": _Entry("squeezenet:squeezenet1_1", _IMAGENET),
    "shufflenet_v2": _Entry("shufflenet:shufflenet_v2", _IMAGENET),
    "shiftnet": _Entry("shift:shiftnet", (1, 3, 32, 32)),
    "ds_cnn": _Entry("tiny:ds_cnn", (1, 1, 49, 10)),
    "resnet8": _Entry("tiny:resnet8", (1, 3, 32, 32)),
    "vww_mobilenet": _Entry("tiny:vww_mobilenet", (1, 3, 96, 96)),
    "ad_autoencoder": _Entry("tiny:ad_autoencoder", (1, 640)),
}

# Value checks for options, run by input_shape() too (the factories check again when they build).
_CHECKS: dict[str, Callable[[object], object]] = {
    "num_classes": check_num_classes,
    "width": check_width,
    "resolution": check_resolution,
}


def names() -> list[str]:
    """All zoo names, grouped by family (registration order)."""
    return list(_REGISTRY)


def _known(name: str) -> _Entry:
    entry = _REGISTRY.get(name)
    if entry is None:
        raise UserError(f"unknown zoo model {name!r}; valid names: {', '.join(_REGISTRY)}")
    return entry


def _lookup(name: str, options: dict[str, object]) -> _Entry:
    entry = _known(name)
    valid = entry.options
    for key, value in options.items():
        if key not in valid:
            listed = ", ".join(valid) if valid else "none"
            raise UserError(f"unknown option {key!r} for zoo model {name!r}; valid options: {listed}")
        check = _CHECKS.get(key)
        if check is not None:
            check(value)
    return entry


def param_bytes(name: str, **options: object) -> int:
    """Bytes of the parameters and buffers of zoo model ``name``, from a build on the meta device (shapes
    only: no memory is allocated and no initializer runs)."""
    import torch

    entry = _lookup(name, options)
    with torch.device("meta"):
        model = entry.factory(**options)
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def get(name: str, **options: object) -> nn.Module:
    """Build zoo model ``name`` (untrained weights) with ``options`` as factory keyword arguments.

    The model is returned in ``eval()`` mode. One that could not be held in memory is refused before it
    is built (:func:`param_bytes`).
    """
    entry = _lookup(name, options)
    spec = "&".join(f"{k}={v}" for k, v in options.items())
    check_param_bytes(param_bytes(name, **options), f"zoo:{name}" + (f"?{spec}" if spec else ""))
    return entry.factory(**options).eval()


def input_shape(name: str, **options: object) -> tuple[int, ...]:
    """Default input shape of ``name``, batch 1 included, e.g. ``(1, 3, 224, 224)``.

    A ``resolution`` option (mobilenet_v1) sets the spatial size.
    """
    entry = _lookup(name, options) if options else _known(name)
    shape = entry.input_shape
    if "resolution" in options:
        r = check_resolution(options["resolution"])
        shape = (*shape[:-2], r, r)
    return shape


def _parse_value(raw: str) -> int | float | bool | str:
    for parse in (int, float):
        try:
            return parse(raw)
        except ValueError:
            pass
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    return raw


def parse_spec(spec: str) -> tuple[str, dict[str, int | float | bool | str]]:
    """Split ``"name?key=value&key=value"`` into the name and its options.

    Values are parsed as int, else float, else bool (``true``/``false``, any case), else kept as str:
    ``"mobilenet_v1?width=0.5&resolution=128"`` -> ``("mobilenet_v1", {"width": 0.5, "resolution": 128})``.
    The name is not checked here; :func:`get` does that.
    """
    name, _, query = spec.strip().partition("?")
    name = name.strip()
    if not name:
        raise UserError(f"zoo spec {spec!r} has no model name")
    options: dict[str, int | float | bool | str] = {}
    for item in query.split("&") if query else []:
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise UserError(f"bad option {item!r} in zoo spec {spec!r}; expected key=value")
        if key in options:
            raise UserError(f"option {key!r} given twice in zoo spec {spec!r}")
        options[key] = _parse_value(raw.strip())
    return name, options
