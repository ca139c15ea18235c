"""nn.MultiheadAttention split into four linears: the same outputs, the same MACs, and within reach of
quantization (Q-BERT per-head groups, Hessian-chosen widths per projection)."""

import copy

import pytest
import torch
import torch.nn as nn

from nntailor import analyze
from nntailor.compress import Context, ReplaceConfig, apply
from nntailor.compress.attention import SplitAttention, split_attention
from nntailor.compress.quant import MixedPrecisionConfig, QuantizeConfig, quant_bits
from nntailor.compress.quant.arith import QSpec
from nntailor.compress.quant.modules import QuantLinear, quantize_weight
from nntailor.data import load_dataset
from nntailor.train import TrainConfig, evaluate, fit


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("kv_dims", [(16, 16), (8, 12)])
def test_split_attention_equals_torch(batch_first, kv_dims):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, batch_first=batch_first, kdim=kv_dims[0], vdim=kv_dims[1]).eval()
    split = SplitAttention(mha).eval()
    n, tgt, src = 3, 5, 7

    def seq(length, dim):
        return torch.randn(n, length, dim) if batch_first else torch.randn(length, n, dim)

    q, k, v = seq(tgt, 16), seq(src, kv_dims[0]), seq(src, kv_dims[1])
    bool_mask = torch.rand(tgt, src) > 0.7
    bool_mask[:, 0] = False  # every query keeps one key: no all -inf row
    padding = torch.rand(n, src) > 0.7
    padding[:, 1] = False
    for kwargs in ({}, {"attn_mask": bool_mask}, {"key_padding_mask": padding}, {"need_weights": False},
                   {"attn_mask": torch.randn(n * 4, tgt, src), "average_attn_weights": False}):
        expected, expected_weights = mha(q, k, v, **kwargs)
        out, weights = split(q, k, v, **kwargs)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
        if expected_weights is None:
            assert weights is None
        else:
            torch.testing.assert_close(weights, expected_weights, rtol=1e-5, atol=1e-6)


class Encoder(nn.Module):
    """A one-layer post-norm transformer encoder over the 8 rows of a digits image (8 tokens of 8 pixels)."""

    def __init__(self, dim: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Linear(8, dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.ff1 = nn.Linear(dim, 2 * dim)
        self.act = nn.GELU()
        self.ff2 = nn.Linear(2 * dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x.reshape(x.shape[0], 8, 8))
        h = self.norm1(h + self.attn(h, h, h, need_weights=False)[0])
        h = self.norm2(h + self.ff2(self.act(self.ff1(h))))
        return self.head(h.mean(dim=1))


def test_split_keeps_macs_and_params():
    torch.manual_seed(0)
    model = Encoder().eval()
    before = analyze(model, (2, 1, 8, 8)).totals
    apply(model, ReplaceConfig(layernorm=False, gelu=False))  # the recipe step; split_attention in Python
    assert isinstance(model.attn, SplitAttention)
    after = analyze(model, (2, 1, 8, 8))
    # projections 4 x L x E^2 plus QK^T and attention x V (2 x L^2 x E) per sample, as the fused op is priced
    assert after.totals["macs"] == before["macs"] == 2 * (8 * 8 * 32 + 4 * 8 * 32 * 32 + 2 * 8 * 8 * 32
                                                          + 2 * 8 * 32 * 64 + 32 * 10)
    assert after.totals["params"] == before["params"]
    assert after.unpriced == []


@pytest.fixture(scope="module")
def trained_encoder():
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = Encoder()
    fit(model, data.train, TrainConfig(epochs=15, lr=3e-3, progress=False))
    return model, data


def test_quantize_reaches_the_attention_projections(trained_encoder):
    model, data = trained_encoder
    reference = evaluate(model, data.test)
    assert reference > 0.85
    quantized = apply(copy.deepcopy(model), QuantizeConfig(), Context(train=data.train))
    assert {"attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.out_proj"} <= set(quant_bits(quantized))
    assert isinstance(quantized.attn.q_proj, QuantLinear)
    assert evaluate(quantized, data.test) >= reference - 0.02


def test_per_head_groups_fit_heads_of_different_scales():
    # Q-BERT: heads whose weights differ in scale by 100x; a range per head (group_size = head_dim rows)
    # keeps the small heads' precision that one per-tensor range loses
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(32, 4, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight[:8] *= 100.0  # head 0 of q
    q = SplitAttention(mha).q_proj.weight.detach()
    per_tensor = quantize_weight(q, QSpec(bits=4, symmetric=True, narrow=True))
    per_head = quantize_weight(q, QSpec(bits=4, symmetric=True, narrow=True, group_size=8))
    small = slice(8, 32)
    assert torch.count_nonzero(per_tensor[small]) == 0  # every small-head weight rounds to zero
    assert (per_head[small] - q[small]).norm() < 0.2 * q[small].norm()


def test_mixed_precision_chooses_a_width_per_projection(trained_encoder):
    model, data = trained_encoder
    names = ["embed", "attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.out_proj", "ff1", "ff2", "head"]
    split = split_attention(copy.deepcopy(model))
    params = {n: split.get_submodule(n).weight.numel() for n in names}
    budget = sum(params.values()) * 4 / 8  # uniform 4-bit's weight bytes
    mixed = apply(copy.deepcopy(model), MixedPrecisionConfig(budget=budget, group_size=8),
                  Context(train=data.train))
    bits = {n: w for n, (w, _) in quant_bits(mixed).items()}
    assert set(bits) == set(names)
    assert sum(params[n] * bits[n] / 8 for n in names) <= budget
    assert mixed.attn.q_proj.weight_spec.group_size == 8
    assert evaluate(mixed, data.test) > 0.5


def test_binarize_reaches_the_attention_projections():
    from nntailor.compress.quant import BinarizeConfig, binary_bits

    model = apply(Encoder(), BinarizeConfig(method="bwn"))
    assert {"attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.out_proj"} <= set(binary_bits(model))
    assert "embed" not in binary_bits(model) and "head" not in binary_bits(model)  # first and last stay float


def test_tied_attention_stays_tied_and_torch_layers_take_the_split():
    torch.manual_seed(0)
    shared = nn.MultiheadAttention(8, 2, batch_first=True)
    tied = nn.ModuleList([shared] * 3)  # ALBERT-style reuse: one set of weights, three places
    split_attention(tied)
    assert tied[0] is tied[1] is tied[2] and isinstance(tied[0], SplitAttention)
    assert sum(p.numel() for p in tied.parameters()) == sum(p.numel() for p in shared.parameters())
    # nn.TransformerEncoderLayer's fast-path checks read in_proj_*: the split sends it down the slow path
    layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=0.0, batch_first=True).eval()
    x = torch.randn(2, 5, 16)
    expected = layer(x)
    split_attention(layer)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_a_query_with_every_key_masked_gets_zeros_like_torch():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    split = SplitAttention(mha)
    x = torch.randn(1, 3, 8)
    mask = torch.zeros(3, 3, dtype=torch.bool)
    mask[0] = True  # query 0 may attend to nothing
    expected = mha(x, x, x, attn_mask=mask, need_weights=False)[0]
    out = split(x, x, x, attn_mask=mask, need_weights=False)[0]
    assert torch.equal(expected[0, 0], torch.zeros(8)) and torch.equal(out[0, 0], torch.zeros(8))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_a_reused_linear_is_quantized_once_everywhere():
    data = load_dataset("digits")
    fc = nn.Linear(64, 64)
    model = nn.Sequential(nn.Flatten(), fc, nn.ReLU(), fc, nn.ReLU(), nn.Linear(64, 10))
    quantized = apply(model, QuantizeConfig(), Context(train=data.train))
    assert isinstance(quantized[1], QuantLinear) and quantized[1] is quantized[3]


def test_attention_weights_nobody_reads_cost_nothing():
    # with torch's default need_weights=True the head-averaged weights are computed and dropped by the caller:
    # a converter removes them, so they are priced at zero (flagged dead), and the two calls cost the same
    class Block(nn.Module):
        def __init__(self, need_weights: bool) -> None:
            super().__init__()
            self.attn = SplitAttention(nn.MultiheadAttention(16, 2, batch_first=True))
            self.need_weights = need_weights

        def forward(self, x):
            return self.attn(x, x, x, need_weights=self.need_weights)[0]

    dropped = analyze(Block(True), (1, 6, 16))
    assert dropped.layer("attn.mean").other_ops == 0 and dropped.layer("attn.mean").fused_into == "dead"
    assert dropped.totals == analyze(Block(False), (1, 6, 16)).totals


def test_a_padded_transformer_encoder_runs_after_the_split():
    # nn.TransformerEncoder turns padded input into nested tensors, which reads the fused projection weights
    torch.manual_seed(0)
    model = nn.Transformer(16, 4, 1, 1, 32, dropout=0.0, batch_first=True).eval()
    x = torch.randn(2, 5, 16)
    padding = torch.zeros(2, 5, dtype=torch.bool)
    padding[0, 3:] = True
    expected = model(x, x, src_key_padding_mask=padding)
    split = split_attention(copy.deepcopy(model))
    torch.testing.assert_close(split(x, x, src_key_padding_mask=padding), expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(split(x, x, src_key_padding_mask=padding), expected, rtol=1e-5, atol=1e-5)
