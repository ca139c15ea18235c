"""Deep Compression's bit accounting, per layer, in the layout of its Table 1 (Han, Mao, Dally, ICLR 2016).

For each pruned and weight-shared layer: the weights kept (P), the bits per stored weight (cluster index,
P+Q) and after Huffman coding (P+Q+H), the same for the relative indices, and the layer's compressed size
as a share of its 32-bit original. Totals count 32-bit biases and one codebook entry per centroid.

Values (codebook entries, or the weights of a layer not weight-shared) are stored at the layer's own width:
32 bits for a float layer as in the paper, the quantized width for a quantized one. Integer values (under 16
bits) carry per output channel the int32 multiplier and int32 shift the deployed C stores, as ``analyze``
counts them in flash (``cost.metrics.QUANT_PARAM_BYTES``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn

from nntailor.compress.cluster import shared_codebooks
from nntailor.compress.prune import prunable_layers
from nntailor.compress.storage import (
    bitmask_bits,
    csc_bits,
    csr_bits,
    eie_bits,
    huffman_bits,
    index_bits_needed,
    relative_indices,
)
from nntailor.cost.metrics import QUANT_PARAM_BYTES

MAX_CODEBOOK = 1 << 16  # ClusterConfig allows up to 16 bits
ValueBits = int | Mapping[str, int]  # one width, or one per layer name (layers not named: 32-bit float)


def _width(value_bits: ValueBits, name: str) -> int:
    return value_bits if isinstance(value_bits, int) else value_bits.get(name, 32)


def scale_bits(module: nn.Module, value_bits: int) -> int:
    """Per output channel, the requantization constants flash holds for integer values (``analyze``'s
    ``flash_bytes``: an int32 multiplier and an int32 shift); none for float values."""
    if value_bits >= 16:
        return 0
    channels = getattr(module, "out_channels", None) or module.out_features
    return 8 * QUANT_PARAM_BYTES * channels


def codebook_pays(levels: int, stored: int, value_bits: int) -> bool:
    """A codebook (``levels`` entries at ``value_bits``) plus an index per stored weight is smaller than the
    values themselves: the test by which a layer counts as weight-shared."""
    if levels > MAX_CODEBOOK:
        return False
    return stored * index_bits_needed(levels) + value_bits * levels < value_bits * stored


def dense_codebook_bits(model: nn.Module, value_bits: ValueBits = 32) -> dict[str, int]:
    """Index width of each weight-shared layer stored densely, zeros as one more codebook entry (a clustered
    layer's stored width when it is not sparse-encoded): ``bits: 4`` with pruned zeros gives 17 levels, 5 bits.
    A layer is weight-shared by ``storage_table``'s test, on its non-zero values: pruning alone shares nothing."""
    out = {}
    for name, module in prunable_layers(model):
        values = torch.unique(module.weight.detach())
        nonzero = values[values != 0]
        kept = int(torch.count_nonzero(module.weight))
        if codebook_pays(len(nonzero), kept, _width(value_bits, name)):
            out[name] = index_bits_needed(len(values))
    return out


@dataclass
class LayerStorage:
    layer: str
    weights: int
    kept_pct: float  # P: share of weights left after pruning
    weight_bits: int  # P+Q: bits per stored weight index
    weight_bits_huffman: float  # P+Q+H
    index_bits: int  # P+Q: bits per relative index
    index_bits_huffman: float  # P+Q+H
    fillers: int
    codebook_bits: int
    compressed_bits: int  # fixed-width (P+Q) encoding incl. codebook
    compressed_bits_huffman: int  # Huffman (P+Q+H) incl. codebook
    rate_pct: float  # compressed_bits / original 32-bit bits, %
    rate_pct_huffman: float
    # the same layer in the usual sparse formats, values at the cluster-index width (bits)
    csr_bits: int = 0
    csc_bits: int = 0
    bitmask_bits: int = 0
    eie_bits: int = 0


def layer_storage(name: str, module: nn.Module, centroids: np.ndarray, index: np.ndarray,
                  relative_bits: int, value_bits: int = 32) -> LayerStorage:
    flat = index.ravel()
    mask = flat >= 0
    gaps, fillers = relative_indices(mask, relative_bits)
    stored = len(gaps)  # non-zeros + filler zeros
    i_huff = huffman_bits(gaps)
    if not codebook_pays(len(centroids), stored, value_bits):
        # not weight-shared (or too few weights to pay for a codebook): values at their width, no codebook
        weight_bits, w_huff, codebook = value_bits, value_bits * stored, scale_bits(module, value_bits)
    else:
        weight_bits = index_bits_needed(len(centroids))
        # filler zeros carry a weight slot too; in the Huffman stream they are one more symbol
        symbols = np.concatenate([flat[mask], np.full(fillers, -1)])
        w_huff = huffman_bits(symbols)
        codebook = value_bits * len(centroids) + scale_bits(module, value_bits)
    fixed = stored * (weight_bits + relative_bits) + codebook
    huff = w_huff + i_huff + codebook
    original = 32 * module.weight.numel()
    matrix = (index.reshape(index.shape[0], -1) >= 0).astype(np.int8)  # non-zero pattern, (out x in)
    formats = {
        "csr_bits": csr_bits(matrix, weight_bits, relative_bits) + codebook,
        "csc_bits": csc_bits(matrix, weight_bits, relative_bits) + codebook,
        "bitmask_bits": bitmask_bits(matrix, weight_bits) + codebook,
        "eie_bits": eie_bits(matrix, weight_bits, relative_bits) + codebook,
    }
    return LayerStorage(
        layer=name, weights=module.weight.numel(), kept_pct=float(100 * mask.sum() / mask.size),
        weight_bits=weight_bits, weight_bits_huffman=w_huff / max(stored, 1),
        index_bits=relative_bits, index_bits_huffman=i_huff / max(stored, 1), fillers=fillers,
        codebook_bits=codebook, compressed_bits=fixed, compressed_bits_huffman=huff,
        rate_pct=100 * fixed / original, rate_pct_huffman=100 * huff / original, **formats,
    )


def storage_table(model: nn.Module, relative_bits: dict[str, int] | int = 5, value_bits: ValueBits = 32) -> dict:
    """Per-layer rows and totals. ``relative_bits`` is one width or one per layer kind: the paper uses 5 for
    every LeNet layer and conv 8 / fc 5 for AlexNet. ``value_bits`` is the width of each layer's values (32, the
    paper's float, for layers it does not name). A layer is stored the cheaper way: a codebook and indices, or
    its values with no codebook (a layer that was never clustered)."""
    books = shared_codebooks(model)
    rows = []
    for name, module in prunable_layers(model):
        centroids, index = books[name]
        if isinstance(relative_bits, int):
            bits = relative_bits
        else:
            bits = relative_bits["linear" if isinstance(module, nn.Linear) else "conv"]
        rows.append(layer_storage(name, module, centroids.numpy(), index.numpy(), bits, _width(value_bits, name)))
    biases = sum(m.bias.numel() for _, m in prunable_layers(model) if m.bias is not None)
    other = sum(p.numel() for p in model.parameters()) - sum(r.weights for r in rows) - biases
    original = 32 * sum(p.numel() for p in model.parameters())
    # biases and parameters outside conv/linear (BN) stay 32-bit
    extra = 32 * (biases + other)
    fixed = sum(r.compressed_bits for r in rows) + extra
    huff = sum(r.compressed_bits_huffman for r in rows) + extra
    return {
        "layers": [asdict(r) for r in rows],
        "original_bytes": original // 8,
        "compressed_bytes": -(-fixed // 8),
        "compressed_bytes_huffman": -(-huff // 8),
        "compression_rate": original / fixed,
        "compression_rate_huffman": original / huff,
        "kept_pct": 100 * sum(r.weights * r.kept_pct / 100 for r in rows) / max(sum(r.weights for r in rows), 1),
    }


def sparse_bytes(model: nn.Module, value_bits: ValueBits = 32) -> int:
    """Smallest of dense, bitmask and CSR storage per conv/linear layer (values at the layer's width in
    ``value_bits``, with their scales), plus everything else at 32 bits (float, or int32 biases): the stored
    size of a pruned but not weight-shared model."""
    total = 0
    counted = 0
    for name, module in prunable_layers(model):
        bits = _width(value_bits, name)
        w = module.weight.detach().reshape(module.weight.shape[0], -1).numpy()
        total += min(w.size * bits, bitmask_bits(w, bits), csr_bits(w, bits)) + scale_bits(module, bits)
        counted += w.size
    total += 32 * (sum(p.numel() for p in model.parameters()) - counted)
    return -(-total // 8)
