"""The compress job behind ``nntailor compress``: measure, run a recipe, measure again, write the results.

Everything is priced by the same ``analyze`` the rest of nntailor uses; accuracy is top-1 on the test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.nn as nn

from nntailor.atomic import write_atomic, write_json_atomic
from nntailor.compress.allocate import BudgetConfig, check_budget
from nntailor.compress.base import CompressConfig, Context
from nntailor.compress.cluster import ClusterConfig
from nntailor.compress.deep_compression import sparse_bytes, storage_table
from nntailor.compress.quant import layer_formats
from nntailor.compress.recipe import FinetuneConfig, run_recipe
from nntailor.cost import analyze
from nntailor.data import Datasets
from nntailor.errors import UserError
from nntailor.graph import capture
from nntailor.models import check_trainable
from nntailor.targets import Target
from nntailor.train import evaluate

ROW_KEYS = ("params", "nz_params", "macs", "nz_macs", "bops", "energy_pj", "peak_sram_bytes", "flash_bytes")


def measure(model: nn.Module, datasets: Datasets, target: Target, bits: int,
            storage: dict[str, Any] | None = None) -> dict[str, Any]:
    """Accuracy and costs, each quantized layer at its own widths and arithmetic (the rest at ``bits``);
    ``storage`` (a Deep Compression table) gives the compressed size when shared."""
    totals = analyze(model, datasets.input_shape, target, bits=bits,
                     **layer_formats(model, bits, datasets.input_shape)).totals
    row: dict[str, Any] = {"accuracy": evaluate(model, datasets.test)}
    row.update({key: totals[key] for key in ROW_KEYS})
    row["compressed_bytes"] = storage["compressed_bytes_huffman"] if storage else sparse_bytes(model)
    return row


def _check_classes(model: nn.Module, datasets: Datasets) -> None:
    check_trainable(model, type(model).__name__)
    graph = capture(model, datasets.input_shape)
    outputs = [graph.layer(n).output_shape for n in graph.output_names if n in {lay.name for lay in graph.layers}]
    if outputs and outputs[0][-1] != datasets.num_classes:
        raise UserError(
            f"the model has {outputs[0][-1]} outputs but {datasets.name} has {datasets.num_classes} classes"
        )


def save_model(model: nn.Module, path: Path) -> None:
    """Tensors only (safetensors): nothing in the file can execute when it is loaded."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    write_atomic(path, lambda tmp: save_file(state, tmp))


def compress_model(
    model: nn.Module,
    steps: list[CompressConfig],
    datasets: Datasets,
    target: Target,
    out: Path,
    *,
    bits: int = 8,
    seed: int = 0,
    progress: bool = True,
    name: str = "",
) -> dict[str, Any]:
    _check_classes(model, datasets)
    context = Context(train=datasets.train, test=datasets.test, input_shape=datasets.input_shape, target=target,
                      seed=seed)
    for step in steps:  # an impossible budget is refused before any training starts
        if isinstance(step, BudgetConfig):
            check_budget(model, step, context)
    # Fine-tunes before the first technique train the float baseline: "before" is measured after them.
    first = next((i for i, s in enumerate(steps) if not isinstance(s, FinetuneConfig)), len(steps))
    checkpoints = out / "checkpoints"
    model = run_recipe(model, steps[:first], context, checkpoints=checkpoints, progress=progress)
    before = measure(model, datasets, target, bits)
    model = run_recipe(model, steps[first:], context, checkpoints=checkpoints, progress=progress, start=first)
    clustered = any(isinstance(s, ClusterConfig) for s in steps)
    storage = storage_table(model) if clustered else None  # Huffman coding once, for the row and the JSON
    after = measure(model, datasets, target, bits, storage)
    save_model(model, out / "model.safetensors")
    result: dict[str, Any] = {
        "model": name or type(model).__name__,
        "data": datasets.name,
        "target": target.name,
        "bits": bits,
        "steps": [s.model_dump() for s in steps],
        "before": before,
        "after": after,
        "storage": storage,
    }
    write_json_atomic(out / "compress.json", result)
    return result
