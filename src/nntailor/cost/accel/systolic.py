"""Systolic arrays under weight-, output- and input-stationary dataflows, as SCALE-Sim 3.0 times them.

A layer is a GEMM: ``m`` output rows (a conv's output pixels, batch included), ``k`` the reduction (a conv's window
R*S*C), ``n`` output columns (filters). Each dataflow maps two of them onto the array and streams the third in time
(Samajdar et al., "SCALE-Sim", ISPASS 2020, table II; ``topology_utils.calc_spatio_temporal_params``):

======== ============= ============= ===========
dataflow S_r (on rows) S_c (on cols) T (in time)
======== ============= ============= ===========
os       m             n             k
ws       k             n             m
is       k             m             n
======== ============= ============= ===========

The array runs ``ceil(S_r/R) * ceil(S_c/C)`` folds. A fold streams T operand vectors, skewed over the R rows and
C columns (R + C + T - 2 cycles); ws and is first preload the stationary operand, R more cycles. The layer takes
folds x fold cycles - 1 (the last fold's final cycle overlaps: SCALE-Sim's demand matrices, e.g. the ws filter fold
is R rows plus an R + C + T - 2 gap). Pure arithmetic: dims and an array in, numbers out.
"""

from __future__ import annotations

from dataclasses import dataclass

from nntailor.errors import UserError

SYSTOLIC = ("ws", "os", "is")


@dataclass(frozen=True)
class Gemm:
    """A layer as a matrix product: (m x k) @ (k x n)."""

    m: int
    k: int
    n: int

    @property
    def macs(self) -> int:
        return self.m * self.k * self.n


@dataclass(frozen=True)
class SystolicCost:
    """What one layer costs on a rows x cols systolic array; SRAM traffic in words (SCALE-Sim's access counts)."""

    dataflow: str
    cycles: int  # compute cycles with no memory stall: SCALE-Sim's "Total Cycles"
    folds: int
    utilization: float  # MACs / (cycles x PEs): SCALE-Sim's "Overall Util"
    mapping_efficiency: float  # mean over folds of the PEs a fold maps / all PEs
    compute_utilization: float  # mean over folds of busy PE-cycles / (PEs x the fold's cycles)
    ifmap_sram_reads: int
    filter_sram_reads: int
    ofmap_sram_writes: int


def conv_gemm(out_h: int, out_w: int, kernel_h: int, kernel_w: int, in_channels: int, filters: int,
              batch: int = 1) -> Gemm:
    """A dense conv as SCALE-Sim lowers it: output pixels x window, window x filters (im2col)."""
    return Gemm(m=batch * out_h * out_w, k=kernel_h * kernel_w * in_channels, n=filters)


def spatio_temporal(gemm: Gemm, dataflow: str) -> tuple[int, int, int]:
    """(S_r, S_c, T) of ``dataflow`` for ``gemm``, per the table in the module docstring."""
    if dataflow == "os":
        return gemm.m, gemm.n, gemm.k
    if dataflow == "ws":
        return gemm.k, gemm.n, gemm.m
    if dataflow == "is":
        return gemm.k, gemm.m, gemm.n
    raise UserError(f"unknown systolic dataflow {dataflow!r}; valid: {', '.join(SYSTOLIC)}")


def _used(total: int, size: int) -> list[int]:
    """How much of a ``size``-wide array side each fold along it uses."""
    full, rest = divmod(total, size)
    return [size] * full + ([rest] if rest else [])


def systolic(gemm: Gemm, rows: int, cols: int, dataflow: str) -> SystolicCost:
    """Cycles, utilization and SRAM traffic of ``gemm`` on a ``rows`` x ``cols`` array under ``dataflow``."""
    if rows <= 0 or cols <= 0:
        raise UserError(f"systolic array must have positive rows and cols, got {rows}x{cols}")
    if min(gemm.m, gemm.k, gemm.n) <= 0:
        raise UserError(f"a GEMM needs positive dims, got m={gemm.m} k={gemm.k} n={gemm.n}")
    s_r, s_c, t = spatio_temporal(gemm, dataflow)
    row_used, col_used = _used(s_r, rows), _used(s_c, cols)
    folds = len(row_used) * len(col_used)
    fold_cycles = rows + cols + t - 2 + (rows if dataflow in ("ws", "is") else 0)  # preload of the stationary operand
    cycles = folds * fold_cycles - 1
    pes = rows * cols
    used_sum = sum(row_used) * sum(col_used)  # = S_r * S_c: the sum over folds of the PEs each maps
    # SCALE-Sim's per-fold utilization divides by the output demand matrix's rows + cols - 1 (its cycles_this_fold)
    util_cycles = fold_cycles + (cols - 1 if dataflow in ("ws", "is") else 0)
    # SRAM words: the stationary operand is read once (S_r x S_c), an operand streamed along the rows is read again
    # for every column fold (T x S_r each), one streamed along the columns for every row fold (T x S_c each)
    along_rows, along_cols, once = len(col_used) * t * s_r, len(row_used) * t * s_c, s_r * s_c
    # SCALE-Sim 3.0's os count adds rows + cols per fold on top (systolic_compute_os.py, create_ofmap_demand_mat:
    # ``ofmap_writes += shape[0] + shape[1]`` of the padded fold); kept so that the counts match the peer's
    os_writes = once + folds * (rows + cols)
    ifmap, filt, ofmap = {"ws": (along_rows, once, along_cols), "is": (once, along_rows, along_cols),
                          "os": (along_rows, along_cols, os_writes)}[dataflow]
    return SystolicCost(
        dataflow=dataflow,
        cycles=cycles,
        folds=folds,
        utilization=gemm.macs / (cycles * pes),
        mapping_efficiency=used_sum / (folds * pes),
        compute_utilization=used_sum * t / (folds * pes * util_cycles),
        ifmap_sram_reads=ifmap,
        filter_sram_reads=filt,
        ofmap_sram_writes=ofmap,
    )
