"""Hardware targets as YAML data validated by pydantic: a shipped catalog plus user files."""

from nntailor.targets.loader import catalog, from_dict, from_yaml, load
from nntailor.targets.schema import (
    HOROWITZ_45NM_ADD_PJ,
    HOROWITZ_45NM_MAC_PJ,
    HOROWITZ_45NM_MULT_PJ,
    OPAL_MEMORY_WEIGHT,
    Compute,
    Energy,
    Memory,
    Target,
    dtype_for_bits,
)

__all__ = [
    "HOROWITZ_45NM_ADD_PJ", "HOROWITZ_45NM_MAC_PJ", "HOROWITZ_45NM_MULT_PJ", "OPAL_MEMORY_WEIGHT",
    "Compute", "Energy", "Memory", "Target", "catalog", "dtype_for_bits", "from_dict", "from_yaml", "load",
]
