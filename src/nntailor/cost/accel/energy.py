"""Per-level energy of a layer on a PE array with a spatial dataflow (Eyeriss' rs, ws, os, nlr): the loop nest
``spatial.best_mapping`` tiles under the target's RF and global buffer, priced at the target's per-access costs."""

from __future__ import annotations

from nntailor.cost import metrics
from nntailor.cost.accel.lowering import layer_conv
from nntailor.cost.accel.spatial import LEVELS, SPATIAL_DATAFLOWS, Array, best_mapping
from nntailor.graph.types import Layer
from nntailor.targets.schema import Target


def dataflow_energy(layer: Layer, target: Target, executed_macs: int) -> dict[str, float] | None:
    """pJ per memory level (rf, noc, glb, dram) of ``layer``'s MACs, or None where the target has no spatial
    dataflow, its memories are not named rf/noc/glb/dram, or the layer has no conv form (those keep the traffic
    model). ``executed_macs`` below the dense count (a zero-skipping target) gates the RF reads of the skipped
    MACs and shrinks the weights read from DRAM to their non-zeros and indices (Eyeriss' clock gating and
    run-length coding)."""
    if target.array is None or target.dataflow not in SPATIAL_DATAFLOWS:
        return None
    memories = {m.name: m for m in target.memories}
    if set(memories) != set(LEVELS):
        return None
    conv = layer_conv(layer)
    if conv is None:
        return None
    shape, groups = conv
    word_bytes = target.array.word_bits / 8
    array = Array(target.array.rows, target.array.cols, int(target.array.rf_bytes // word_bytes),
                  int(memories["glb"].size_bytes // word_bytes))
    costs = tuple(sorted({**{name: m.read_pj_per_byte * word_bytes for name, m in memories.items()},
                          "mac": 0.0}.items()))  # the MACs are the caller's compute entry
    tiling = best_mapping(target.dataflow, shape, array, costs)
    dense = metrics.macs(layer)
    kept = executed_macs / dense if dense else 1.0  # conv and linear use every weight equally often
    bits = target.array.word_bits
    weight_share = min(1.0, kept * (bits + target.compute.sparse_index_bits) / bits)
    per_access = dict(costs)
    out = {}
    for level in memories:  # the target's order, as the traffic model reports them
        words = tiling.moved.total(level)
        if level == "rf":
            words *= kept
        elif level == "dram":
            weights = tiling.moved.reads[level]["weights"]
            words -= weights * (1 - weight_share)
        out[level] = groups * words * per_access[level]
    return out
