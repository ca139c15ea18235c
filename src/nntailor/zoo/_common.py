"""Option checks shared by the zoo factories.

Every check raises :class:`nntailor.errors.UserError` with a one-line message, because zoo options come
straight from the user (``mobilenet_v1?width=0.5``).
"""

from __future__ import annotations

import math

from nntailor.errors import UserError


def positive_int(option: str, value: object) -> int:
    """Return ``value`` if it is an int > 0 (bools are refused), else raise UserError."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UserError(f"option {option}={value!r} must be a positive integer")
    return value


def positive_float(option: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number > 0 (bools are refused), else raise UserError."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not (0 < value < math.inf):
        raise UserError(f"option {option}={value!r} must be a positive number")
    return float(value)
