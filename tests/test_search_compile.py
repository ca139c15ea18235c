"""Cold pricing without capture: a compiled design's graph is the captured one, layer by layer, and a cost model
that never captures prices every total as ``analyze`` does on the built model."""

import optuna
import pytest
from test_search_costs import _assert_equal, _designs

from nntailor.cost.metrics import nonzero_counts
from nntailor.graph.capture import capture
from nntailor.search import CostModel, analyze_design, build, space_from_dict
from nntailor.search.compile import compilable, design_graph

optuna.logging.set_verbosity(optuna.logging.WARNING)

CNN = {"kind": "cnn", "input_shape": [1, 1, 28, 28]}  # seed 000's MNIST CNN space
MLP = {"kind": "mlp", "input_shape": [1, 784]}
WIDE = {"kind": "cnn", "input_shape": [2, 3, 16, 16], "bits": {"choices": [1, 4, 8, 32]}}
LAYER_FIELDS = ("name", "op", "target", "module", "input_shapes", "output_shapes", "inputs", "attrs",
                "shared_weights", "params")


@pytest.mark.parametrize("spec", [CNN, MLP, WIDE, {"kind": "mlp", "input_shape": [1, 1, 8, 8]}])
def test_compiled_graph_is_the_captured_graph_layer_by_layer(spec):
    for design in _designs(spec, 50, seed=21):
        compiled, captured = design_graph(design), capture(build(design), design.input_shape)
        assert len(compiled.layers) == len(captured.layers), design.params
        for a, b in zip(compiled.layers, captured.layers, strict=True):
            for name in LAYER_FIELDS:
                assert getattr(a, name) == getattr(b, name), (design.params, a.name, name)
            assert {k: tuple(w.shape) for k, w in a.weights.items()} == \
                {k: tuple(w.shape) for k, w in b.weights.items()}, (design.params, a.name)
            assert nonzero_counts(a) == nonzero_counts(b), (design.params, a.name)
        for name in ("name", "input_shapes", "input_names", "output_names", "total_params"):
            assert getattr(compiled, name) == getattr(captured, name), (design.params, name)


@pytest.mark.parametrize("spec, target", [(CNN, "stm32l476"), (MLP, "stm32l476"), (WIDE, "eyeriss")])
def test_cold_costs_equal_analyze_and_never_capture(spec, target, monkeypatch):
    def no_capture(*args, **kwargs):
        raise AssertionError("a compilable segment was captured")

    monkeypatch.setattr("nntailor.search.costs.capture", no_capture)
    for design in _designs(spec, 50, seed=13):
        costs = CostModel(target)  # empty cache: every segment of the design is priced cold
        fast = costs.totals(design)
        monkeypatch.undo()
        _assert_equal(fast, analyze_design(design, target).totals, design.params)
        monkeypatch.setattr("nntailor.search.costs.capture", no_capture)


def test_pruned_and_block_segments_are_captured_and_still_exact():
    space = space_from_dict({"space": {**MLP, "sparsity": {"choices": [0.0, 0.5]}}})
    design = space.design({"fc_layers": 1, "fc_nodes_0": 40, "sparsity_fc0": 0.5, "sparsity_out": 0.0, "lr": 0.1})
    assert not compilable(design.segments[0], {"1": 0.5}) and compilable(design.segments[1], {"0": 0.0})
    with pytest.raises(ValueError, match="no compiled form"):
        design_graph(design)
    for d in [design, *_designs({"kind": "blocks", "input_shape": [1, 3, 16, 16]}, 4, seed=1)]:
        _assert_equal(CostModel("stm32l476").totals(d), analyze_design(d, "stm32l476").totals, d.params)


def test_the_segment_cache_is_bounded_and_evicted_segments_price_the_same():
    designs = _designs(CNN, 12, seed=4)
    small = CostModel("stm32l476", max_segments=5)
    first = [small.totals(d) for d in designs]
    assert len(small._segments) == 5
    for d, totals in zip(designs, first, strict=True):  # priced again after eviction: the same totals
        _assert_equal(small.totals(d), totals, d.params)
