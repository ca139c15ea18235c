"""Host speed of the generated C (deploy/c.py) against the tflite-micro wheel's TFLM interpreter, same inputs.

The MLPerf Tiny models (random weights, calibrated on random inputs) are built with ``make host`` (-O2) and run
over M random int8 inputs in one process launch (all M on stdin, launch included); TFLM runs the
exported .tflite over the same inputs in one interpreter. Best of three each. Writes
benchmarks/results/deploy_c_host.json.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from nntailor import zoo
from nntailor.deploy.build import build_int_model
from nntailor.deploy.c import host_speed, write_c
from nntailor.deploy.tflite import to_tflite

MODELS = ("ds_cnn", "resnet8", "vww_mobilenet", "ad_autoencoder")
INPUTS = 200


def main() -> None:
    rows = []
    for name in MODELS:
        torch.manual_seed(0)
        model = zoo.get(name).eval()
        shape = zoo.input_shape(name)
        int_model = build_int_model(model, torch.randn((16,) + tuple(shape[1:])), shape, batch_size=16)
        with tempfile.TemporaryDirectory() as out:
            project = write_c(int_model, out)
            rng = np.random.default_rng(0)
            x = [rng.integers(-128, 128, (INPUTS,) + int_model.tensors[t].shape[1:]).astype(np.int8)
                 for t in int_model.inputs]
            row = {"model": name, "inputs": INPUTS, "arena_bytes": project.arena_bytes,
                   **host_speed(project.build_host(), to_tflite(int_model), x)}
        rows.append(row)
        print(f"{name:16} ours {row['ours_s'] * 1e3:8.3f} ms  TFLM {row['tflm_s'] * 1e3:8.3f} ms  "
              f"{row['speedup']:5.2f}x  bit-exact {row['bit_exact']}")
    out = Path(__file__).parent / "results" / "deploy_c_host.json"
    out.write_text(json.dumps({"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "rows": rows},
                              indent=2) + "\n")


if __name__ == "__main__":
    main()
