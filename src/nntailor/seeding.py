"""The one check for a user's seed, and the one place that seeds every global random number generator a run
touches.

Seeded runs must give the same weights bit for bit on one machine at one thread count. What this cannot
fix from inside a process is kept out of the results at its source instead: string-hash order
(``PYTHONHASHSEED``) is never iterated where it could change a number, every shuffle and split has its own
seeded generator, and scikit-learn's KMeans runs on one OpenMP thread (``compress/cluster.py``).
"""

from __future__ import annotations

import random

from nntailor.errors import UserError

# numpy's legacy ``RandomState`` and so scikit-learn's ``random_state`` take an integer in [0, 2**32); torch takes
# more, so that is the common range
MAX_SEED = 2**32 - 1


def check_seed(seed: object, option: str = "seed") -> int:
    """``seed`` if it is an int in ``0..2**32-1``, else a UserError naming ``option`` and the value."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UserError(f"{option} {seed!r} must be an integer in 0..{MAX_SEED} (numpy and scikit-learn seeds)")
    return seed


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's legacy global RNG and torch's default generator with ``seed``."""
    import numpy as np
    import torch  # here, so that checking a --seed costs no torch import

    random.seed(seed)
    np.random.seed(seed % 2**32)  # derived seeds (seed + step index) may pass numpy's 32-bit range
    torch.manual_seed(seed)
