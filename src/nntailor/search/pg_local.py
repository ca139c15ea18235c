"""A throwaway PostgreSQL server on this machine, for a study that several processes or machines share.

``local_postgres()`` runs Debian's ``initdb`` into a fresh folder, starts ``postgres`` on a free 127.0.0.1 port
(its Unix socket in the same folder, ``-k``), creates one database and yields its SQLAlchemy URL
``postgresql+psycopg2://nntailor@127.0.0.1:PORT/search``; on exit the server stops and the folder is removed.
PostgreSQL refuses to run as root (``initdb``: "cannot be run as root"), so as root the programs run as the
unprivileged ``nobody`` through util-linux's ``runuser``. Trust authentication on loopback only: the server is
for tests and benchmarks, never for data worth keeping (``fsync=off``).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

USER = "nntailor"
DATABASE = "search"
PACKAGE = "postgresql"  # the Debian package with initdb and pg_ctl (the Makefile's sysdeps installs it)


def postgres_bin() -> Path:
    """The folder with ``initdb`` and ``pg_ctl``: Debian's ``/usr/lib/postgresql/N/bin`` (newest) or PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise FileNotFoundError(f"PostgreSQL's initdb is not installed: install the Debian package {PACKAGE!r} "
                            f"(apt-get install {PACKAGE}, or make sysdeps)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_owner(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    if runuser is None:
        raise FileNotFoundError("running as root and util-linux's runuser is missing: PostgreSQL refuses root")
    return [runuser, "-u", "nobody", "--", *cmd]


def _run(cmd: list[str]) -> None:
    done = subprocess.run(_as_owner(cmd), capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} failed ({done.returncode}): {(done.stderr or done.stdout).strip()}")


@contextmanager
def local_postgres() -> Iterator[str]:
    """Start a fresh PostgreSQL server; yields the URL of its one database; stops and removes it afterwards."""
    bindir = postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="nntailor-pg-"))  # under /tmp, not pytest's root-only tmp folders
    if os.geteuid() == 0:
        shutil.chown(root, "nobody")
    data, log, port = root / "data", root / "server.log", _free_port()
    started = False
    try:
        _run([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", USER, "-E", "UTF8", "--no-sync"])
        _run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "30", "-o",
              f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start"])
        started = True
        _run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", USER, DATABASE])
        yield f"postgresql+psycopg2://{USER}@127.0.0.1:{port}/{DATABASE}"
    finally:
        if started:
            subprocess.run(_as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                           capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
