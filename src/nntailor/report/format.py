"""Human units for the terminal and the HTML report. JSON keeps bytes, pJ and seconds."""

from __future__ import annotations

BYTE_UNITS = (("MiB", 1 << 20), ("KiB", 1 << 10), ("B", 1))  # binary, as MCU datasheets mean them
ENERGY_UNITS = (("mJ", 1e9), ("uJ", 1e6), ("nJ", 1e3), ("pJ", 1))


def unit_for(value: float, units: tuple[tuple[str, float], ...]) -> tuple[str, float]:
    """(name, scale) of the largest unit ``value`` reaches, the smallest one below that."""
    return next(((unit, scale) for unit, scale in units if abs(value) >= scale), units[-1])


def format_bytes(n: float) -> str:
    """Binary units, as MCU datasheets mean them (128 KB SRAM = 131,072 bytes)."""
    unit, scale = unit_for(n, BYTE_UNITS)
    return f"{int(n)} B" if scale == 1 else f"{n / scale:.1f} {unit}"


def format_count(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{int(n)}"


def format_energy(pj: float) -> str:
    unit, scale = unit_for(pj, ENERGY_UNITS)
    return f"{pj:.1f} pJ" if scale == 1 else f"{pj / scale:.2f} {unit}"


def format_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"
