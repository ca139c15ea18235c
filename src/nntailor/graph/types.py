"""The captured network: a list of typed layers in execution order, with edges.

Knows no hardware. Costs are computed from it in ``nntailor.cost``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch

Shape = tuple[int, ...]


def numel(shape: Shape) -> int:
    return math.prod(shape) if shape else 1


@dataclass
class Layer:
    """One operation of the network as it executes.

    ``name`` is unique in the graph: the module path for a module called once, the module path
    plus a call index for a module called again, the fx node name for a functional op.
    """

    name: str
    op: str  # op kind from ``nntailor.graph.ops.OP_KINDS``
    target: str  # what was called: module class ("Conv2d") or function ("torch.matmul", "add")
    module: str  # module path ("" for ops in the top-level forward)
    input_shapes: list[Shape]
    output_shapes: list[Shape]
    inputs: list[str] = field(default_factory=list)  # producer layer names; graph inputs are "input", "input_1"...
    attrs: dict[str, Any] = field(default_factory=dict)
    # The parameters this layer owns, by local name (weight, bias, in_proj_weight, ...). References, not copies.
    # Empty on the second and later calls of a shared module, so that totals count each parameter once.
    # Layers are built once by capture and not mutated after: the counts below are cached.
    weights: dict[str, torch.Tensor] = field(default_factory=dict)
    # Parameters this layer uses that an earlier layer owns (a shared module called again, tied weights):
    # they cost traffic and energy again, but are not counted again in params or flash.
    shared_weights: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def output_shape(self) -> Shape:
        return self.output_shapes[0] if self.output_shapes else ()

    @property
    def input_shape(self) -> Shape:
        return self.input_shapes[0] if self.input_shapes else ()

    @cached_property
    def params(self) -> int:
        return sum(t.numel() for t in self.weights.values())

    @cached_property
    def output_numel(self) -> int:
        return sum(numel(s) for s in self.output_shapes)

    @cached_property
    def activation_input_numel(self) -> int:
        """Elements read from activations: operands that are constants (parameters) excluded."""
        const = set(self.attrs.get("const_inputs", ()))
        return sum(numel(s) for i, s in enumerate(self.input_shapes) if i not in const)

    @cached_property
    def weight_numel(self) -> int:
        """Elements of every parameter the layer reads, owned or shared."""
        return sum(t.numel() for t in self.all_weights.values())

    @property
    def all_weights(self) -> dict[str, torch.Tensor]:
        """Every parameter the layer reads, owned or shared: what its traffic is made of."""
        return {**self.shared_weights, **self.weights}


@dataclass
class Graph:
    """A network captured for one input shape."""

    name: str
    layers: list[Layer]
    input_shapes: list[Shape]
    input_names: list[str]
    output_names: list[str]  # layers (or graph inputs) whose tensors leave the network
    total_params: int  # every nn.Parameter of the model once, used or not (the published convention)
    model: torch.nn.Module | None = None
    unowned: list[torch.Tensor] = field(default_factory=list)  # parameters no layer uses (an unused head)

    def __iter__(self):
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def unpriced(self) -> list[Layer]:
        """Ops the cost model has no rule for: reported by path and op, never dropped."""
        return [layer for layer in self.layers if layer.op == "other"]
