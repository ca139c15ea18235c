"""Hessian diagonal against autograd's full Hessian; OBD saliency pruning (LeCun et al. 1990)."""

import pytest
import torch
import torch.nn as nn
from torch.func import functional_call

from nntailor import UserError
from nntailor.compress import Context, PruneConfig, apply, sparsity
from nntailor.compress.hessian import hessian_diagonal
from nntailor.data import load_dataset


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 6), nn.Tanh(), nn.Linear(6, 10))


@pytest.fixture(scope="module")
def batch():
    data = load_dataset("digits")
    return data.train.tensors[0][:64], data.train.tensors[1][:64]


def exact_blocks(model, x, y):
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach() for p in model.parameters())

    def loss(*ps):
        return nn.functional.cross_entropy(functional_call(model, dict(zip(names, ps, strict=True)), (x,)), y)

    full = torch.autograd.functional.hessian(loss, params)
    return [full[i][i].reshape(p.numel(), p.numel()) for i, p in enumerate(params)]


def autograd_diagonal(model, x, y):
    """The full Hessian by torch.autograd.functional.hessian, then its diagonal: the independent reference."""
    return [block.diagonal().reshape(p.shape) for block, p in zip(exact_blocks(model, x, y), model.parameters(),
                                                                   strict=True)]


def test_exact_diagonal_equals_autograd_hessian(batch):
    model = tiny()
    params = list(model.parameters())
    ours = hessian_diagonal(model, params, [batch], exact=True)
    ref = autograd_diagonal(model, *batch)
    for a, b in zip(ours, ref, strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def test_hutchinson_diagonal_converges(batch):
    model = tiny()
    params = list(model.parameters())
    exact = torch.cat([d.flatten() for d in hessian_diagonal(model, params, [batch], exact=True)])

    def error(samples):
        est = torch.cat([d.flatten() for d in hessian_diagonal(
            model, params, [batch], samples=samples, generator=torch.Generator().manual_seed(0))])
        return float((est - exact).norm() / exact.norm()), float(est.sum())

    coarse, _ = error(25)
    fine, _ = error(400)
    # unbiased with variance sum_j!=i H_ij^2 / N: 16x the samples should cut the error about 4x
    assert fine < coarse / 2.5
    _, trace = error(1600)
    assert trace == pytest.approx(float(exact.sum()), rel=0.05)  # the trace, HAWQ-V2's quantity


def test_obd_needs_data_and_prunes_by_saliency():
    with pytest.raises(UserError, match="needs training data"):
        apply(tiny(), PruneConfig(criterion="obd", sparsity=0.5))
    data = load_dataset("digits")
    model = apply(tiny(), PruneConfig(criterion="obd", sparsity=0.5, hessian_batches=2),
                  Context(train=data.train))
    assert sparsity(model)["1"] == pytest.approx(0.5, abs=1e-3)
    # a different criterion really ranks differently from magnitude
    magnitude = apply(tiny(), PruneConfig(sparsity=0.5))
    assert not torch.equal(model[1].weight != 0, magnitude[1].weight != 0)


def test_fisher_diagonal_is_the_gauss_newton_diagonal(batch):
    """Sampled-label Fisher against the exact one, by enumerating every label weighted by p(y|x)."""
    from nntailor.compress.hessian import fisher_diagonal

    model = tiny()
    x = batch[0][:16]
    weight = model[3].weight
    exact = torch.zeros_like(weight)
    with torch.no_grad():
        probs = nn.functional.softmax(model(x), dim=-1)
    for i in range(len(x)):
        for label in range(10):
            model.zero_grad()
            nn.functional.cross_entropy(model(x[i : i + 1]), torch.tensor([label])).backward()
            exact += probs[i, label] * weight.grad**2
    exact /= len(x)
    repeated = [(x, batch[1][:16])] * 100  # many label draws per sample
    est = fisher_diagonal(model, [weight], repeated, generator=torch.Generator().manual_seed(0))[0]
    assert (est >= 0).all()
    assert (est - exact).norm() / exact.norm() < 0.15


def test_block_traces_and_top_eigenvalues_match_the_exact_hessian(batch):
    from nntailor.compress.hessian import hessian_traces, top_eigenvalues

    model = tiny()
    params = list(model.parameters())
    blocks = exact_blocks(model, *batch)
    weights = [0, 2]  # the two weight matrices (HAWQ's per-layer blocks)
    traces = hessian_traces(model, [params[i] for i in weights], [batch], samples=2000,
                            generator=torch.Generator().manual_seed(0))
    for i, t in zip(weights, traces, strict=True):
        assert t == pytest.approx(float(blocks[i].trace()), rel=0.05)  # the mixed_precision benchmark's goal
    eig = top_eigenvalues(model, [params[i] for i in weights], [batch], iterations=200,
                          generator=torch.Generator().manual_seed(0))
    for i, e in zip(weights, eig, strict=True):
        assert e == pytest.approx(float(torch.linalg.eigvalsh(blocks[i]).max()), rel=0.02)
