"""One cost model: metrics, memory planner, energy, latency, fits. Reads a model, never changes it."""

from nntailor.cost.planner import GreedyPlanner
from nntailor.cost.report import LayerCost, Report, analyze

__all__ = ["GreedyPlanner", "LayerCost", "Report", "analyze"]
