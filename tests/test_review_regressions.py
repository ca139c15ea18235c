"""Cases a review found wrong, each checked against an independent reference (eager shapes, FlopCounterMode,
arithmetic from the shapes) or against the equivalent nn module."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from nntailor import analyze, capture
from nntailor.cli import main
from nntailor.cost import metrics


def flop_macs(model, *xs):
    c = FlopCounterMode(display=False)
    with c, torch.no_grad():
        model(*xs)
    return c.get_total_flops() // 2


class TiedHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(512, 512))

    def forward(self, x):
        return x @ self.w.t()


def test_parameter_only_ops_are_constants_not_activations():
    tied = analyze(TiedHead(), (1, 512), "stm32l476")
    linear = analyze(nn.Linear(512, 512, bias=False), (1, 512), "stm32l476")
    assert tied.totals["peak_sram_bytes"] == linear.totals["peak_sram_bytes"] == 1024  # 512 in + 512 out, int8
    assert tied.totals["params"] == 512 * 512 and tied.totals["macs"] == 512 * 512
    assert tied.totals["energy_pj"] == pytest.approx(linear.totals["energy_pj"], rel=0.02)


class FunctionalLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(100, 100))

    def forward(self, x):
        return F.linear(x, self.w)


def test_functional_weights_are_not_activation_reads():
    layer = analyze(FunctionalLinear(), (1, 100), "stm32l476").layers[0]
    assert layer.act_bytes == 200  # 100 in + 100 out at int8
    assert layer.arith_intensity == pytest.approx(analyze(nn.Linear(100, 100, bias=False), (1, 100),
                                                          "stm32l476").layers[0].arith_intensity)


class Einsums(nn.Module):
    def forward(self, a, b, c, d, e):
        return (torch.einsum("bchw->bhwc", a).sum() + torch.einsum("ij,jk,kl->il", b, c, d).sum()
                + torch.einsum("...ij,...jk->ik", e, e.transpose(-1, -2)[..., :4, :]).sum())


def test_einsum_macs_match_flop_counter():
    shapes = [(1, 3, 4, 5), (4, 5), (5, 6), (6, 7), (3, 2, 4)]
    model = Einsums()
    xs = [torch.randn(s) for s in shapes]
    assert sum(metrics.macs(layer) for layer in capture(model, shapes)) == flop_macs(model, *xs)


def test_maxpool_return_indices_shapes():
    class Pool(nn.Module):
        def __init__(self):
            super().__init__()
            self.pool = nn.MaxPool2d(2, return_indices=True)

        def forward(self, x):
            y, idx = self.pool(x)
            return y + idx.float()

    graph = capture(Pool(), (2, 3, 8, 8))
    assert graph.layers[-1].output_shape == (2, 3, 4, 4)


class Gather(nn.Module):
    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(torch.randn(1000, 256))

    def forward(self, ids):
        return self.table[ids]


def test_indexing_a_tensor_makes_a_buffer():
    graph = capture(Gather(), (1, 64), input_dtype=torch.long)
    assert graph.layers[0].op == "slice"
    report = analyze(graph, target="stm32h743")
    assert report.totals["peak_sram_bytes"] >= 64 * 256  # the gathered rows, not a view of the ids


class NoMeta(nn.Module):
    op_kind = "relu"  # priced as an activation; its forward has no meta kernel

    def forward(self, x):
        return torch.from_numpy(x.detach().cpu().numpy())


def test_fallback_forward_does_not_touch_the_model():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), NoMeta()).train()
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    graph = capture(model, (1, 3, 8, 8))
    assert graph.layers[-1].output_shape == (1, 4, 6, 6)
    assert all(torch.equal(stats[k], v) for k, v in model.state_dict().items())
    assert model.training and model[1].training


def test_shared_module_reads_its_weights_every_call():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(256, 256)

        def forward(self, x):
            return self.fc(self.fc(x))

    report = analyze(Twice(), (1, 256), "stm32l476")
    first, second = report.layer("fc"), report.layer("fc#2")
    assert second.energy_pj == pytest.approx(first.energy_pj)
    assert second.params == 0 and report.totals["params"] == 256 * 257


def test_mixed_precision_activation_widths_reach_the_arena():
    model = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 64))
    uniform = analyze(model, (1, 64), "stm32l476", bits=8).totals["peak_sram_bytes"]
    wide = analyze(model, (1, 64), "stm32l476", bits=8, layer_bits={"0": (8, 32)}).totals["peak_sram_bytes"]
    assert wide == uniform + 64 * 3 and wide > uniform  # layer 0's 64 outputs at 4 bytes instead of 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["analyze", "zoo:lenet5", "--input-shape", "1,1,20000,20000", "--no-layers"], "does not run on input"),
        (["analyze", "zoo:lenet5", "--json", "/proc/nope/x.json", "--no-layers"], "cannot write"),
        (["analyze", "zoo:lenet5", "--count-like", "foo", "--debug-typo"], "debug-typo"),
    ],
)
def test_more_bad_input_is_one_line(capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]


def test_debug_after_the_command_still_shows_the_traceback():
    with pytest.raises(Exception, match="unknown target"):
        main(["analyze", "zoo:lenet5", "--target", "nochip", "--debug"])


def test_target_without_an_energy_entry_is_a_user_error(tmp_path, capsys):
    path = tmp_path / "t.yaml"
    path.write_text(
        "name: t\nkind: mcu\nclock_hz: 1.0e6\ncompute: {cycles_per_mac: {default: {int8: 1}}}\n"
        "energy: {preset: none, mac_pj: {fp32: 1.0}}\n"
        "memories:\n  - {name: m, size_bytes: 100000000, read_pj_per_byte: 1, holds: [weights, activations]}\n"
    )
    assert main(["analyze", "zoo:lenet5", "--target", str(path), "--no-layers"]) == 2
    assert "no entry for int8" in capsys.readouterr().err
