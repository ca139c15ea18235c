"""One place that seeds every global random number generator a run touches.

Seeded runs must give the same weights bit for bit on one machine at one thread count. What this cannot
fix from inside a process is kept out of the results at its source instead: string-hash order
(``PYTHONHASHSEED``) is never iterated where it could change a number, every shuffle and split has its own
seeded generator, and scikit-learn's KMeans runs on one OpenMP thread (``compress/cluster.py``).
"""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's legacy global RNG and torch's default generator with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # numpy's legacy seed must fit in 32 bits
    torch.manual_seed(seed)
