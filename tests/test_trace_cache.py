"""A model's fx trace is reused across captures only while everything the trace depends on is unchanged."""

import gc
import types
import weakref

import torch
import torch.nn as nn

from nntailor import capture, zoo
from nntailor.graph import ops


def ops_of(model: nn.Module, shape=(1, 4)) -> list[str]:
    return [layer.op for layer in capture(model, shape).layers]


def signature(graph) -> list[tuple]:
    return [
        (la.name, la.op, la.target, la.module, la.input_shapes, la.output_shapes, la.inputs, sorted(la.attrs.items()),
         {k: id(v) for k, v in la.weights.items()}, {k: id(v) for k, v in la.shared_weights.items()})
        for la in graph.layers
    ]


class Gated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = nn.ReLU()
        self.residual = True
        self.extra: nn.Module | None = None

    def forward(self, x):
        y = self.act(self.fc(x))
        if self.extra is not None:
            y = self.extra(y)
        if self.training:
            y = y * 2
        return y + x if self.residual else y


def test_repeated_capture_gives_the_same_graph():
    model = zoo.get("resnet8")
    first = signature(capture(model, (1, 3, 32, 32)))
    assert signature(capture(model, (1, 3, 32, 32))) == first
    assert signature(capture(model, (2, 3, 32, 32)))[0][4] == [(2, 3, 32, 32)]  # shapes are propagated afresh


def test_a_plain_attribute_the_forward_branches_on():
    model = Gated().eval()
    assert ops_of(model) == ["linear", "relu", "add"]
    model.residual = False
    assert ops_of(model) == ["linear", "relu"]
    model.residual = True
    assert ops_of(model) == ["linear", "relu", "add"]


def test_training_flag_and_new_children():
    model = Gated().eval()
    assert ops_of(model) == ["linear", "relu", "add"]
    model.train()
    assert ops_of(model) == ["linear", "relu", "mul", "add"]
    model.eval()
    model.extra = nn.Sequential(nn.Linear(4, 4), nn.Sigmoid())
    assert ops_of(model) == ["linear", "relu", "linear", "sigmoid", "add"]
    model.extra[1] = nn.Tanh()  # a child replaced deep in the tree
    assert ops_of(model) == ["linear", "relu", "linear", "tanh", "add"]


def test_replaced_leaf_is_read_afresh():
    model = Gated().eval()
    capture(model, (1, 4))
    model.fc = nn.Linear(4, 4, bias=False)
    graph = capture(model, (1, 4))
    assert graph.layers[0].weights["weight"] is model.fc.weight and "bias" not in graph.layers[0].weights


def test_forward_replaced_on_an_instance():
    model = nn.Sequential(Gated()).eval()  # fx traces the root's class forward, a child's through its __call__
    assert ops_of(model) == ["linear", "relu", "add"]
    model[0].forward = types.MethodType(lambda self, x: self.fc(x), model[0])
    assert ops_of(model) == ["linear"]


def test_registering_a_kind_makes_a_traced_module_a_leaf():
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return torch.relu(self.fc(x))

    model = nn.Sequential(Block(), nn.ReLU())
    assert ops_of(model) == ["linear", "relu", "relu"]
    ops.register_module_op(Block, "linear")
    try:
        assert ops_of(model) == ["linear", "relu"]
    finally:
        ops._custom_module_kinds.pop(Block)
        ops._class_kind.cache_clear()


def test_cached_trace_does_not_keep_the_model_alive():
    model = Gated().eval()
    capture(model, (1, 4))
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None
