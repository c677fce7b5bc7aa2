"""Curvature probes (replicate.hessian) against dense Hessians and quadratics with known answers."""
from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from replicate.hessian import curvature, thresholds
from replicate.models import MLP, build_model


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small problems: threads only add overhead, and thrash when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def close(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * abs(b)


class _LossOf(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.m = model

    def forward(self, batch):
        return self.m.loss(batch)


def dense(model, batch):
    """Dense Hessian and gradient of model.loss(batch) by the flattened parameter vector (float64)."""
    names, ps = zip(*model.named_parameters())
    wrap = _LossOf(model)

    def f(flat):
        chunks = flat.split([p.numel() for p in ps])
        return torch.func.functional_call(
            wrap, {f"m.{k}": c.view(p.shape) for k, c, p in zip(names, chunks, ps)}, (batch,))

    flat0 = torch.cat([p.detach().reshape(-1) for p in ps])
    with sdpa_kernel(SDPBackend.MATH):
        H = torch.func.jacrev(torch.func.grad(f))(flat0)
        g = torch.func.grad(f)(flat0)
    return H.double(), g.double()


def expected(H, g, d):
    """λ_max(H), λ_max(D^½HD^½), gᵀD^½HD^½g/‖g‖² by dense linear algebra."""
    s = d.sqrt()
    Hh = s[:, None] * H * s[None, :]
    u = s * g
    return (torch.linalg.eigvalsh(H)[-1].item(), torch.linalg.eigvalsh(Hh)[-1].item(),
            (u @ H @ u / (g @ g)).item())


def check(model, batch, iters, rel, seed=0):
    params = list(model.parameters())
    gen = torch.Generator().manual_seed(seed + 1)
    D = [torch.rand(p.shape, generator=gen, dtype=p.dtype) * 10 + 0.1 for p in params]
    out = curvature(lambda: model.loss(batch), params, D, iters=iters)
    H, g = dense(model, batch)
    want = expected(H, g, torch.cat([d.reshape(-1) for d in D]).double())
    got = (out["lambda_max_H"], out["lambda_max_Hhat"], out["lambda_grad_Hhat"])
    assert all(close(a, b, rel) for a, b in zip(got, want)), (got, want)
    return out, H


def test_mlp_matches_dense_hessian():
    torch.manual_seed(0)
    model = MLP(in_dim=2, hidden=[6], out_dim=1, activation="tanh").double()
    batch = (torch.randn(16, 2, dtype=torch.float64), torch.randn(16, 1, dtype=torch.float64))
    out, H = check(model, batch, iters=20, rel=1e-3)
    assert H.shape == (25, 25) and out["hvp_count"] == 20 + 20 + 1


class Quad(torch.nn.Module):
    """f(x) = ½ xᵀAx + bᵀx on a vector parameter."""

    def __init__(self, A, b):
        super().__init__()
        self.A, self.b = A, b
        self.x = torch.nn.Parameter(torch.randn(A.shape[0], dtype=A.dtype))

    def loss(self, batch=None):
        return 0.5 * self.x @ self.A @ self.x + self.b @ self.x


def test_algebraic_max_with_large_negative_eigenvalues():
    torch.manual_seed(1)
    Qm, _ = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64))
    ev = torch.tensor([-50.0, -20.0, -3.0, -1.0, 0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    model = Quad(Qm @ torch.diag(ev) @ Qm.T, torch.randn(8, dtype=torch.float64))
    out, _ = check(model, None, iters=20, rel=1e-6)
    assert close(out["lambda_max_H"], 4.0, 1e-6)
    assert out["hvp_count"] <= 8 + 8 + 1  # stops when the Krylov space is exhausted


def test_diagonal_quadratic_known_answers():
    torch.manual_seed(2)
    h = torch.tensor([0.3, 5.0, 1.0, 2.0, 0.01], dtype=torch.float64)
    d = torch.tensor([10.0, 0.5, 4.0, 1.0, 100.0], dtype=torch.float64)
    x = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    out = curvature(lambda: 0.5 * (h * x * x).sum(), [x], [d], iters=50)
    g = (h * x).detach()
    assert close(out["lambda_max_H"], 5.0, 1e-9)
    assert close(out["lambda_max_Hhat"], float((h * d).max()), 1e-9)
    assert close(out["lambda_grad_Hhat"], float((g * g * h * d).sum() / (g * g).sum()), 1e-9)
    assert out["hvp_count"] == 5 + 5 + 1  # iters > dim: capped at the dimension
    # without D only λ_max(H) comes back; a scalar parameter works (dim 1)
    y = torch.nn.Parameter(torch.tensor([2.0]))
    assert curvature(lambda: 1.5 * (y * y).sum(), [y]) == {"lambda_max_H": 3.0, "hvp_count": 1}


def test_tiny_gpt_matches_dense_hessian():
    torch.manual_seed(3)
    model = build_model({"name": "gpt", "vocab_size": 32, "context": 8, "depth": 1, "width": 8, "heads": 2})
    batch = torch.randint(0, 32, (4, 9))
    out, H = check(model, batch, iters=20, rel=1e-3)  # needs the MATH kernel: fused SDPA has no double backward
    assert H.shape == (1464, 1464) and out["hvp_count"] == 41


def test_probe_leaves_training_state_alone():
    torch.manual_seed(4)
    model = build_model({"name": "gpt", "vocab_size": 32, "context": 8, "depth": 1, "width": 16, "heads": 2})
    batch = torch.randint(0, 32, (4, 9))
    params = list(model.parameters())
    for p in params[::2]:
        p.grad = torch.randn_like(p)
    before = [(p.detach().clone(), None if p.grad is None else p.grad.clone()) for p in params]
    rng = torch.get_rng_state()
    D = [torch.full_like(p, 3.0) for p in params]
    out = curvature(lambda: model.loss(batch), params, D, iters=10, seed=5)
    assert all(torch.isfinite(torch.tensor(float(v))) for v in out.values())
    assert out["lambda_max_Hhat"] > 0 and out["hvp_count"] == 21
    assert torch.equal(torch.get_rng_state(), rng)
    for p, (w, gr) in zip(params, before):
        assert torch.equal(p, w)
        assert (p.grad is None and gr is None) or torch.equal(p.grad, gr)
    # same seed, same answer
    again = curvature(lambda: model.loss(batch), params, D, iters=10, seed=5)
    assert again == out


def test_thresholds():
    t = thresholds(0.01, 0.9)
    assert close(t["threshold_2_over_lr"], 200.0, 1e-12) and close(t["threshold_momentum"], 3800.0, 1e-12)
