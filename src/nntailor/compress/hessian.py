"""Second-order information of the loss: Hessian-vector products, the Hessian diagonal, and the Gauss-Newton
(Fisher) diagonal that Optimal Brain Damage uses.

Pure maths over a model, a loss and batches: OBD's saliency here, HAWQ's traces and eigenvalues later.
Hutchinson (1990): for Rademacher z (entries +-1), E[z * Hz] = diag(H) and E[z^T H z] = Tr(H); Hz is a
second backward pass through the gradient (Pearlmutter 1994), so H is never formed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn as nn

Loss = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(model(x), y)


def hvp(loss: torch.Tensor, params: Sequence[torch.Tensor], vectors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """H v; a parameter the loss does not use (an unused head) has a zero gradient and a zero Hessian block."""
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    dot = sum((g * v).sum() for g, v in zip(grads, vectors, strict=True) if g is not None)
    if not isinstance(dot, torch.Tensor) or not dot.requires_grad:
        return [torch.zeros_like(p) for p in params]
    hv = torch.autograd.grad(dot, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if h is None else h for p, h in zip(params, hv, strict=True)]


def hessian_diagonal(
    model: nn.Module,
    params: Sequence[torch.Tensor],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    samples: int = 16,
    exact: bool = False,
    loss_fn: Loss = cross_entropy,
    generator: torch.Generator | None = None,
) -> list[torch.Tensor]:
    """diag(H) of the mean loss over ``batches`` for each tensor in ``params``.

    Hutchinson with ``samples`` Rademacher vectors per batch, or, with ``exact``, one HVP per element (unit
    vectors): exact, and only sensible for small networks.
    """
    was_training = model.training
    model.eval()  # BN statistics and dropout fixed: the Hessian of the deployed function
    diag = [torch.zeros_like(p) for p in params]
    n_batches = 0
    for x, y in batches:
        n_batches += 1
        loss = loss_fn(model, x, y)
        if exact:
            for i, p in enumerate(params):
                for j in range(p.numel()):
                    e = [torch.zeros_like(q) for q in params]
                    e[i].view(-1)[j] = 1.0
                    diag[i].view(-1)[j] += hvp(loss, params, e)[i].view(-1)[j]
            continue
        for _ in range(samples):
            z = [torch.randint(0, 2, p.shape, generator=generator).to(p.dtype) * 2 - 1 for p in params]
            hz = hvp(loss, params, z)
            for d, zi, hzi in zip(diag, z, hz, strict=True):
                d += (zi * hzi).detach() / samples
    model.train(was_training)
    return [d / max(n_batches, 1) for d in diag]


def fisher_diagonal(
    model: nn.Module,
    params: Sequence[torch.Tensor],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    generator: torch.Generator | None = None,
) -> list[torch.Tensor]:
    """Gauss-Newton diagonal of the cross-entropy: for a softmax output it equals the Fisher, E[g * g] with
    per-sample gradients g of log p(y|x) at labels y drawn from the model's own prediction.

    It is never negative: LeCun et al. used this approximation in OBD, because away from an exact minimum
    the true Hessian diagonal can be negative and would rank large weights as the least salient.
    """
    from torch.func import functional_call, grad, vmap

    names = {id(p): n for n, p in model.named_parameters()}
    chosen = {names[id(p)]: p.detach() for p in params}
    was_training = model.training
    model.eval()

    def sample_loss(weights: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, weights, (x.unsqueeze(0),), strict=False)
        return nn.functional.cross_entropy(out, y.unsqueeze(0))

    per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))
    diag = {n: torch.zeros_like(p) for n, p in chosen.items()}
    count = 0
    for x, _ in batches:
        with torch.no_grad():
            probs = nn.functional.softmax(model(x), dim=-1)
        y = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        grads = per_sample(chosen, x, y)
        for n in diag:
            diag[n] += (grads[n] ** 2).sum(0)
        count += len(x)
    model.train(was_training)
    return [diag[names[id(p)]] / max(count, 1) for p in params]


Batch = tuple[torch.Tensor, torch.Tensor]


def _batches_loss(model: nn.Module, batches: Sequence[Batch], loss_fn: Loss) -> torch.Tensor:
    return sum(loss_fn(model, x, y) for x, y in batches) / len(batches)


def hessian_traces(
    model: nn.Module,
    params: Sequence[torch.Tensor],
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    samples: int = 64,
    loss_fn: Loss = cross_entropy,
    generator: torch.Generator | None = None,
) -> list[float]:
    """Tr(H_ll) of each parameter block (HAWQ-V2): Hutchinson with a Rademacher z on that block alone, so the
    variance is 2 sum_{i != j} (H_ll)_ij^2 / samples with no cross-block terms (one HVP per block per sample)."""
    was_training = model.training
    model.eval()
    loss = _batches_loss(model, batches, loss_fn)
    traces = [0.0] * len(params)
    for i, p in enumerate(params):
        for _ in range(samples):
            z = torch.randint(0, 2, p.shape, generator=generator).to(p.dtype) * 2 - 1
            vectors = [torch.zeros_like(q) for q in params]
            vectors[i] = z
            traces[i] += float((z * hvp(loss, params, vectors)[i]).sum()) / samples
    model.train(was_training)
    return traces


def top_eigenvalues(
    model: nn.Module,
    params: Sequence[torch.Tensor],
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    iterations: int = 50,
    tolerance: float = 1e-4,
    loss_fn: Loss = cross_entropy,
    generator: torch.Generator | None = None,
) -> list[float]:
    """The largest eigenvalue of each block H_ll (HAWQ), by power iteration on block Hessian-vector products."""
    was_training = model.training
    model.eval()
    loss = _batches_loss(model, batches, loss_fn)
    result = []
    for i, p in enumerate(params):
        v = torch.randn(p.shape, generator=generator)
        v /= v.norm()
        eigenvalue = 0.0
        for _ in range(iterations):
            vectors = [torch.zeros_like(q) for q in params]
            vectors[i] = v
            hv = hvp(loss, params, vectors)[i]
            new = float((v * hv).sum())
            v = hv / (hv.norm() + 1e-12)
            if abs(new - eigenvalue) <= tolerance * max(abs(new), 1e-12):
                eigenvalue = new
                break
            eigenvalue = new
        result.append(eigenvalue)
    model.train(was_training)
    return result


def activation_traces(
    model: nn.Module,
    modules: Sequence[nn.Module],
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    samples: int = 32,
    loss_fn: Loss = cross_entropy,
    generator: torch.Generator | None = None,
) -> tuple[list[list[float]], list[list[torch.Tensor]]]:
    """Tr(H) of each batch's loss w.r.t. the input activation of each module (HAWQ-V2's activation
    sensitivity), by Hutchinson on a zero perturbation added to that input; with the inputs themselves, so the
    caller can measure what quantizing them costs. Both are indexed [module][batch]. A module called several
    times (reused) gets the sum of its calls' traces and its inputs flattened and joined, as one quantizer sees
    them all."""
    was_training = model.training
    model.eval()
    traces: list[list[float]] = [[] for _ in modules]
    inputs: list[list[torch.Tensor]] = [[] for _ in modules]
    calls: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in modules]  # this batch: (delta, input)

    def perturb(index: int) -> Callable:
        def hook(_: nn.Module, args: tuple) -> tuple:
            delta = torch.zeros_like(args[0], requires_grad=True)
            calls[index].append((delta, args[0].detach()))
            return (args[0] + delta, *args[1:])
        return hook

    for x, y in batches:
        for c in calls:
            c.clear()
        handles = [m.register_forward_pre_hook(perturb(i)) for i, m in enumerate(modules)]
        try:
            loss = loss_fn(model, x, y)
        finally:
            for h in handles:
                h.remove()
        deltas = [d for c in calls for d, _ in c]
        grads = dict(zip(map(id, deltas), torch.autograd.grad(loss, deltas, create_graph=True, allow_unused=True),
                         strict=True))
        for i, module_calls in enumerate(calls):
            total = 0.0
            for d, _ in module_calls:
                g = grads[id(d)]
                for _ in range(samples):
                    z = torch.randint(0, 2, d.shape, generator=generator).to(d.dtype) * 2 - 1
                    hz = None
                    if g is not None and g.requires_grad:
                        (hz,) = torch.autograd.grad((g * z).sum(), d, retain_graph=True, allow_unused=True)
                    total += float((z * hz).sum()) / samples if hz is not None else 0.0  # None: linear in d
            traces[i].append(total)
            inputs[i].append(torch.cat([x_in.flatten() for _, x_in in module_calls]) if len(module_calls) > 1
                             else module_calls[0][1])
    model.train(was_training)
    return traces, inputs
