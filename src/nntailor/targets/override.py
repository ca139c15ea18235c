"""``--set key.path=value``: change any field of a target, then validate the whole target again.

Keys are dotted paths into the target's fields (``array.rows``, ``dataflow``, ``clock_hz``, ``energy.mac_pj.int8``);
a memory is named by its ``name`` or its index (``memories.glb.size_bytes``, ``memories.2.size_bytes``). Values are
read as YAML scalars or flow collections (``16``, ``os``, ``[weights, inputs]``), so types follow the schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from nntailor.errors import UserError
from nntailor.targets.loader import from_dict
from nntailor.targets.schema import Area, PEArray, Target

# maps keyed by data type or op class, not by field name: a new key is allowed, the schema checks it
_FREE_MAPS = {"mac_pj", "op_pj", "cycles_per_mac", "cycles_per_op"}
_OPTIONAL_SECTIONS = {"array": PEArray, "area": Area}


def _parse(item: str) -> tuple[list[str], Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set {item!r}: expected key.path=value, e.g. array.rows=16")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise UserError(f"--set {item!r}: the value is not a YAML scalar or list") from None
    return key.strip().split("."), value


def _fields_of(node: dict[str, Any], path: list[str]) -> list[str]:
    # an optional section that the target leaves out (an MCU's array, a target without area figures) still has
    # fields one may set
    section = _OPTIONAL_SECTIONS.get(".".join(path))
    return sorted(section.model_fields if section else node)


def _set(data: dict[str, Any], parts: list[str], value: Any, item: str) -> None:
    node: Any = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            names = [m.get("name") for m in node if isinstance(m, dict)]
            if part in names:
                index = names.index(part)
            elif part.isdigit() and int(part) < len(node):
                index = int(part)
            else:
                raise UserError(f"--set {item!r}: no {where!r}; valid: {', '.join(map(str, names))} "
                                f"or an index below {len(node)}")
            if last:
                node[index] = value
                return
            node = node[index]
            continue
        if not isinstance(node, dict):
            raise UserError(f"--set {item!r}: {'.'.join(parts[:depth])!r} is a value, not a section")
        valid = _fields_of(node, parts[:depth])
        if part not in valid and not set(parts[:depth]) & _FREE_MAPS:
            raise UserError(f"--set {item!r}: unknown key {where!r}; valid: {', '.join(valid)}")
        if last:
            node[part] = value
            return
        if node.get(part) is None:
            node[part] = {}
        node = node[part]


def override(target: Target, overrides: Sequence[str]) -> Target:
    """``target`` with each ``key.path=value`` applied in order, validated again as a whole.

    >>> override(load("systolic32"), ["array.rows=16", "dataflow=os"]).array.rows
    16
    """
    if not overrides:
        return target
    data = target.model_dump(mode="python", exclude_unset=False)
    for item in overrides:
        parts, value = _parse(item)
        _set(data, parts, value, item)
    return from_dict(data, origin=f"target {target.name} with --set {' '.join(overrides)}")
