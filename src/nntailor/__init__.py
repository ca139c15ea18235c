"""nntailor: tailor neural networks to the hardware that runs them.

    >>> import nntailor
    >>> report = nntailor.analyze(nntailor.zoo.get("ds_cnn"), (1, 1, 49, 10), "stm32l476")
    >>> report.totals["macs"], report.fits
    (2656768, True)
"""

from nntailor import zoo
from nntailor.cost import Report, analyze
from nntailor.errors import UserError
from nntailor.graph import Graph, Layer, capture
from nntailor.targets import Target
from nntailor.targets import load as load_target

__version__ = "0.1.0"

__all__ = ["Graph", "Layer", "Report", "Target", "UserError", "analyze", "capture", "load_target", "zoo"]
