"""The compress job behind ``nntailor compress``: measure, run a recipe, measure again, write the results.

Everything is priced by the same ``analyze`` the rest of nntailor uses; accuracy is top-1 on the test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.nn as nn

from nntailor.atomic import check_writable_dir, write_atomic, write_json_atomic
from nntailor.compress.base import CompressConfig, Context
from nntailor.compress.cluster import ClusterConfig
from nntailor.compress.deep_compression import sparse_bytes, storage_table
from nntailor.compress.quant import layer_formats, weight_widths
from nntailor.compress.recipe import FinetuneConfig, run_recipe
from nntailor.compress.validate import validate_recipe
from nntailor.cost import analyze
from nntailor.cost.report import check_bits
from nntailor.data import Datasets
from nntailor.errors import UserError
from nntailor.graph import capture
from nntailor.models import check_trainable
from nntailor.run_manifest import manifest, prepare_resume
from nntailor.targets import Target
from nntailor.train import evaluate

ROW_KEYS = ("params", "nz_params", "macs", "nz_macs", "bops", "energy_pj", "peak_sram_bytes", "flash_bytes")


def price(model: nn.Module, input_shape: tuple[int, ...], target: str | Target, bits: int | None = None,
          storage: dict[str, Any] | None = None) -> dict[str, Any]:
    """Costs at the widths the model has: each quantized or weight-shared layer at its own widths and
    arithmetic, the layers nothing quantized at ``bits`` (None: 32-bit float). ``w_bits`` / ``a_bits`` list the
    distinct widths of the MAC layers; ``storage`` (a Deep Compression table) gives the compressed size when
    shared, otherwise each layer's values count at their own width."""
    default = 32 if bits is None else bits
    report = analyze(model, input_shape, target, bits=default,
                     **layer_formats(model, default, input_shape))
    row: dict[str, Any] = {key: report.totals[key] for key in ROW_KEYS}
    mac_layers = [lc for lc in report.layers if lc.macs]
    row["w_bits"] = sorted({lc.w_bits for lc in mac_layers if lc.params})
    row["a_bits"] = sorted({lc.a_bits for lc in mac_layers})
    row["compressed_bytes"] = (storage["compressed_bytes_huffman"] if storage
                               else sparse_bytes(model, weight_widths(model, default)))
    return row


def measure(model: nn.Module, datasets: Datasets, target: Target, bits: int | None = None,
            storage: dict[str, Any] | None = None) -> dict[str, Any]:
    """Top-1 accuracy on the test split and ``price``'s costs."""
    row: dict[str, Any] = {"accuracy": evaluate(model, datasets.test)}
    row.update(price(model, datasets.input_shape, target, bits, storage))
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
    bits: int | None = None,
    seed: int = 0,
    progress: bool = True,
    name: str = "",
) -> dict[str, Any]:
    if bits is not None:  # None: unquantized layers are priced as the float they are
        check_bits(bits, "--bits")
    _check_classes(model, datasets)
    context = Context(train=datasets.train, test=datasets.test, input_shape=datasets.input_shape, target=target,
                      seed=seed)
    # everything that can be refused is refused before the first step: the recipe against the model's
    # structure, the output folder, and a folder that holds a different run
    validate_recipe(model, steps, context)
    check_writable_dir(out)
    prepare_resume(out, manifest(model, name or type(model).__name__, steps, datasets.name, target, bits, seed))
    # Fine-tunes before the first technique train the float baseline: "before" is measured after them.
    first = next((i for i, s in enumerate(steps) if not isinstance(s, FinetuneConfig)), len(steps))
    checkpoints = out / "checkpoints"
    model = run_recipe(model, steps[:first], context, checkpoints=checkpoints, progress=progress)
    before = measure(model, datasets, target, bits)
    model = run_recipe(model, steps[first:], context, checkpoints=checkpoints, progress=progress, start=first)
    clustered = any(isinstance(s, ClusterConfig) for s in steps)
    # Huffman coding once, for the row and the JSON; values at each layer's width
    storage = storage_table(model, value_bits=weight_widths(model, 32 if bits is None else bits)) if clustered else None
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
