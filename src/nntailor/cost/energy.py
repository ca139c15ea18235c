"""Energy of one layer on one target, in pJ.

Two formulas, chosen by ``target.energy.model`` (or overridden per call):

- ``traffic``: compute (MACs x MAC energy + other ops x op energy, Horowitz 45 nm by default) plus
  every memory level's traffic x its energy per byte. A level's traffic is the compulsory traffic of
  the tensors it ``stores`` (each byte once: reuse-perfect) plus ``per_mac_accesses`` operand
  accesses per MAC (Eyeriss' register file: 4 per MAC; an MCU's SRAM and flash: 1 each, since the
  Cortex-M kernels load every operand). On a PE array with a spatial dataflow (Eyeriss' rs, ws, os, nlr) the
  conv and linear layers' levels come from the dataflow's loop nests instead (``cost.accel.energy``).
- ``opal``: OPAL's proxy (seed 000), MACs + 100 x memory accesses (weights + input + output
  elements), in units of one MAC's energy.
"""

from __future__ import annotations

from dataclasses import dataclass

from nntailor.cost import metrics
from nntailor.cost.accel.energy import dataflow_energy
from nntailor.graph.types import Layer
from nntailor.targets.schema import OPAL_MEMORY_WEIGHT, Target, dtype_for_bits


@dataclass(frozen=True)
class Traffic:
    """Bytes a layer moves: per memory level, read and written."""

    reads: dict[str, float]
    writes: dict[str, float]

    def total(self, level: str) -> float:
        return self.reads.get(level, 0.0) + self.writes.get(level, 0.0)


def traffic(
    layer: Layer, target: Target, w_bits: int, a_bits: int, mac_count: int,
    nonzero_counts: dict[str, int] | None = None, out_bits: int | None = None, reads: int | None = None,
) -> Traffic:
    """Bytes moved per memory level: inputs at ``a_bits``, outputs at ``out_bits`` (default ``a_bits``). With
    ``nonzero_counts`` (zero-skipping targets) weights move compressed: each non-zero with its
    ``sparse_index_bits`` index. ``reads``: input elements, when not the layer's input (a folded pad)."""
    w_bytes = metrics.weight_bytes(layer, w_bits, shared=True)  # a shared module reads its weights again
    if nonzero_counts is not None:  # compressed when that is smaller: dense layers pay no index overhead
        nonzero = sum(nonzero_counts.get(k, 0) for k in layer.all_weights)
        w_bytes = min(w_bytes, nonzero * (w_bits + target.compute.sparse_index_bits) / 8)
    in_elems, out_elems = metrics.act_elements(layer, reads)
    if layer.op == "embedding":  # only the looked-up rows are read
        w_bytes = min(w_bytes, out_elems * w_bits // 8)
    out_bits = a_bits if out_bits is None else out_bits
    role_bytes = {"weights": w_bytes, "inputs": in_elems * a_bits / 8, "outputs": out_elems * out_bits / 8}
    operand_bytes = max(w_bits, a_bits) / 8
    reads: dict[str, float] = {}
    writes: dict[str, float] = {}
    for mem in target.memories:
        reads[mem.name] = sum(role_bytes[r] for r in mem.stores if r != "outputs")
        reads[mem.name] += mem.per_mac_accesses * mac_count * operand_bytes
        writes[mem.name] = role_bytes["outputs"] if "outputs" in mem.stores else 0.0
    return Traffic(reads, writes)


def layer_energy(
    layer: Layer,
    target: Target,
    w_bits: int,
    a_bits: int,
    *,
    model: str | None = None,
    mac_count: int | None = None,
    ops: int | None = None,
    moved: Traffic | None = None,
    arith: str = "mul",
    reads: int | None = None,
) -> dict[str, float]:
    """Energy in pJ split into ``compute`` and one entry per memory level (``opal``: ``memory``).

    ``mac_count``, ``ops`` and ``moved`` may be passed in when the caller has them already. ``arith`` says how
    the MACs that multiply a stored weight are done (``Energy.mac_as``); MACs between two activations
    (attention scores) stay multiplies.
    """
    dtype = dtype_for_bits(max(w_bits, a_bits))
    mac_count = metrics.macs(layer) if mac_count is None else mac_count
    ops = metrics.other_ops(layer) if ops is None else ops
    model = model or target.energy.model
    if model == "opal":
        in_elems, out_elems = metrics.act_elements(layer, reads)
        unit = target.energy.mac(dtype)
        return {
            "compute": mac_count * unit,
            "memory": OPAL_MEMORY_WEIGHT * (layer.weight_numel + in_elems + out_elems) * unit,
        }
    per_mac = target.energy.mac(dtype)
    if arith != "mul":
        weighted = metrics.weight_macs_fraction(layer)
        per_mac = weighted * target.energy.mac_as(arith, dtype) + (1 - weighted) * per_mac
    parts = {"compute": mac_count * per_mac + ops * target.energy.op(dtype)}
    levels = dataflow_energy(layer, target, mac_count)  # a PE array's loop nests, where they map the layer
    if levels is not None:
        return parts | levels
    t = moved or traffic(layer, target, w_bits, a_bits, mac_count)
    for mem in target.memories:
        parts[mem.name] = t.reads[mem.name] * mem.read_pj_per_byte + t.writes[mem.name] * mem.write_pj
    return parts
