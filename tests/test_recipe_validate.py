"""The whole recipe is checked before its first step: each refusal is one `error:` line, exit 2, and no
fine-tune has run (no checkpoint exists, and the long fine-tune in front of the bad step would take far longer)."""

import time

import pytest

from nntailor.cli import main

MODEL = """
import torch.nn as nn

def make():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
"""

LONG = "  - {step: finetune, epochs: 400}\n"  # minutes of training: a refusal after it would be obvious


@pytest.fixture
def files(tmp_path):
    (tmp_path / "net.py").write_text(MODEL)
    return tmp_path


def refused(capsys, files, steps, *extra, out=None):
    (files / "recipe.yaml").write_text("steps:\n" + steps)
    out = out or files / "out"
    start = time.perf_counter()
    code = main(["compress", f"{files}/net.py:make", "--recipe", f"{files}/recipe.yaml", "--data", "digits",
                 "--out", str(out), "--no-progress", *extra])
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert not (files / "out" / "checkpoints").exists()
    assert elapsed < 30  # validation, data and model loading only
    return err[0].removeprefix("error: ")


def test_a_layer_pattern_that_matches_nothing(files, capsys):
    message = refused(capsys, files, LONG + "  - {step: prune, sparsity: 0.5, layers: ['conv*']}\n")
    assert message == "step 2 (prune): layers 'conv*' matches no conv or linear layer; the layers are 1, 3"


def test_a_per_layer_sparsity_naming_no_layer(files, capsys):
    # was accepted silently: nothing pruned, exit 0
    message = refused(capsys, files, LONG + "  - {step: prune, sparsity: {'1': 0.5, 'fc9': 0.9}}\n")
    assert message == "step 2 (prune): sparsity 'fc9' matches no conv or linear layer; the layers are 1, 3"


def test_an_exclude_pattern_that_matches_nothing(files, capsys):
    message = refused(capsys, files, LONG + "  - {step: cluster, bits: 4, exclude: ['classifier']}\n")
    assert message.startswith("step 2 (cluster): exclude 'classifier' matches no conv or linear layer")


def test_patterns_are_checked_against_the_model_earlier_steps_leave(files, capsys):
    # low rank replaces layer 1 by two factors, 1.0 and 1.1: a later step naming "1" would find no weight
    message = refused(capsys, files, "  - {step: low_rank, energy: 0.9, layers: ['1']}\n" + LONG
                      + "  - {step: prune, sparsity: {'1': 0.5}}\n")
    assert message == "step 3 (prune): sparsity '1' matches no conv or linear layer; the layers are 1.0, 1.1, 3"


def test_layers_and_exclude_that_leave_nothing(files, capsys):
    message = refused(capsys, files, LONG + "  - {step: prune, sparsity: 0.5, layers: ['1'], exclude: ['1']}\n")
    assert message == "step 2 (prune): no conv or linear layer matches the step's layers/exclude"


def test_distill_with_no_technique_before_it(files, capsys):
    message = refused(capsys, files, LONG + "  - {step: finetune, epochs: 1, distill: true}\n")
    assert message.startswith("step 2 (finetune): distill needs a technique step before it")


def test_a_weight_bytes_budget_below_the_smallest_model(files, capsys):
    # every layer at its lowest width (2 bits): (64 x 32 + 32 x 10) weights x 2 / 8 = 592 bytes
    message = refused(capsys, files, LONG + "  - {step: mixed_precision, budget: 500, bits: [2, 4, 8]}\n")
    assert message == ("step 2 (mixed_precision): weight_bytes budget 500 is below the smallest possible model "
                       "(592, every layer at its lowest width)")


def test_a_bops_budget_below_the_smallest_model(files, capsys):
    # BOPs = MACs x w x a: (64 x 32 + 32 x 10) x 4 x 8 = 75,776 at the lowest width 4
    message = refused(capsys, files, LONG + "  - {step: mixed_precision, budget_metric: bops, budget: 70000, "
                      "bits: [4, 8]}\n")
    assert message == ("step 2 (mixed_precision): bops budget 70,000 is below the smallest possible model "
                       "(75,776, every layer at its lowest width)")


def test_a_channel_budget_no_pruning_reaches(files, capsys):
    message = refused(capsys, files, LONG + "  - {step: budget, metric: macs, budget: 10}\n")
    assert message.startswith("step 2 (budget): budget macs <= 10 cannot be met: removing 90% of the channels")


def test_widths_out_of_range(files, capsys):
    message = refused(capsys, files, LONG + "  - {step: energy_prune, bits: 33}\n")
    assert message == "step 2 (energy_prune): bits must be 1 to 16 or 32, got 33"
    assert refused(capsys, files, LONG, "--bits", "33") == "--bits must be 1 to 16 or 32, got 33"


def test_out_is_a_file_or_under_a_file(files, capsys):
    (files / "taken").write_text("a file")
    assert refused(capsys, files, LONG, out=files / "taken") == f"--out {files}/taken is a file, not a folder"
    assert (refused(capsys, files, LONG, out=files / "taken" / "run")
            == f"--out {files}/taken/run lies under {files}/taken, which is a file")


def test_out_where_no_file_can_be_created(files, capsys):
    # sysfs takes no new entries, not even from root (for whom permission bits would not stop a write)
    message = refused(capsys, files, LONG, out="/sys/nntailor-run")
    assert message.startswith("--out /sys/nntailor-run is not writable: ")
