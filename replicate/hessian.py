"""Curvature probes by Hessian-vector products (double backward), to be run off the hot path.

Definitions, with H the Hessian of the loss on a fixed probe batch, g that batch's gradient and
D = diag(1/(√v̂+ε)) Adam's diagonal preconditioner:

- λ_max(H): the largest *algebraic* eigenvalue of H (not the largest |λ|).
- Ĥ = D^½ H D^½, the preconditioned Hessian in symmetric form; it is similar to D·H, so
  λ_max(Ĥ) = λ_max(DH).
- λ_grad(Ĥ) = gᵀ Ĥ g / ‖g‖², the curvature of Ĥ along the gradient (one HVP).

Stability thresholds at learning rate η: gradient descent is stable while λ_max(H) < 2/η; Adam
with momentum β1 while (1-β1)/(1+β1)·λ_max(Ĥ) < 2/η, i.e. λ_max(Ĥ) < 38/η at β1 = 0.9 (Cohen et
al. 2022, arXiv 2207.14484). Bai et al. 2025 (arXiv 2506.04805) compare λ_max(Ĥ) and λ_grad(Ĥ)
with 2/η. ``thresholds(lr, b1)`` gives both numbers.

``curvature`` runs Lanczos with full reorthogonalisation (Krylov bookkeeping in float64) on one
loss graph built once per call under the MATH attention kernel (the fused CPU kernels have no
double backward). It never writes ``.grad``, never changes the parameters and restores the global
torch RNG state, so probing does not change training.
"""
from __future__ import annotations

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

__all__ = ["curvature", "thresholds"]


def thresholds(lr: float, b1: float) -> dict:
    """2/η (GD, and Bai et al.'s comparison) and 2(1+β1)/((1-β1)η) (Adam with momentum β1)."""
    return {"threshold_2_over_lr": 2 / lr, "threshold_momentum": 2 * (1 + b1) / ((1 - b1) * lr)}


def _flat(ts) -> torch.Tensor:
    return torch.cat([t.reshape(-1).to(torch.float64) for t in ts])


def _lanczos(op, n: int, iters: int, gen: torch.Generator) -> tuple[float, int]:
    """Largest Ritz value of the symmetric operator ``op`` on R^n, and the number of op calls."""
    m = max(1, min(iters, n))
    Q = torch.zeros(m, n, dtype=torch.float64)
    q = torch.randn(n, generator=gen, dtype=torch.float64)
    Q[0] = q / q.norm()
    alphas, betas = [], []
    for j in range(m):
        w = op(Q[j])
        alphas.append(float(w @ Q[j]))
        if j == m - 1:
            break
        for _ in range(2):  # full reorthogonalisation, twice is enough
            w = w - Q[: j + 1].T @ (Q[: j + 1] @ w)
        beta = float(w.norm())
        if beta <= 1e-6 * max(abs(x) for x in alphas + betas):  # Krylov space exhausted
            break
        betas.append(beta)
        Q[j + 1] = w / beta
    k = len(alphas)
    T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if k > 1:
        off = torch.tensor(betas[: k - 1], dtype=torch.float64)
        T += torch.diag(off, 1) + torch.diag(off, -1)
    return float(torch.linalg.eigvalsh(T)[-1]), k


def curvature(loss_fn, params: list[torch.Tensor], precond: list[torch.Tensor] | None = None,
              iters: int = 20, seed: int = 0) -> dict[str, float]:
    """λ_max(H), and with ``precond`` = D also λ_max(D^½HD^½) and λ_grad; plus ``hvp_count``.

    ``loss_fn()`` returns the scalar loss on a fixed probe batch; ``params`` are the tensors to
    differentiate by; ``precond`` is a list of tensors shaped like them (D, positive)."""
    params = list(params)
    shapes, sizes = [p.shape for p in params], [p.numel() for p in params]
    n = sum(sizes)
    with torch.random.fork_rng(devices=[]), sdpa_kernel(SDPBackend.MATH):
        loss = loss_fn()
        grads = torch.autograd.grad(loss, params, create_graph=True, materialize_grads=True)
    live = [i for i, g in enumerate(grads) if g.requires_grad]  # the others have zero HVP rows
    count = 0

    def hvp(v: torch.Tensor) -> torch.Tensor:  # flat float64 in and out
        nonlocal count
        count += 1
        vs = [c.view(s).to(p.dtype) for c, s, p in zip(v.split(sizes), shapes, params)]
        out = [torch.zeros_like(p) for p in params]
        if live:
            hv = torch.autograd.grad([grads[i] for i in live], params, [vs[i] for i in live],
                                     retain_graph=True, materialize_grads=True)
            out = list(hv)
        return _flat(out)

    gen = torch.Generator().manual_seed(seed)
    res = {}
    res["lambda_max_H"], _ = _lanczos(hvp, n, iters, gen)
    if precond is not None:
        sqrt_d = _flat(precond).sqrt()
        res["lambda_max_Hhat"], _ = _lanczos(lambda v: sqrt_d * hvp(sqrt_d * v), n, iters, gen)
        g = _flat([g.detach() for g in grads])
        u = sqrt_d * g
        gg = float(g @ g)
        res["lambda_grad_Hhat"] = float(u @ hvp(u)) / gg if gg > 0 else float("nan")
    res["hvp_count"] = count
    return res
