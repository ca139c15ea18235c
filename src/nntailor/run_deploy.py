"""The deploy job behind ``nntailor deploy``: check everything, build the IntModel, export, verify, write.

Order (everything a user can get wrong is refused before the first file is written): formats, target, output
folder, model (a MODEL spec or a ``nntailor compress`` folder rebuilt exactly), calibration data, ``analyze``'s
fit verdict (``--force`` overrides), ``build_int_model`` (unsupported ops and int32 accumulator overflow, named
per layer). Then each format's exporter writes into a temporary folder next to ``--out``, every artifact is
checked against our reference (the .tflite in TFLM, layer by layer; the .onnx in onnxruntime, LSB counts; the C
on the host and, for a target with a Cortex-M ``core``, built for it and run under QEMU), and the folder is moved
into place: an interrupted deploy leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn as nn

from nntailor.atomic import check_writable_dir
from nntailor.deploy.intmodel import IntModel
from nntailor.errors import UserError
from nntailor.graph.types import Shape
from nntailor.targets import Target

if TYPE_CHECKING:
    from nntailor.deploy.c import CProject

MARKER = "nntailor deploy"  # report.json's "producer": what makes an existing --out folder ours
REPORT = "report.json"
CALIB_SAMPLES = 512  # what build_int_model observes (8 batches of 64): the report says what was used
CHECK_SAMPLES = 16  # inputs every artifact is run on against the reference
QEMU_TIMEOUT_S = 600.0  # one QEMU run of the check inputs
LAYER_SAMPLES = 4  # of those, inputs TFLM is run on with every intermediate tensor kept (per-layer check)


@dataclass
class Artifact:
    """What one exporter produced: files written (relative to the folder) and its check against the reference."""

    files: list[str]
    check: dict[str, Any]


Exporter = Callable[[IntModel, Path, list[np.ndarray]], Artifact]


def _tflite(model: IntModel, folder: Path, inputs: list[np.ndarray]) -> Artifact:
    """model.tflite; TFLM (the wheel's interpreter) against the reference: outputs and every layer."""
    from nntailor.deploy.tflite import run_tflm, tflm_arena, tflm_tensors, to_tflite

    buf = to_tflite(model)
    (folder / "model.tflite").write_bytes(buf)
    ours = model.run(*inputs)
    theirs = run_tflm(buf, inputs, n_outputs=len(model.outputs))
    outputs = {name: bool((ours[name] == got).all()) for name, got in zip(model.outputs, theirs, strict=True)}
    layers = {op.name: True for op in model.ops}
    for i in range(min(LAYER_SAMPLES, len(inputs[0]))):
        found = tflm_tensors(buf, model, [x[i:i + 1] for x in inputs])
        for op in model.ops:
            layers[op.name] &= bool((ours[op.output][i:i + 1] == found[op.output]).all())
    return Artifact(["model.tflite"], {
        "runtime": "TFLM (tflite-micro wheel interpreter)", "samples": int(len(inputs[0])),
        "layer_samples": min(LAYER_SAMPLES, len(inputs[0])), "bit_exact": all(outputs.values()) and all(
            layers.values()), "outputs": outputs, "layers": layers, "arena": tflm_arena(buf), "bytes": len(buf)})


def _onnx(model: IntModel, folder: Path, inputs: list[np.ndarray]) -> Artifact:
    """model.onnx (QDQ); onnxruntime's LSB differences from the reference, per output and per layer."""
    from nntailor.deploy.onnx import compare_onnx, to_onnx

    buf = to_onnx(model)
    (folder / "model.onnx").write_bytes(buf)
    found = compare_onnx(model, inputs)
    exact = all(v["differ"] == 0 for v in found["outputs"].values())
    return Artifact(["model.onnx"], {"bit_exact": exact, "bytes": len(buf), **found})


def _c(model: IntModel, folder: Path, inputs: list[np.ndarray], core: str | None = None) -> Artifact:
    """DIR/c/ (model.c/.h, kernels, main.c, Makefile); ``make host`` builds model_host, whose output bytes for the
    check inputs are compared with the reference. With the target's ``core``, the same sources are also built for
    that Cortex-M and run under QEMU (``cortexm`` in the check)."""
    from nntailor.deploy.c import run_host, write_c

    project = write_c(model, folder / "c")
    binary = project.build_host()
    ours = model.run(*inputs)
    outputs = {}
    if len(model.outputs) == 1:  # main.c writes the one output tensor; several are not told apart on stdout
        name = model.outputs[0]
        outputs[name] = bool((run_host(binary, inputs, model.tensors[name].shape) == ours[name]).all())
    files = sorted(str(p.relative_to(folder)) for p in project.files) + ["c/model_host"]
    check = {"runtime": "generated C99, host build (make host)", "samples": int(len(inputs[0])),
             # main.c writes one output tensor: with several nothing is compared, so no verdict (None)
             "bit_exact": all(outputs.values()) if outputs else None, "outputs": outputs,
             "arena_bytes": project.arena_bytes, "const_bytes": project.flash_arrays_bytes}
    if core is not None:
        check["cortexm"] = _cortexm(model, project, inputs, core, ours)
        if "elf" in check["cortexm"]:
            files.append(check["cortexm"]["elf"])
    return Artifact(files, check)


def _cortexm(model: IntModel, project: CProject, inputs: list[np.ndarray], core: str,
             ours: dict[str, np.ndarray]) -> dict[str, Any]:
    """The generated C built for ``core`` (deploy.cortexm) and run under QEMU on the check inputs: output bytes
    against the reference, ``arm-none-eabi-size``'s flash and static RAM, and instructions per inference (the
    count of a two-input run minus a one-input run: startup, stdio and exit cancel). A missing toolchain is
    recorded in one line naming the Debian package; the host outputs are written all the same."""
    from nntailor.deploy import cortexm
    from nntailor.deploy.c import _stdin_bytes

    missing = cortexm.missing_toolchain(core)
    if missing is not None:
        return {"core": core, "built": False, "missing": missing}
    out_dir = project.out_dir / "cortexm"
    elf = cortexm.build([project.out_dir / n for n in ("model.c", "nnt_kernels.c", "main.c")], core, out_dir,
                        name=f"model_{core.replace('-', '_')}")
    result = cortexm.run(elf, core, _stdin_bytes(inputs), timeout=QEMU_TIMEOUT_S)
    want = b"".join(np.ascontiguousarray(ours[name]).tobytes() for name in model.outputs)
    one, two = ([x[:k] for x in inputs] for k in (1, 2))
    per_inference = (cortexm.insn_count(elf, core, _stdin_bytes(two), QEMU_TIMEOUT_S)
                     - cortexm.insn_count(elf, core, _stdin_bytes(one), QEMU_TIMEOUT_S))
    sizes = cortexm.size(elf)
    return {"core": core, "built": True, "machine": cortexm.core_spec(core).machine,
            "elf": str(elf.relative_to(project.out_dir.parent)), "samples": int(len(inputs[0])),
            "bit_exact": result.exit_code == 0 and result.stdout_bytes == want, "exit_code": result.exit_code,
            "instructions_per_inference": per_inference, "size": sizes, "arena_bytes": project.arena_bytes,
            "const_bytes": project.flash_arrays_bytes}


# format -> exporter
EXPORTERS: dict[str, Exporter] = {"c": _c, "tflite": _tflite, "onnx": _onnx}
FORMATS = ("c", "tflite", "onnx")  # what --format accepts (the CLI contract)


def check_formats(formats: list[str] | None) -> list[str]:
    chosen = list(dict.fromkeys(formats)) if formats else [f for f in FORMATS if f in EXPORTERS]
    for f in chosen:
        if f not in FORMATS:
            raise UserError(f"--format {f!r}: valid formats are {', '.join(FORMATS)}")
        if f not in EXPORTERS:
            raise UserError(f"--format {f!r}: that exporter is not in this build; available: "
                            f"{', '.join(EXPORTERS)}")
    return chosen


def check_out(out: Path, overwrite: bool) -> None:
    """An --out that exists must be empty, or ours (its report.json has our marker), or --overwrite given."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    # the temporary folder is made beside --out: its parent must take files, checked before any long work
    check_writable_dir(out.parent.resolve(), "the folder of --out")
    if not out.exists() or overwrite or not any(out.iterdir()):
        return
    try:
        ours = json.loads((out / REPORT).read_text()).get("producer") == MARKER
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise UserError(f"--out {out} exists and is not an nntailor deploy folder; pick another or pass --overwrite")


def rebuild_compressed(folder: Path) -> tuple[nn.Module, str, Shape]:
    """The model a ``nntailor compress`` run in ``folder`` wrote, rebuilt without unpickling anything.

    The zoo spec recorded in compress.json is built again; every conv, linear and batch norm is resized to its
    tensors' shapes in model.safetensors (what structured pruning changes), the recipe's ``quantize`` steps
    are replayed (they swap in fake-quantized layers), and the state dict is loaded strictly, so any other
    structural change (a step that replaces modules otherwise) is refused by name."""
    from safetensors.torch import load_file

    from nntailor import zoo
    from nntailor.models import load_model

    try:
        run = json.loads((folder / "compress.json").read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{folder}: no readable compress.json ({exc})") from None
    spec = str(run.get("model", ""))
    if zoo.parse_spec(spec)[0] not in zoo.names():
        raise UserError(f"{folder}: the compress run's model {spec!r} is not a zoo model, so it cannot be rebuilt "
                        "from the folder; deploy the model file itself")
    loaded = load_model(f"zoo:{spec}")
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise UserError(f"{folder}: no model.safetensors (the compress run did not finish)")
    state = load_file(str(weights))
    model = loaded.model
    _resize(model, state)
    model = _replay_quantize(model, run.get("steps", []), loaded.input_shape)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        steps = ", ".join(s.get("step", "?") for s in run.get("steps", []))
        first = str(exc).splitlines()[1:2] or [str(exc)]
        raise UserError(f"{folder}: model.safetensors does not fit {spec} after its recipe ({steps}): "
                        f"{first[0].strip()}") from None
    return model.eval(), spec, loaded.input_shape


def _replay_quantize(model: nn.Module, steps: list[dict[str, Any]], input_shape: Shape) -> nn.Module:
    """Swap in the fake-quantized layers each recorded ``quantize`` step made. Their calibration here runs on
    stand-in inputs only to leave the quantizers calibrated: the strict load that follows replaces every range
    (scale, zero point, learned step) by the saved one."""
    from torch.utils.data import TensorDataset

    from nntailor.compress.base import Context, apply
    from nntailor.compress.quant.ptq import QuantizeConfig

    stand_in = torch.rand((4, *input_shape[1:]), generator=torch.Generator().manual_seed(0))
    context = Context(train=TensorDataset(stand_in, torch.zeros(4, dtype=torch.long)))
    for step in steps:
        if step.get("step") == "quantize":
            model = apply(model, QuantizeConfig.model_validate(step), context)
    return model


@torch.no_grad()
def _resize(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Give every conv, linear and batch norm the channel counts its saved tensors have."""
    for path, m in model.named_modules():
        prefix = f"{path}." if path else ""
        weight = state.get(f"{prefix}weight")
        if isinstance(m, nn.modules.conv._ConvNd) and weight is not None:
            depthwise = m.groups == m.in_channels and m.groups > 1
            multiplier = m.out_channels // m.in_channels if depthwise else 1
            m.out_channels = int(weight.shape[0])
            if depthwise:
                m.groups = m.in_channels = m.out_channels // multiplier
            else:
                m.in_channels = int(weight.shape[1]) * m.groups
        elif isinstance(m, nn.Linear) and weight is not None:
            m.out_features, m.in_features = (int(d) for d in weight.shape)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and f"{prefix}running_mean" in state:
            m.num_features = int(state[f"{prefix}running_mean"].shape[0])
        else:
            continue
        for name, tensor in list(m.named_parameters(recurse=False)) + list(m.named_buffers(recurse=False)):
            saved = state.get(f"{prefix}{name}")
            if saved is not None and tuple(saved.shape) != tuple(tensor.shape):
                new = torch.empty(saved.shape, dtype=tensor.dtype)
                if isinstance(tensor, nn.Parameter):
                    setattr(m, name, nn.Parameter(new, requires_grad=tensor.requires_grad))
                else:
                    setattr(m, name, new)


def load_calibration(data: str, input_shape: Shape) -> tuple[torch.Tensor, torch.Tensor]:
    """(calibration inputs, check inputs), float32 shaped like the model's input (batch first).

    DATA is a ``.npy`` file of float32 inputs (read with allow_pickle=False) or a dataset name: its train split
    calibrates and its test split checks."""
    want = tuple(input_shape[1:])
    if data.endswith(".npy"):
        try:
            x = np.load(data, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise UserError(f"--calib {data}: not a readable .npy of numbers ({str(exc).splitlines()[0]})") from None
        if x.dtype != np.float32:
            raise UserError(f"--calib {data}: inputs must be float32, got {x.dtype}")
        if x.ndim != len(input_shape) or tuple(x.shape[1:]) != want:
            raise UserError(f"--calib {data}: inputs must be shaped (N, {', '.join(map(str, want))}), got "
                            f"{tuple(x.shape)}")
        if len(x) == 0:
            raise UserError(f"--calib {data}: the file holds no inputs")
        if not np.isfinite(x).all():
            raise UserError(f"--calib {data}: {int((~np.isfinite(x)).sum())} values are NaN or infinite")
        calib = torch.from_numpy(np.ascontiguousarray(x))
        return calib, calib[:CHECK_SAMPLES]
    from nntailor.data import load_dataset

    datasets = load_dataset(data)
    train, test = datasets.train.tensors[0], datasets.test.tensors[0]
    if tuple(train.shape[1:]) != want:
        raise UserError(f"--calib {data}: its inputs are {'x'.join(map(str, train.shape[1:]))}, the model takes "
                        f"{'x'.join(map(str, want))}")
    return train.float(), test[:CHECK_SAMPLES].float()


def _nhwc(x: torch.Tensor) -> np.ndarray:
    a = x.numpy()
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a


def _fit_error(violations: list[str], target: str) -> UserError:
    return UserError(f"the model does not fit {target}: {'; '.join(violations)} (--force writes it anyway)")


def _move_into_place(tmp: Path, out: Path) -> None:
    """Replace ``out`` by ``tmp``: the old folder is renamed aside first, so ``out`` is whole at every moment
    but the one between the two renames (same filesystem: both sit in out's parent)."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old."))
        os.replace(out, old / "previous")
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def deploy_model(
    model_spec: str,
    target: str | Target,
    calib: str,
    out: Path,
    *,
    input_shape: Shape | None = None,
    formats: list[str] | None = None,
    force: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Deploy MODEL (a spec ``analyze`` takes, or a compress output folder) for ``target``; write ``out``."""
    from nntailor.cost import analyze
    from nntailor.deploy.build import build_int_model
    from nntailor.models import load_model
    from nntailor.targets import load as load_target

    chosen = check_formats(formats)
    tgt = load_target(target) if isinstance(target, str) else target
    out = Path(out)
    check_out(out, overwrite)
    source = Path(model_spec)
    if source.is_dir() and (source / "compress.json").exists():
        model, name, default_shape = rebuild_compressed(source)
    else:
        loaded = load_model(model_spec)
        model, name, default_shape = loaded.model.eval(), loaded.name, loaded.input_shape
    shape = tuple(input_shape or default_shape or ())
    if not shape:
        raise UserError(f"{model_spec}: give --input-shape (e.g. 1,1,20,16); the model has no default")
    calibration, check_inputs = load_calibration(calib, shape)
    calibration = calibration[:CALIB_SAMPLES]
    report = analyze(model, shape, tgt, bits=8, name=name)
    if not report.fits and not force:
        raise _fit_error(report.violations, tgt.name)
    int_model = build_int_model(model, calibration, shape)
    inputs = [int_model.quantize_input(_nhwc(check_inputs))]
    totals = report.totals
    result: dict[str, Any] = {
        "producer": MARKER,
        "model": name,
        "source": model_spec,
        "target": tgt.name,
        "input_shape": list(shape),
        "calibration": {"data": calib, "samples": int(len(calibration))},
        "formats": chosen,
        "ops": len(int_model.ops),
        "analyze": {
            "peak_sram_bytes": totals["peak_sram_bytes"], "arena_tail_bytes": totals["arena_tail_bytes"],
            "arena_bytes": totals["peak_sram_bytes"] + totals["arena_tail_bytes"],
            "flash_bytes": totals["flash_bytes"], "latency_s": totals["latency_s"], "macs": totals["macs"],
            "fits": report.fits, "violations": list(report.violations), "forced": bool(force and not report.fits),
        },
        "files": [],
        "checks": {},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.deploy."))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; the result should read like any other folder
    try:
        for fmt in chosen:
            exporter = partial(_c, core=tgt.core) if fmt == "c" and tgt.core else EXPORTERS[fmt]
            artifact = exporter(int_model, tmp, inputs)
            result["files"] += artifact.files
            result["checks"][fmt] = artifact.check
        result["files"].append(REPORT)
        (tmp / REPORT).write_text(json.dumps(result, indent=2) + "\n")
        _move_into_place(tmp, out)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return result
