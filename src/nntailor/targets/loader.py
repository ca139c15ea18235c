"""Find a target by catalog name or YAML path; turn every problem into one readable line."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import yaml
from pydantic import ValidationError

from nntailor.errors import UserError
from nntailor.targets.schema import Target
from nntailor.yamlfile import read_yaml


def _catalog_dir() -> Traversable:
    # a plain data folder, not a subpackage: importing a subpackage named ``catalog`` would set the attribute
    # ``nntailor.targets.catalog`` and shadow the ``catalog()`` function exported there
    return resources.files("nntailor.targets").joinpath("catalog")


def catalog() -> list[str]:
    """Names of the shipped targets."""
    files = _catalog_dir()
    return sorted(p.name.removesuffix(".yaml") for p in files.iterdir() if p.name.endswith(".yaml"))


def _format_validation(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def from_dict(data: object, origin: str = "target") -> Target:
    if not isinstance(data, dict):
        raise UserError(f"{origin}: expected a mapping of target fields, got {type(data).__name__}")
    try:
        return Target.model_validate(data)
    except ValidationError as err:
        raise UserError(f"{origin}: {_format_validation(err)}") from None


def from_yaml(path: str | Path) -> Target:
    return from_dict(read_yaml(path, "target"), origin=f"target {path}")


@cache
def _catalog_target(name: str) -> Target:
    text = _catalog_dir().joinpath(f"{name}.yaml").read_text()
    return from_dict(yaml.safe_load(text), origin=f"catalog target {name}")


def load(name_or_path: str | Path | Target, overrides: Sequence[str] = ()) -> Target:
    """A catalog name (``stm32l476``), a path to a YAML file, or a Target (returned as is), with ``overrides``
    (``["array.rows=16", "dataflow=os"]``, see ``targets.override``) applied and validated."""
    if overrides:
        from nntailor.targets.override import override  # override reads the loader's from_dict

        return override(load(name_or_path), overrides)
    if isinstance(name_or_path, Target):
        return name_or_path
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text or Path(text).is_file():
        return from_yaml(text)
    key = text.lower().replace("-", "_")
    if key in catalog():
        return _catalog_target(key)
    raise UserError(f"unknown target {text!r}; catalog: {', '.join(catalog())} (or a path to a .yaml file)")
