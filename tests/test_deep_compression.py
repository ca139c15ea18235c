"""Deep Compression: storage arithmetic against textbook and paper examples, weight sharing that keeps
sparsity, centroid fine-tuning, and a small end-to-end pipeline."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from nntailor.compress import ClusterConfig, ClusterHook, MaskHook, PruneConfig, apply, sparsity, storage_table
from nntailor.compress.cluster import shared_codebooks
from nntailor.compress.storage import (
    bitmask_bits,
    csc_bits,
    csr_bits,
    huffman_bits,
    huffman_lengths,
    relative_indices,
)
from nntailor.data import load_dataset
from nntailor.train import TrainConfig, evaluate, fit


def test_huffman_matches_the_clrs_example():
    # CLRS 16.3: frequencies a45 b13 c12 d16 e9 f5 -> lengths 1,3,3,3,4,4 and 224 bits.
    symbols = [0] * 45 + [1] * 13 + [2] * 12 + [3] * 16 + [4] * 9 + [5] * 5
    assert huffman_lengths(symbols) == {0: 1, 1: 3, 2: 3, 3: 3, 4: 4, 5: 4}
    assert huffman_bits(np.array(symbols)) == 224


def test_relative_index_with_filler_zero():
    # Han et al., figure 2: with 3-bit indices a gap over 8 positions needs a filler zero.
    mask = np.zeros(20, dtype=bool)
    mask[[1, 4, 15]] = True  # gaps 2, 3, 11
    gaps, fillers = relative_indices(mask, 3)
    assert fillers == 1 and gaps.tolist() == [1, 2, 7, 2]  # stored as gap - 1: 2, 3, (8 filler), 3


def test_sparse_format_sizes_by_hand():
    m = np.array([[0, 5, 0, 0], [0, 0, 0, 0], [7, 0, 0, 9]])
    assert csr_bits(m, 8, 16) == 3 * (8 + 16) + 4 * 16
    assert csc_bits(m, 8, 16) == 3 * (8 + 16) + 5 * 16
    assert bitmask_bits(m, 8) == 12 + 3 * 8


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 100), nn.ReLU(), nn.Linear(100, 10))


def test_weight_sharing_keeps_zeros_and_limits_distinct_values():
    model = apply(net(), PruneConfig(sparsity=0.8))
    zeros = {k: v for k, v in sparsity(model).items()}
    apply(model, ClusterConfig(bits=3))
    assert sparsity(model) == zeros
    for name, (centroids, _) in shared_codebooks(model).items():
        assert 1 <= len(centroids) <= 8, name


def test_centroid_fine_tuning_keeps_sharing_and_sparsity():
    data = load_dataset("digits")
    model = net()
    fit(model, data.train, TrainConfig(epochs=3, lr=3e-3, progress=False))
    dense = evaluate(model, data.test)
    # the paper's order: prune, retrain with masks, share weights, fine-tune the centroids
    apply(model, PruneConfig(sparsity=0.7))
    fit(model, data.train, TrainConfig(epochs=3, lr=1e-3, progress=False), hooks=[MaskHook(model)])
    apply(model, ClusterConfig(bits=4))
    clustered = evaluate(model, data.test)
    fit(model, data.train, TrainConfig(epochs=2, lr=1e-4, progress=False, optimizer="sgd"),
        hooks=[ClusterHook(model)])
    assert sparsity(model)["total"] == pytest.approx(0.7, abs=1e-3)
    assert all(len(c) <= 16 for c, _ in shared_codebooks(model).values())
    assert evaluate(model, data.test) >= clustered - 0.02
    assert evaluate(model, data.test) > dense - 0.08


def test_storage_table_accounts_every_bit():
    model = apply(apply(net(), PruneConfig(sparsity=0.9)), ClusterConfig(bits=5))
    table = storage_table(model, relative_bits=5)
    first = table["layers"][0]
    assert first["weights"] == 6400 and first["kept_pct"] == pytest.approx(10, abs=0.1)
    stored = 640 + first["fillers"]
    assert first["compressed_bits"] == stored * (first["weight_bits"] + 5) + first["codebook_bits"]
    assert first["weight_bits_huffman"] <= first["weight_bits"] + 1e-9
    assert table["compression_rate_huffman"] >= table["compression_rate"] > 1


def test_eie_pairs_by_hand():
    from nntailor.compress.storage import eie_bits

    # one PE, one column: 3 non-zeros with runs 0, 2, 20 (>15 needs one filler pair with 4-bit runs)
    column = np.zeros((26, 1))
    column[[0, 3, 24]] = 1
    pairs = 3 + 1
    assert eie_bits(column, value_bits=4, run_bits=4, pes=1, pointer_bits=16) == pairs * 8 + 2 * 16


def test_storage_rows_list_the_usual_formats():
    model = apply(apply(net(), PruneConfig(sparsity=0.9)), ClusterConfig(bits=4))
    row = storage_table(model, relative_bits=4)["layers"][0]
    dense_bits = 32 * row["weights"]
    for key in ("csr_bits", "csc_bits", "bitmask_bits", "eie_bits"):
        assert 0 < row[key] < dense_bits


def test_cluster_layer_patterns_and_unclustered_storage():
    model = apply(net(), PruneConfig(sparsity=0.5))
    apply(model, ClusterConfig(bits=3, layers=["3*"]))  # fnmatch, like PruneConfig
    books = shared_codebooks(model)
    assert len(books["3"][0]) <= 8 and len(books["1"][0]) > 1000
    rows = {r["layer"]: r for r in storage_table(model)["layers"]}
    assert rows["1"]["weight_bits"] == 32 and rows["1"]["codebook_bits"] == 0  # not shared: 32-bit values
    assert rows["3"]["weight_bits"] == 3
    assert isinstance(rows["1"]["kept_pct"], float)
