"""How much memory this machine can give us, so that a model or an input too big for it is refused up front
with one line, instead of failing (or swapping) minutes into the allocation."""

from __future__ import annotations

import os

from nntailor.errors import UserError

# No network in the zoo, or a model a microcontroller target could hold, comes near this; a bigger estimate is
# a typo (num_classes=10**9), refused even on a machine that has the memory.
MAX_PARAM_BYTES = 16 << 30


def available_bytes() -> int:
    """Memory a new allocation can get without swapping: Linux's MemAvailable, else free physical pages."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the kernel reports kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return MAX_PARAM_BYTES  # unknown: the flat cap alone decides


def human(n: int) -> str:
    """Bytes as the CLI prints them (decimal units): 553.4 MB."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def check_param_bytes(estimate: int, what: str) -> None:
    """Refuse a model whose parameters and buffers (``estimate`` bytes) cannot be held here."""
    limit = min(MAX_PARAM_BYTES, available_bytes())
    if estimate > limit:
        why = "the cap for one model" if limit == MAX_PARAM_BYTES else "the memory available"
        raise UserError(f"{what}: its parameters need {human(estimate)}, more than {human(limit)} ({why})")
