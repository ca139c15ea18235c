"""A design straight to the ``Graph`` that ``capture`` makes of its built model, without building or tracing it.

Capturing a segment (torch.fx tracing, shape propagation) and initialising its weights is most of what pricing a
segment never seen costs (~16 ms + 6.5 ms of ~29 ms for seed 000's CNNs). The mlp and cnn spaces' segments are
a conv + ReLU + max pool and a [flatten +] linear [+ ReLU]: their layers are written here as capture writes them
(names, op kinds, module paths, attrs, edges), with output shapes from ``graph.shapes``' formulas (the ones
capture uses), so ``analyze`` prices the compiled graph exactly as the captured one.

Weights are stand-ins of the right shape (a zero-stride view, no storage per element) whose non-zero count is
recorded as their size: ``space.make_segment`` moves the rare exact 0.0 of torch's initial draw off zero, so the
built model's conv and linear layers start with no zeros and their counts are their sizes too. A
pruned layer's zeros depend on its trained or initial magnitudes, so segments with sparsity are not compiled
(``compilable`` says no, and ``search.costs`` captures them), nor are the blocks space's segments (zoo blocks
with BatchNorm, residual adds, shifts), the stem and the global pool.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch

from nntailor.cost.metrics import record_count
from nntailor.graph.shapes import _conv, _flatten, _linear, _pool
from nntailor.graph.types import Graph, Layer, Shape
from nntailor.search.space import Design, Segment

COMPILED = ("conv_pool", "dense")  # segment kinds written here; every other kind is captured


def compilable(seg: Segment, sparsity: dict[str, float] | None = None) -> bool:
    """Can ``seg`` be compiled exactly: a conv_pool or dense segment with no pruned layer."""
    return seg.signature[0] in COMPILED and not any(s > 0 for s in (sparsity or {}).values())


def _weight(shape: Shape) -> torch.Tensor:
    w = torch.ones(()).expand(*shape)
    record_count(w, w.numel())
    return w


class _Chain:
    """Appends layers one after another, as capture names and links a ``nn.Sequential``'s children."""

    def __init__(self, shape: Shape) -> None:
        self.layers: list[Layer] = []
        self.shape = shape
        self.last = "input"

    def add(self, path: str, op: str, target: str, out: Shape, attrs: dict[str, Any],
            weights: dict[str, torch.Tensor] | None = None) -> None:
        attrs = {**attrs, "bias": "bias" in (weights or {}), "fx_node": "_" + path.replace(".", "_")}
        self.layers.append(Layer(name=path, op=op, target=target, module=path, input_shapes=[self.shape],
                                 output_shapes=[out], inputs=[self.last], attrs=attrs, weights=weights or {}))
        self.shape, self.last = out, path


def _conv_pool(chain: _Chain, prefix: str, sig: tuple[Any, ...]) -> None:
    _, cin, cout, k, p, _, _ = sig
    conv = {"padding_mode": "zeros", "dilation": (1, 1), "stride": (1, 1), "output_padding": (0, 0),
            "out_channels": cout, "kernel_size": (k, k), "padding": (k // 2, k // 2), "groups": 1,
            "in_channels": cin}
    out = _conv(SimpleNamespace(**conv), chain.shape)
    chain.add(f"{prefix}0", "conv", "Conv2d", out, conv, {"weight": _weight((cout, cin, k, k)),
                                                         "bias": _weight((cout,))})
    chain.add(f"{prefix}1", "relu", "ReLU", out, {})
    pool = {"dilation": 1, "stride": p, "kernel_size": p, "ceil_mode": False, "padding": 0}
    chain.add(f"{prefix}2", "maxpool", "MaxPool2d", _pool(SimpleNamespace(**pool), out, 2), pool)


def _dense(chain: _Chain, prefix: str, sig: tuple[Any, ...]) -> None:
    _, fin, fout, relu, flatten = sig
    j = 0
    if flatten:
        chain.add(f"{prefix}0", "reshape", "Flatten", _flatten(SimpleNamespace(start_dim=1, end_dim=-1),
                                                                chain.shape), {})
        j = 1
    linear = {"in_features": fin, "out_features": fout}
    chain.add(f"{prefix}{j}", "linear", "Linear", _linear(SimpleNamespace(**linear), chain.shape), linear,
              {"weight": _weight((fout, fin)), "bias": _weight((fout,))})
    if relu:
        chain.add(f"{prefix}{j + 1}", "relu", "ReLU", chain.shape, {})


_WRITERS = {"conv_pool": _conv_pool, "dense": _dense}


def _graph(chain: _Chain, shape: Shape) -> Graph:
    return Graph(name="Sequential", layers=chain.layers, input_shapes=[shape], input_names=["input"],
                 output_names=[chain.last], total_params=sum(layer.params for layer in chain.layers))


def segment_graph(seg: Segment, shape: Shape) -> Graph:
    """``capture(make_segment(seg), shape)`` for a compilable segment, without building it."""
    chain = _Chain(tuple(shape))
    _WRITERS[seg.signature[0]](chain, "", seg.signature)
    return _graph(chain, tuple(shape))


def design_graph(design: Design) -> Graph:
    """``capture(build(design), design.input_shape)`` for a design whose segments all compile (mlp, cnn)."""
    chain = _Chain(tuple(design.input_shape))
    for i, seg in enumerate(design.segments):
        if not compilable(seg, design.layer_sparsity):
            raise ValueError(f"segment {seg.signature[0]!r} (with its sparsity) has no compiled form")
        _WRITERS[seg.signature[0]](chain, f"{i}.", seg.signature)
    return _graph(chain, tuple(design.input_shape))
