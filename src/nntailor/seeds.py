"""The one check for a user's random seed: numpy's legacy ``RandomState`` and so scikit-learn's
``random_state`` take an integer in ``[0, 2**32)``; torch takes more, so that is the common range."""

from __future__ import annotations

from nntailor.errors import UserError

MAX_SEED = 2**32 - 1


def check_seed(seed: object, option: str = "seed") -> int:
    """``seed`` if it is an int in ``0..2**32-1``, else a UserError naming ``option`` and the value."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UserError(f"{option} {seed!r} must be an integer in 0..{MAX_SEED} (numpy and scikit-learn seeds)")
    return seed
