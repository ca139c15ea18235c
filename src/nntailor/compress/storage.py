"""Bit-exact storage of sparse, weight-shared layers: Deep Compression's format and the usual alternatives.

Pure functions of arrays (Han, Mao, Dally, ICLR 2016, section 2 and 4):
- relative indices: each non-zero stores its distance from the previous one in ``index_bits``; a gap
  larger than 2^index_bits is bridged with filler zeros (a stored zero whose index is the maximum jump).
- Huffman coding of the weight (cluster) indices and of the relative indices, from their frequencies.
- CSR, CSC, bitmask and EIE's interleaved (value, run) pairs, for comparison.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Iterable

import numpy as np


def relative_indices(flat_mask: np.ndarray, index_bits: int) -> tuple[np.ndarray, int]:
    """Gaps between stored entries (non-zeros and filler zeros) and the number of fillers.

    A gap of g positions (g = 1 for adjacent non-zeros, the first counted from position -1) fits when
    g <= 2^index_bits; otherwise fillers are stored every 2^index_bits positions (Han et al., figure 2).
    """
    span = 1 << index_bits
    positions = np.flatnonzero(flat_mask)
    gaps, fillers, previous = [], 0, -1
    for p in positions:
        gap = p - previous
        while gap > span:
            gaps.append(span)
            fillers += 1
            gap -= span
        gaps.append(gap)
        previous = p
    # stored as gap - 1 in [0, 2^bits - 1]
    return np.asarray(gaps, dtype=np.int64) - 1, fillers


def huffman_lengths(symbols: Iterable[int]) -> dict[int, int]:
    """Code length of each symbol in an optimal prefix code (Huffman 1952) for the symbols' frequencies."""
    counts = Counter(int(s) for s in symbols)
    if len(counts) == 1:
        return {next(iter(counts)): 1}
    heap = [(c, i, [s]) for i, (s, c) in enumerate(sorted(counts.items()))]
    heapq.heapify(heap)
    lengths = dict.fromkeys(counts, 0)
    tie = len(heap)
    while len(heap) > 1:
        c1, _, s1 = heapq.heappop(heap)
        c2, _, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            lengths[s] += 1
        heapq.heappush(heap, (c1 + c2, tie, s1 + s2))
        tie += 1
    return lengths


def huffman_bits(symbols: np.ndarray) -> int:
    """Total bits of ``symbols`` Huffman-coded (the code table is counted apart)."""
    if symbols.size == 0:
        return 0
    lengths = huffman_lengths(symbols.tolist())
    counts = Counter(symbols.tolist())
    return sum(counts[s] * lengths[s] for s in counts)


def csr_bits(matrix: np.ndarray, value_bits: int, index_bits: int = 32) -> int:
    """Values + column index per non-zero + (rows + 1) row pointers."""
    nnz = int(np.count_nonzero(matrix))
    return nnz * (value_bits + index_bits) + (matrix.shape[0] + 1) * index_bits


def csc_bits(matrix: np.ndarray, value_bits: int, index_bits: int = 32) -> int:
    """Values + row index per non-zero + (columns + 1) column pointers."""
    return csr_bits(matrix.T, value_bits, index_bits)


def bitmask_bits(matrix: np.ndarray, value_bits: int) -> int:
    """One presence bit per element + the non-zero values."""
    return matrix.size + int(np.count_nonzero(matrix)) * value_bits


def eie_bits(matrix: np.ndarray, value_bits: int = 4, run_bits: int = 4, pes: int = 64, pointer_bits: int = 16) -> int:
    """EIE (Han et al., ISCA 2016): columns of the (out x in) matrix, rows interleaved over ``pes`` PEs; each
    PE stores (value, zero-run) pairs with filler pairs for runs over 2^run_bits - 1, plus one pointer per
    column per PE."""
    out_dim, in_dim = matrix.shape
    total = 0
    for pe in range(pes):
        rows = matrix[pe::pes]
        if rows.size == 0:
            continue
        for column in rows.T:
            run = 0
            for v in column:
                if v == 0:
                    run += 1
                    if run > (1 << run_bits) - 1:  # a filler pair (zero value, maximum run)
                        total += value_bits + run_bits
                        run = 0
                    continue
                total += value_bits + run_bits
                run = 0
        total += (in_dim + 1) * pointer_bits
    return total


def index_bits_needed(levels: int) -> int:
    return max(1, math.ceil(math.log2(max(levels, 2))))
