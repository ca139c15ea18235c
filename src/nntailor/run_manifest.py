"""What a compress run in ``--out`` was started with, so a rerun resumes only what is still valid.

``run.json`` records the model (its name and a fingerprint of its structure: parameter and buffer names and
shapes), the data, the target, ``--bits``, ``--seed`` and one fingerprint per recipe step. A rerun compares:
the same → resume from the checkpoints as they are; another model, data, target, bits or seed → refused in one
line naming what changed; a changed recipe → the checkpoints of the first changed step and of every step after
it are removed and the run goes on from that step (the steps before it replay from their checkpoints).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch.nn as nn

from nntailor.atomic import write_json_atomic
from nntailor.compress.base import CompressConfig
from nntailor.errors import UserError

MANIFEST = "run.json"
# settings that decide when a checkpoint is written, not what is computed
_NOT_FINGERPRINTED = {"checkpoint_every"}
log = logging.getLogger("nntailor")


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def step_fingerprint(step: CompressConfig) -> str:
    return _digest({k: v for k, v in step.model_dump(mode="json").items() if k not in _NOT_FINGERPRINTED})


def structure_fingerprint(model: nn.Module) -> str:
    return _digest([(k, list(v.shape)) for k, v in model.state_dict().items()])


def manifest(model: nn.Module, name: str, steps: list[CompressConfig], data: str, target: Any, bits: int | None,
             seed: int) -> dict[str, Any]:
    return {
        "model": name, "structure": structure_fingerprint(model), "data": data,
        "target": target.name, "target_spec": _digest(target.model_dump(mode="json")), "bits": bits, "seed": seed,
        "steps": [{"step": s.step, "fingerprint": step_fingerprint(s)} for s in steps],
    }


def _read(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        raise UserError(f"{path} is not a readable run manifest; use a fresh --out or remove {path.parent}") from None
    return old if isinstance(old, dict) else None


def first_changed_step(old: dict[str, Any], new: dict[str, Any], out: Path) -> int | None:
    """0-based index of the first step whose settings differ (or that one run has and the other lacks); None
    if none does. Refuses when the run itself is another one: a different model, data, target, bits or seed."""
    hint = f"use a fresh --out or remove {out}"
    if old.get("model") != new["model"] or old.get("structure") != new["structure"]:
        shown = old.get("model") if old.get("model") != new["model"] else "the same name, another structure"
        raise UserError(f"{out} holds a run of another model ({shown}); {hint}")
    for key, option in (("data", "--data"), ("target", "--target"), ("target_spec", "--target"),
                        ("bits", "--bits"), ("seed", "--seed")):
        if old.get(key) != new[key]:
            was, now = ("not given" if v is None else v for v in (old.get(key), new[key]))
            change = f" ({was} -> {now})" if key != "target_spec" else " (its spec)"
            raise UserError(f"{option} changed since the run in {out}{change}; {hint}")
    old_steps, new_steps = old.get("steps") or [], new["steps"]
    for i in range(max(len(old_steps), len(new_steps))):
        if i >= len(old_steps) or i >= len(new_steps) or old_steps[i] != new_steps[i]:
            return i
    return None


def prepare_resume(out: Path, new: dict[str, Any]) -> int | None:
    """Compare ``new`` with the manifest in ``out`` (if any), drop the checkpoints a changed recipe made stale,
    then record ``new``. Returns the 0-based index of the first changed step, or None."""
    path = out / MANIFEST
    old = _read(path)
    changed = first_changed_step(old, new, out) if old is not None else None
    if changed is not None:
        what = new["steps"][changed]["step"] if changed < len(new["steps"]) else "removed"
        log.warning("step %d (%s) changed since the run in %s: resuming from it", changed + 1, what, out)
        checkpoints = out / "checkpoints"
        for i in range(changed + 1, max(len(old["steps"]), len(new["steps"])) + 1):
            (checkpoints / f"step{i}.pt").unlink(missing_ok=True)
            shutil.rmtree(checkpoints / f"step{i}", ignore_errors=True)
        for stale in ("model.safetensors", "compress.json"):
            (out / stale).unlink(missing_ok=True)
    if old != new:
        write_json_atomic(path, new)
    return changed
