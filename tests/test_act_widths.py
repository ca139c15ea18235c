"""Activation widths in mixed precision: arena buffers and who reads them, HAWQ-V2's activation traces against
the exact Hessian, the joint integer program against exhaustive search, and a peak-SRAM budget end to end."""

import copy
import itertools

import pytest
import torch
import torch.nn as nn
from torch.autograd.functional import hessian

from nntailor import UserError, analyze, zoo
from nntailor.compress import Context, apply
from nntailor.compress.hessian import activation_traces
from nntailor.compress.quant import MixedPrecisionConfig, layer_formats
from nntailor.compress.quant.mixed import ActGroup, LiveSet, ilp_widths
from nntailor.cost.memory import activation_buffers, buffer_widths
from nntailor.data import load_dataset
from nntailor.graph import capture
from nntailor.train import TrainConfig, evaluate, fit


def test_buffers_know_their_readers():
    buffers = {b.name: b for b in activation_buffers(capture(zoo.get("lenet5"), (1, 1, 28, 28)))}
    # conv1 -> max pool -> conv2: the pool keeps its input's scale, so both buffers take conv2's input width
    assert buffers["features.0"].readers == buffers["features.1"].readers == {"features.2"}
    assert buffers["input"].readers == {"features.0"} and not buffers["input"].fixed
    assert buffers["classifier.2"].fixed  # the graph output
    resnet = {b.name: b for b in activation_buffers(capture(zoo.get("resnet8"), (1, 3, 32, 32)))}
    assert resnet["conv1"].fixed  # read by the residual add as well as by stack1.conv1
    assert resnet["stack1.add"].readers == {"stack2.conv1", "stack2.shortcut"}
    widths = buffer_widths(list(resnet.values()), {"stack2.conv1": 4, "stack2.shortcut": 4, "stack1.conv1": 2})
    assert widths["stack1.add"] == 4 and "conv1" not in widths
    assert "stack2.pad" not in resnet  # folded into stack2.conv1's SAME padding: no buffer of its own


def test_activation_trace_matches_the_exact_hessian():
    torch.manual_seed(0)
    head = nn.Sequential(nn.Linear(6, 8), nn.Tanh())
    tail = nn.Sequential(nn.Linear(8, 5), nn.Tanh(), nn.Linear(5, 3))
    model = nn.Sequential(head, tail)
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    traces, inputs = activation_traces(model, [tail[0]], [(x, y)], samples=2000,
                                       generator=torch.Generator().manual_seed(0))
    h = head(x).detach()
    exact = hessian(lambda a: nn.functional.cross_entropy(tail(a), y), h).reshape(h.numel(), h.numel()).trace()
    assert traces[0][0] == pytest.approx(float(exact), rel=0.05)
    assert torch.equal(inputs[0][0], h)


@pytest.mark.parametrize("seed", range(4))
def test_joint_program_equals_exhaustive_search(seed):
    gen = torch.Generator().manual_seed(seed)

    def rand() -> float:
        return float(torch.rand((), generator=gen))

    layers, bits, acts = ["a", "b", "c"], [2, 4, 8], [2, 4, 8]
    w_sens = {n: {b: rand() / b for b in bits} for n in layers}
    groups = [ActGroup(["a"], {a: rand() / a for a in acts}), ActGroup(["b", "c"], {a: rand() / a for a in acts})]
    numel = [int(torch.randint(100, 1000, (), generator=gen)) for _ in range(2)]

    def free(g: int, elements: int) -> tuple[int, dict[int, float]]:
        return g, {a: elements * a / 8 for a in acts}

    live = [LiveSet(50.0, [free(0, numel[0])]), LiveSet(20.0, [free(0, numel[0]), free(1, numel[1])]),
            LiveSet(300.0, [free(1, 10)])]
    budget = 320.0 + 0.5 * (numel[0] + numel[1]) * rand()
    weights, act_in = ilp_widths(w_sens, budget, groups=groups, live=live, what="peak_sram_bytes")

    def peak(g_widths):
        return max(s.fixed_bytes + sum(per_width[g_widths[g]] for g, per_width in s.free) for s in live)

    best = min(
        (sum(w_sens[n][w] for n, w in zip(layers, ws, strict=True)) + sum(groups[g].sensitivity[a]
                                                                        for g, a in enumerate(gs)), ws, gs)
        for ws in itertools.product(bits, repeat=3) for gs in itertools.product(acts, repeat=2)
        if peak(gs) <= budget
    )
    got = sum(w_sens[n][weights[n]] for n in layers) + groups[0].sensitivity[act_in["a"]] + \
        groups[1].sensitivity[act_in["b"]]
    assert act_in["b"] == act_in["c"]  # one width per group
    assert got == pytest.approx(best[0])
    assert peak([act_in["a"], act_in["b"]]) <= budget
    with pytest.raises(UserError, match="below the smallest possible model"):
        ilp_widths(w_sens, 100.0, groups=groups, live=live, what="peak_sram_bytes")


class Net(nn.Module):
    """A digits CNN whose largest buffer (the first conv's 16 x 8 x 8 output) sets the peak."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = self.pool(torch.relu(self.conv2(x)))
        return self.fc(x.flatten(1))


def test_peak_sram_budget_end_to_end():
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = Net()
    fit(model, data.train, TrainConfig(epochs=3, lr=3e-3, progress=False))
    shape, target = (1, 1, 8, 8), "stm32l476"
    int8_peak = analyze(model, shape, target).totals["peak_sram_bytes"]
    assert int8_peak == 2 * 16 * 64  # conv1's output and conv2's, both live while conv2 runs
    context = Context(train=data.train, input_shape=shape, target=target)
    budget = 0.6 * int8_peak
    mixed = apply(copy.deepcopy(model), MixedPrecisionConfig(budget_metric="peak_sram_bytes", budget=budget),
                  context)
    report = analyze(mixed, shape, target, **layer_formats(mixed, 8, shape))
    assert report.totals["peak_sram_bytes"] <= budget
    assert min(m.input_quant.spec.bits for m in (mixed.conv2, mixed.fc)) < 8
    assert evaluate(mixed, data.test) > 0.5
    with pytest.raises(UserError, match="below the smallest possible model"):
        apply(copy.deepcopy(model), MixedPrecisionConfig(budget_metric="peak_sram_bytes", budget=100), context)
    with pytest.raises(UserError, match="needs the input shape"):
        apply(copy.deepcopy(model), MixedPrecisionConfig(budget_metric="peak_sram_bytes", budget=budget),
              Context(train=data.train))


def test_a_reused_layer_sums_its_calls():
    torch.manual_seed(0)
    fc = nn.Linear(6, 6)
    model = nn.Sequential(fc, nn.Tanh(), fc, nn.Tanh(), nn.Linear(6, 3))
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    traces, inputs = activation_traces(model, [fc], [(x, y)], samples=4000,
                                       generator=torch.Generator().manual_seed(0))
    assert inputs[0][0].numel() == 2 * 8 * 6  # both calls' inputs, as the one quantizer of fc sees them
    # the first call's input is the model's input; the second call's is tanh(fc(x))
    h2 = torch.tanh(fc(x)).detach()
    first = hessian(lambda a: nn.functional.cross_entropy(model(a), y), x).reshape(48, 48).trace()
    second = hessian(lambda b: nn.functional.cross_entropy(model[4](torch.tanh(fc(b))), y), h2).reshape(48, 48).trace()
    assert traces[0][0] == pytest.approx(float(first + second), rel=0.05)


def test_activation_options_without_the_default_width():
    # every buffer but the output is read by one linear: each layer is in a group, so all read at the only option
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32))
    model.append(nn.Linear(32, 10))
    context = Context(train=data.train, input_shape=(1, 1, 8, 8), target="stm32l476")
    config = MixedPrecisionConfig(budget=(64 * 32 + 32 * 32 + 32 * 10) * 4 / 8, act_bit_options=[4])
    mixed = apply(model, config, context)
    assert {m.input_quant.spec.bits for m in mixed.modules() if hasattr(m, "input_quant")} == {4}


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.head = nn.Linear(64, 64), nn.Linear(64, 64), nn.Linear(64, 10)

    def forward(self, x):
        h = x.flatten(1)
        return self.head(torch.relu(self.fc2(torch.relu(self.fc1(h))) + h))


def test_a_buffer_also_read_by_an_add_keeps_the_default_width():
    data = load_dataset("digits")
    context = Context(train=data.train, input_shape=(1, 1, 8, 8), target="stm32l476")
    config = MixedPrecisionConfig(budget_metric="bops", budget=1e9, act_bit_options=[2, 4])
    mixed = apply(Residual(), config, context)
    # the input is read by fc1 and by the add: it stays at act_bits, which is not among the options
    assert mixed.fc1.input_quant.spec.bits == 8
    # fc1's output and the add's (relu fused) are read by one linear each: free, and a generous budget picks 4
    assert mixed.fc2.input_quant.spec.bits == mixed.head.input_quant.spec.bits == 4


def test_every_achievable_arena_is_a_feasible_budget():
    # the live-set bound uses the planner's aligned sizes, and a plan the planner rejects is cut off rather than
    # tightening the bound: so no budget that some combination of widths meets is refused
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 20), nn.ReLU(), nn.Linear(20, 20), nn.ReLU(),
                          nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 10))
    shape, target = (1, 1, 8, 8), "stm32l476"
    names = ["1", "3", "5", "7"]
    buffers = activation_buffers(capture(model, shape))

    def arena(widths) -> int:
        stored = buffer_widths(buffers, dict(zip(names, widths, strict=True)))
        return analyze(model, shape, target, buffer_bits=stored).totals["peak_sram_bytes"]

    achievable = sorted({arena(ws) for ws in itertools.product([2, 4, 8], repeat=len(names))})
    assert len(achievable) >= 3
    context = Context(train=data.train, input_shape=shape, target=target)
    for budget in achievable:
        config = MixedPrecisionConfig(budget_metric="peak_sram_bytes", budget=budget, trace_samples=2,
                                      trace_batches=1)
        mixed = apply(copy.deepcopy(model), config, context)
        assert analyze(mixed, shape, target, **layer_formats(mixed, 8, shape)).totals["peak_sram_bytes"] <= budget
    with pytest.raises(UserError, match=f"budget {achievable[0] - 1} is below the smallest possible model"):
        apply(copy.deepcopy(model), MixedPrecisionConfig(budget_metric="peak_sram_bytes", budget=achievable[0] - 1),
              context)


class WideMul(nn.Module):
    """fc2's 2048 outputs feed a mul: that buffer is stored at act_bits whatever fc2 reads at."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.head = nn.Linear(64, 16), nn.Linear(16, 2048), nn.Linear(2048, 10)

    def forward(self, x):
        return self.head(self.fc2(torch.relu(self.fc1(x.flatten(1)))) * 0.5)


def test_an_energy_budget_holds_when_the_result_is_priced_as_deployed():
    from nntailor.compress.quant.hawq import layer_costs

    data = load_dataset("digits")
    torch.manual_seed(0)
    model, shape, target = WideMul(), (1, 1, 8, 8), "stm32l476"
    context = Context(train=data.train, input_shape=shape, target=target)
    names = ["fc1", "fc2", "head"]
    config = MixedPrecisionConfig(budget_metric="energy_pj", budget=1.0, bits=[8], act_bit_options=[2, 4, 8],
                                  trace_samples=4, trace_batches=1)
    cost, rest = layer_costs(model, names, config, context, config.act_options())
    for acts in ((2, 8, 8), (4, 2, 8), (8, 4, 8)):  # budgets the program's own estimates make just feasible
        budget = rest + sum(cost[n][(8, a)] for n, a in zip(names, acts, strict=True))
        mixed = apply(copy.deepcopy(model), config.model_copy(update={"budget": budget}), context)
        priced = analyze(mixed, shape, target, **layer_formats(mixed, 8, shape)).totals["energy_pj"]
        assert priced <= budget
