"""Read a user's YAML file safely (``yaml.safe_load``: no tags that build objects), errors as one line."""

from __future__ import annotations

from pathlib import Path

import yaml

from nntailor.errors import UserError


def read_yaml(path: str | Path, what: str) -> object:
    """The parsed document; ``what`` names the file in errors ("recipe", "target")."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{what} {path}: not valid YAML{where}: {getattr(err, 'problem', err)}") from None
