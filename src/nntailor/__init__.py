"""nntailor: tailor neural networks to the hardware that runs them.

    >>> import nntailor
    >>> report = nntailor.analyze(nntailor.zoo.get("ds_cnn"), (1, 1, 49, 10), "stm32l476")
    >>> report.totals["macs"], report.fits
    (2656768, True)

The public names are resolved on first use (PEP 562 module ``__getattr__``): ``import nntailor`` and
``nntailor --help`` must not pay for importing torch (about 2 s), only the commands that build a model do.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> (module that defines it, attribute there; None for the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "Graph": ("nntailor.graph", "Graph"),
    "Layer": ("nntailor.graph", "Layer"),
    "Report": ("nntailor.cost", "Report"),
    "Target": ("nntailor.targets", "Target"),
    "UserError": ("nntailor.errors", "UserError"),
    "analyze": ("nntailor.cost", "analyze"),
    "capture": ("nntailor.graph", "capture"),
    "load_target": ("nntailor.targets", "load"),
    "zoo": ("nntailor.zoo", None),
}

__all__ = ["Graph", "Layer", "Report", "Target", "UserError", "analyze", "capture", "load_target", "zoo"]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ below imports on demand
    from nntailor import zoo
    from nntailor.cost import Report, analyze
    from nntailor.errors import UserError
    from nntailor.graph import Graph, Layer, capture
    from nntailor.targets import Target
    from nntailor.targets import load as load_target


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'nntailor' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
