"""Atomic file writes: a temporary file in the same folder, then a rename. Readers see old or new, never half."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from nntailor.errors import UserError


def write_atomic(path: Path, write: Callable[[str], None]) -> None:
    """``write(tmp_path)`` fills a temporary file that then replaces ``path``; OSErrors become user errors."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the result should read like any other file
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: object) -> None:
    def dump(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")

    write_atomic(path, dump)


def check_writable_dir(path: Path, what: str = "--out") -> None:
    """Refuse, before any long work, a folder that cannot take our files: a file, a path under a file, or a
    folder where a file cannot be created. Writability is tested by creating and removing a probe file, since
    permission bits say nothing for root and a read-only mount says nothing in them."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file, not a folder")
    above = path
    while not above.exists() and above.parent != above:
        above = above.parent
    if above != path and not above.is_dir():
        raise UserError(f"{what} {path} lies under {above}, which is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".nntailor-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"{what} {path} is not writable: {exc.strerror or exc}") from None
