"""Latency of one layer on one target: a roofline per layer.

compute cycles = MACs x cycles per MAC (by op class and data type) + outputs of MAC layers x cycles per
output (requantization) + other ops x cycles per op + the per-layer dispatch overhead; memory cycles =
bytes moved / bandwidth, for each level that has one. The layer takes the larger of the two (it is
compute- or memory-bound), divided by the clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from nntailor.cost import metrics
from nntailor.cost.accel.lowering import layer_gemms
from nntailor.cost.accel.systolic import SYSTOLIC, systolic
from nntailor.cost.energy import Traffic
from nntailor.graph.ops import ALIAS_KINDS
from nntailor.graph.types import Layer
from nntailor.targets.schema import Target, dtype_for_bits


@dataclass(frozen=True)
class Timing:
    cycles: float
    compute_cycles: float
    memory_cycles: float
    bound: str  # "compute" or "memory:<level>"
    # accelerators with a PE array: MACs / (compute cycles x PEs), the share of PE-cycles doing MACs
    utilization: float | None = None

    def seconds(self, target: Target) -> float:
        return self.cycles / target.clock_hz


def layer_timing(
    layer: Layer, target: Target, w_bits: int, a_bits: int, mac_count: int, t: Traffic, ops: int | None = None
) -> Timing:
    if layer.op in ALIAS_KINDS:
        return Timing(0.0, 0.0, 0.0, "view")
    dtype = dtype_for_bits(max(w_bits, a_bits))
    array_cycles = _array_cycles(layer, target)
    if array_cycles is None:
        mac_cycles = mac_count * target.cycles_per_mac(metrics.op_class(layer), dtype)
    else:
        mac_cycles = array_cycles
    compute = (
        mac_cycles
        + (metrics.other_ops(layer) if ops is None else ops) * target.cycles_per_op(dtype)
        + (layer.output_numel * target.compute.cycles_per_output if mac_count else 0.0)
        + target.compute.layer_overhead_cycles
    )
    memory, bound_level = 0.0, ""
    for mem in target.memories:
        if mem.bandwidth_bytes_per_cycle:
            cycles = t.total(mem.name) / mem.bandwidth_bytes_per_cycle
            if cycles > memory:
                memory, bound_level = cycles, mem.name
    utilization = None
    if array_cycles and target.array is not None:  # a layer without MACs leaves the array out of it
        utilization = mac_count / (array_cycles * target.array.pes)
    if memory > compute:  # DRAM or SRAM bandwidth is the limit: the array stalls for the difference
        return Timing(memory, compute, memory, f"memory:{bound_level}", utilization)
    return Timing(compute, compute, memory, "compute", utilization)


def _array_cycles(layer: Layer, target: Target) -> float | None:
    """Cycles of a layer's MACs on a systolic array (SCALE-Sim's compute cycles), or None where the target has no
    systolic array or the layer has no GEMM form (those keep the cycles-per-MAC rate)."""
    if target.array is None or target.dataflow not in SYSTOLIC:
        return None
    gemms = layer_gemms(layer)
    if gemms is None:
        return None
    return float(sum(systolic(g, target.array.rows, target.array.cols, target.dataflow).cycles for g in gemms))
