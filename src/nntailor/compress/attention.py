"""nn.MultiheadAttention rewritten with four nn.Linear projections: the same function and parameters.

torch's attention keeps q, k and v in one fused ``in_proj_weight`` and runs them inside one functional call,
so nothing that swaps nn.Linear layers (quantization, Q-BERT's per-head groups, mixed precision, pruning) can
reach them. ``SplitAttention`` holds ``q_proj``, ``k_proj``, ``v_proj`` and ``out_proj`` as ordinary linears
(what torch.ao's quantizable MultiheadAttention does too) and computes the same outputs, so the split is exact
and needs no fine-tuning. Row block h of ``q_proj``/``k_proj``/``v_proj`` (``head_dim`` rows) is head h: a
``group_size`` of ``head_dim`` gives each head its own range, as Q-BERT does.
"""

from __future__ import annotations

import math

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from nntailor.compress.base import walk
from nntailor.errors import UserError


def masked_scores(scores: torch.Tensor, attn_mask: torch.Tensor | None, key_padding_mask: torch.Tensor | None,
                  is_causal: bool) -> torch.Tensor:
    """torch's mask conventions on (..., H, L, S) scores: a boolean True masks out (-inf), a float mask adds.
    ``attn_mask`` is (L, S) or (N * H, L, S); ``key_padding_mask`` is (N, S), the same for every head and query."""

    def additive(mask: torch.Tensor) -> torch.Tensor:
        if mask.dtype == torch.bool:
            return torch.zeros(mask.shape, dtype=scores.dtype, device=mask.device).masked_fill(mask, float("-inf"))
        return mask.to(scores.dtype)

    if attn_mask is not None:
        mask = additive(attn_mask)
        scores = scores + (mask.reshape(scores.shape) if mask.dim() == 3 else mask)
    elif is_causal:
        length = scores.shape[-1]
        scores = scores + torch.full((length, length), float("-inf"), device=scores.device).triu(1)
    if key_padding_mask is not None:
        scores = scores + additive(key_padding_mask).unsqueeze(-2).unsqueeze(-3)
    return scores


# a leaf for torch.fx (its dtype and rank tests are Python control flow): the capture lists it as an unpriced op
torch.fx.wrap("masked_scores")


class SplitAttention(nn.Module):
    """nn.MultiheadAttention's forward (same arguments, same outputs) over separate q/k/v/out projections."""

    # what torch's Transformer*Layer fast-path checks read: no fused projection, so they take the slow path and
    # call this module
    in_proj_weight = None
    in_proj_bias = None
    _qkv_same_embed_dim = False

    def __init__(self, mha: nn.MultiheadAttention) -> None:
        super().__init__()
        if mha.bias_k is not None or mha.add_zero_attn:
            raise UserError("splitting nn.MultiheadAttention: add_bias_kv and add_zero_attn are not supported")
        e, bias = mha.embed_dim, mha.in_proj_bias is not None
        self.embed_dim, self.num_heads, self.head_dim = e, mha.num_heads, mha.head_dim
        self.batch_first, self.dropout = mha.batch_first, mha.dropout
        self.q_proj = nn.Linear(e, e, bias=bias)
        self.k_proj = nn.Linear(mha.kdim, e, bias=bias)
        self.v_proj = nn.Linear(mha.vdim, e, bias=bias)
        self.out_proj = nn.Linear(e, e, bias=mha.out_proj.bias is not None)
        with torch.no_grad():
            if mha.in_proj_weight is not None:  # q, k and v stacked row-wise in one matrix
                weights = mha.in_proj_weight.chunk(3)
            else:
                weights = (mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight)
            biases = mha.in_proj_bias.chunk(3) if bias else (None, None, None)
            for proj, w, b in zip((self.q_proj, self.k_proj, self.v_proj), weights, biases, strict=True):
                proj.weight.copy_(w)
                if b is not None:
                    proj.bias.copy_(b)
            self.out_proj.load_state_dict(mha.out_proj.state_dict())

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        # (..., L, E) -> (..., H, L, D); works batched and unbatched
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(-3, -2)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self.batch_first:  # (L, N, E) -> (N, L, E); an unbatched (L, E) is left as it is
            query, key, value = query.movedim(0, -2), key.movedim(0, -2), value.movedim(0, -2)
        q = self._heads(self.q_proj(query)) * (1.0 / math.sqrt(self.head_dim))
        k = self._heads(self.k_proj(key))
        v = self._heads(self.v_proj(value))
        scores = q @ k.transpose(-2, -1)  # (..., H, L, S)
        if attn_mask is not None or key_padding_mask is not None or is_causal:
            scores = masked_scores(scores, attn_mask, key_padding_mask, is_causal)
        weights = F.softmax(scores, dim=-1)
        if not need_weights and (attn_mask is not None or key_padding_mask is not None or is_causal):
            weights = weights.nan_to_num(0.0)  # a query with every key masked gets 0, as torch's SDPA path gives
        if self.dropout > 0.0:
            weights = F.dropout(weights, p=self.dropout, training=self.training)
        out = self.out_proj((weights @ v).transpose(-3, -2).flatten(-2))
        if not self.batch_first:
            out = out.movedim(-2, 0)
        if not need_weights:
            return out, None
        return out, weights.mean(dim=-3) if average_attn_weights else weights


def split_attention(model: nn.Module) -> nn.Module:
    """Every nn.MultiheadAttention in ``model`` replaced by an equivalent ``SplitAttention``."""
    model = walk(model, lambda module, _: SplitAttention(module),
                 lambda module, _: type(module) is nn.MultiheadAttention)
    for module in model.modules():
        # nn.TransformerEncoder's nested-tensor path reads the fused in_proj weights: take the padded path
        if isinstance(module, nn.TransformerEncoder) and any(isinstance(m, SplitAttention) for m in module.modules()):
            module.use_nested_tensor = False
    return model
