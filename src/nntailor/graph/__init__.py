"""torch.fx capture of a model into a typed layer graph. Knows no hardware."""

from nntailor.graph.capture import capture
from nntailor.graph.ops import OP_KINDS, register_module_op
from nntailor.graph.types import Graph, Layer, Shape, numel

__all__ = ["OP_KINDS", "Graph", "Layer", "Shape", "capture", "numel", "register_module_op"]
