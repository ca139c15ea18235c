"""Which layers disappear into their producer when the model is deployed, as the TFLite converter does it.

BatchNorm right after a conv or linear is folded into its weights and bias (seed 000's W_BN.W, W_BN.b + b_BN);
ReLU and ReLU6 become the fused activation (a clamp in the requantization) of the conv, linear, add,
mul or pool that feeds them. Either needs the producer to have no other consumer. A fused layer keeps
its parameters in the published count but costs no buffer, no traffic, no time and no flash.
"""

from __future__ import annotations

from nntailor.graph.types import Graph

_FOLDS_BN = frozenset({"conv", "conv_transpose", "linear"})
_TAKES_ACTIVATION = frozenset({"conv", "conv_transpose", "linear", "add", "mul", "maxpool", "avgpool"})
_FUSABLE_ACTIVATIONS = frozenset({"relu", "relu6"})


def fused_layers(graph: Graph) -> dict[str, str]:
    """Map each fused layer's name to the layer it is merged into (the conv of conv-BN-ReLU for both)."""
    consumers: dict[str, int] = {}
    live = [layer for layer in graph.layers if not layer.attrs.get("dead")]  # a dropped result reads nothing
    for layer in live:
        for src in layer.inputs:
            consumers[src] = consumers.get(src, 0) + 1
    for name in graph.output_names:
        consumers[name] = consumers.get(name, 0) + 1
    by_name = {layer.name: layer for layer in graph.layers}

    fused: dict[str, str] = {}
    for layer in live:
        if len(layer.inputs) != 1 or layer.inputs[0] not in by_name or consumers.get(layer.inputs[0], 0) != 1:
            continue
        producer = by_name[layer.inputs[0]]
        host = fused.get(producer.name, producer.name)
        if layer.op == "batchnorm" and producer.op in _FOLDS_BN:
            fused[layer.name] = host
        elif layer.op in _FUSABLE_ACTIVATIONS and (producer.op in _TAKES_ACTIVATION or producer.name in fused):
            # after a folded BN, the activation fuses into the conv that absorbed the BN
            fused[layer.name] = host
    return fused
