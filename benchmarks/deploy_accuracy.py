"""Int8 against float accuracy, deployed end to end (issue 11, benchmarks): a LeNet-5 (the zoo's) trained on the
bundled MNIST sample (4,000 train / 1,000 test images) with ``nntailor.train.fit``, its float top-1 on the 1,000
test images, then the same model through ``build_int_model`` (PTQ, calibrated on 512 train images), written as C
(``write_c``), built with ``make host`` and run on all 1,000 test images (raw int8 NHWC on stdin). The int8 top-1
is the argmax of model_host's int8 logits (the output scale is positive, so it is the dequantized argmax); the C's
bytes are also checked against our numpy reference. Goal: within 1 point of float.
Writes benchmarks/results/deploy_accuracy.json.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import time
from pathlib import Path

import torch

from nntailor import zoo
from nntailor.data import load_dataset
from nntailor.deploy.build import build_int_model
from nntailor.deploy.c import run_host, write_c
from nntailor.train import TrainConfig, evaluate, fit

EPOCHS = 4
CALIB = 512
GOAL_POINTS = 1.0


def main() -> None:
    start = time.perf_counter()
    data = load_dataset("mnist")
    torch.manual_seed(0)
    model = zoo.get("lenet5")
    shape = zoo.input_shape("lenet5")
    fit(model, data.train, TrainConfig(epochs=EPOCHS, lr=1e-3, seed=0, progress=False))
    model.eval()
    float_acc = evaluate(model, data.test)
    x, y = data.test.tensors[0], data.test.tensors[1].numpy()
    int_model = build_int_model(model, data.train.tensors[0][:CALIB], shape)
    q = int_model.quantize_input(x.numpy().transpose(0, 2, 3, 1))
    name = int_model.outputs[0]
    reference = int_model.run(q)[name]
    with tempfile.TemporaryDirectory() as out:
        project = write_c(int_model, Path(out))
        logits = run_host(project.build_host(), [q], int_model.tensors[name].shape)
    int8_acc = float((logits.reshape(len(y), -1).argmax(axis=1) == y).mean())
    row = {"model": "lenet5", "dataset": "mnist (bundled sample)", "train_images": len(data.train),
           "test_images": len(y), "epochs": EPOCHS, "calibration_images": CALIB,
           "float_top1": round(100 * float_acc, 2), "int8_top1_c": round(100 * int8_acc, 2),
           "drop_points": round(100 * (float_acc - int8_acc), 2),
           "c_equals_reference": bool((logits == reference).all()), "goal_points": GOAL_POINTS,
           "met": bool(abs(100 * (float_acc - int8_acc)) <= GOAL_POINTS),
           "seconds": round(time.perf_counter() - start, 1)}
    print(f"LeNet-5 on MNIST ({len(y)} test images): float {row['float_top1']} %, int8 (C model_host) "
          f"{row['int8_top1_c']} %, drop {row['drop_points']} points (goal within {GOAL_POINTS}: "
          f"{'met' if row['met'] else 'MISSED'}); C == reference: {row['c_equals_reference']}")
    out = Path(__file__).parent / "results" / "deploy_accuracy.json"
    out.write_text(json.dumps({"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                               "rows": [row]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
