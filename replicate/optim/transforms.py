"""Gradient transforms over lists of tensors, with torch ``_foreach_*`` ops (see base.py)."""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from .base import Transform, wide, zeros


def _log(b: float) -> float:
    return math.log(b) if b > 0 else -math.inf


def _adam_moments(updates, m, v, count, b1: float, b2: float, log_b1: float, log_b2: float):
    """count += 1;  m ← β1·m + (1-β1)·g;  v ← β2·v + (1-β2)·g².  Returns the bias corrections
    (1-β1^t, 1-β2^t) as 0-dim tensors: 1-β^t = -expm1(t·log β), accurate in float32, and a tensor
    function of the count, so a compiled step never recompiles."""
    count.add_(1)
    torch._foreach_lerp_(m, updates, 1 - b1)
    torch._foreach_mul_(v, b2)
    torch._foreach_addcmul_(v, updates, updates, value=1 - b2)
    t = count.to(wide(m[0].dtype))
    return -torch.expm1(t * log_b1), -torch.expm1(t * log_b2)


def _moment_state(params, *, m: bool = True, v: bool = True) -> dict:
    state = {}
    if m:
        state["m"] = [torch.zeros_like(p) for p in params]
    if v:
        state["v"] = [torch.zeros_like(p) for p in params]
    state["count"] = zeros(params)
    return state


def _precondition(m, v, bc1, bc2, eps: float, eps_inside: bool) -> list[torch.Tensor]:
    """u = m̂/(√v̂ + ε), or m̂/√(v̂ + ε) with ``eps_inside``; m̂ = m/bc1, v̂ = v/bc2."""
    if eps_inside:
        denom = torch._foreach_div(v, bc2)
        torch._foreach_add_(denom, eps)
        torch._foreach_sqrt_(denom)
    else:
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, bc2.sqrt())
        torch._foreach_add_(denom, eps)
    out = torch._foreach_div(m, denom)
    torch._foreach_div_(out, bc1)
    return out


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                  eps_inside: bool = False) -> Transform:
    """Adam's preconditioner (Kingma & Ba 2015, arXiv 1412.6980).

    m ← β1·m + (1-β1)·g;  v ← β2·v + (1-β2)·g²;  m̂ = m/(1-β1^t);  v̂ = v/(1-β2^t)
    u = m̂/(√v̂ + ε)   (eps_inside: u = m̂/√(v̂ + ε)).
    The bias corrections come from the count tensor (1-β^t = -expm1(t·log β), accurate in float32),
    so a compiled step never recompiles.
    """
    log_b1, log_b2 = _log(b1), _log(b2)

    def update(updates, state, params=None):
        m, v = state["m"], state["v"]
        bc1, bc2 = _adam_moments(updates, m, v, state["count"], b1, b2, log_b1, log_b2)
        return _precondition(m, v, bc1, bc2, eps, eps_inside), state

    return Transform(_moment_state, update)


def scale_by_adam_scheduled(betas: Callable, eps: float = 1e-8, eps_inside: bool = False) -> Transform:
    """Adam's preconditioner with β1, β2 that change over training: (β1_t, β2_t) = betas(t), t the
    1-based step count (a float64 0-dim tensor, so a compiled step never recompiles).

    m ← β1_t·m + (1-β1_t)·g;  v ← β2_t·v + (1-β2_t)·g²;  m̂ = m/(1-P1_t);  v̂ = v/(1-P2_t)
    with P_t = Π_{s≤t} β_s: the weights of an EMA with varying β sum to 1-P_t (= 1-β^t for a
    constant β, Adam's correction); u = m̂/(√v̂ + ε)  (eps_inside: m̂/√(v̂ + ε)).
    State: m, v, count, and the products ``p1``, ``p2`` (float64 0-dim)."""

    def init(params):
        state = _moment_state(params)
        dev = params[0].device if params else None
        state["p1"] = torch.ones((), dtype=torch.float64, device=dev)
        state["p2"] = torch.ones((), dtype=torch.float64, device=dev)
        return state

    def update(updates, state, params=None):
        m, v, count = state["m"], state["v"], state["count"]
        count.add_(1)
        dt = wide(m[0].dtype)
        b1, b2 = betas(count.to(torch.float64))
        state["p1"].mul_(b1)
        state["p2"].mul_(b2)
        bc1, bc2 = (1 - state["p1"]).to(dt), (1 - state["p2"]).to(dt)
        b1, b2 = b1.to(dt), b2.to(dt)
        torch._foreach_mul_(m, b1)
        torch._foreach_add_(m, torch._foreach_mul(updates, 1 - b1))
        g2 = torch._foreach_mul(updates, updates)
        torch._foreach_mul_(g2, 1 - b2)
        torch._foreach_mul_(v, b2)
        torch._foreach_add_(v, g2)
        return _precondition(m, v, bc1, bc2, eps, eps_inside), state

    return Transform(init, update)


def scale_by_adam_eps0(b1: float = 0.9, b2: float = 0.999) -> Transform:
    """Adam with ε = 0: u = m̂/√v̂ where v̂ > 0, and u = 0 where v̂ = 0 (no NaN)."""
    log_b1, log_b2 = _log(b1), _log(b2)

    def update(updates, state, params=None):
        m, v = state["m"], state["v"]
        bc1, bc2 = _adam_moments(updates, m, v, state["count"], b1, b2, log_b1, log_b2)
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, bc2.sqrt())
        out = torch._foreach_div(m, denom)
        torch._foreach_div_(out, bc1)
        return [torch.where(vi > 0, o, torch.zeros_like(o)) for vi, o in zip(v, out)], state

    return Transform(_moment_state, update)


def scale_by_adam_atan2(b1: float = 0.9, b2: float = 0.99, a: float = 1.27,
                        b: float = 1.0) -> Transform:
    """Adam-atan2 (Everett et al. 2024, arXiv 2407.05872): u = a·atan2(m̂, b·√v̂); no ε, so the
    update is invariant to the gradient's scale and bounded by a·π/2."""
    log_b1, log_b2 = _log(b1), _log(b2)

    def update(updates, state, params=None):
        m, v = state["m"], state["v"]
        bc1, bc2 = _adam_moments(updates, m, v, state["count"], b1, b2, log_b1, log_b2)
        den = torch._foreach_div(v, bc2)
        torch._foreach_sqrt_(den)
        torch._foreach_mul_(den, b)
        num = torch._foreach_div(m, bc1)
        out = [torch.atan2(n, d) for n, d in zip(num, den)]
        torch._foreach_mul_(out, a)
        return out, state

    return Transform(_moment_state, update)


def scale_by_belief(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-16) -> Transform:
    """AdaBelief's preconditioner (Zhuang et al. 2020, arXiv 2010.07468; official code's ε):
    m ← β1·m + (1-β1)·g;  s ← β2·s + (1-β2)·(g - m)² + ε;  u = m̂/(√ŝ + ε), ŝ = s/(1-β2^t).
    s is stored under the key ``v``."""
    log_b1, log_b2 = _log(b1), _log(b2)

    def update(updates, state, params=None):
        m, s, count = state["m"], state["v"], state["count"]
        count.add_(1)
        torch._foreach_lerp_(m, updates, 1 - b1)
        resid = torch._foreach_sub(updates, m)
        torch._foreach_mul_(s, b2)
        torch._foreach_addcmul_(s, resid, resid, value=1 - b2)
        torch._foreach_add_(s, eps)
        t = count.to(wide(m[0].dtype))
        bc1, bc2 = -torch.expm1(t * log_b1), -torch.expm1(t * log_b2)
        denom = torch._foreach_sqrt(s)
        torch._foreach_div_(denom, bc2.sqrt())
        torch._foreach_add_(denom, eps)
        out = torch._foreach_div(m, denom)
        torch._foreach_div_(out, bc1)
        return out, state

    return Transform(_moment_state, update)


def scale_by_radam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                   threshold: float = 5.0) -> Transform:
    """RAdam's rectified preconditioner (Liu et al. 2020, arXiv 1908.03265), as torch.optim.RAdam:
    ρ∞ = 2/(1-β2) - 1;  ρt = ρ∞ - 2t·β2^t/(1-β2^t);
    u = rt·m̂·√(1-β2^t)/(√v + ε) with rt = √((ρt-4)(ρt-2)ρ∞ / ((ρ∞-4)(ρ∞-2)ρt)) if ρt > 5,
    else u = m̂ (momentum SGD).  The branch is a torch.where on a 0-dim tensor."""
    log_b1, log_b2 = _log(b1), _log(b2)
    rho_inf = 2 / (1 - b2) - 1

    def update(updates, state, params=None):
        m, v, count = state["m"], state["v"], state["count"]
        bc1, bc2 = _adam_moments(updates, m, v, count, b1, b2, log_b1, log_b2)
        t = count.to(bc2.dtype)
        rho_t = rho_inf - 2 * t * torch.exp(t * log_b2) / bc2
        adaptive = rho_t > threshold
        rect = torch.sqrt(torch.clamp((rho_t - 4) * (rho_t - 2) * rho_inf
                                      / ((rho_inf - 4) * (rho_inf - 2) * rho_t), min=0.0))
        rect = torch.where(adaptive, rect, torch.zeros_like(rect))
        plain = 1 - adaptive.to(bc2.dtype)  # 1 where the step is momentum SGD
        denom = torch._foreach_sqrt(v)
        torch._foreach_add_(denom, eps)
        scale = torch._foreach_reciprocal(denom)
        torch._foreach_mul_(scale, rect * bc2.sqrt())
        # a list of the 0-dim tensor: _foreach_add_(list, tensor) makes dynamo read it with .item()
        # (a graph break that split the compiled step into 4 graphs)
        torch._foreach_add_(scale, [plain] * len(scale))
        out = torch._foreach_div(m, bc1)
        torch._foreach_mul_(out, scale)
        return out, state

    return Transform(_moment_state, update)


def scale_by_lion(b1: float = 0.9, b2: float = 0.99) -> Transform:
    """Lion (Chen et al. 2023, arXiv 2302.06675): u = sign(β1·m + (1-β1)·g);
    then m ← β2·m + (1-β2)·g.  No second moment (no ``v``)."""

    def update(updates, state, params=None):
        m = state["m"]
        state["count"].add_(1)
        out = torch._foreach_lerp(m, updates, 1 - b1)
        torch._foreach_sign_(out)
        torch._foreach_lerp_(m, updates, 1 - b2)
        return out, state

    return Transform(lambda params: _moment_state(params, v=False), update)


def scale_by_stable_adamw(b1: float = 0.9, b2: float = 0.99, eps: float = 1e-6,
                          weight_decay: float = 0.0) -> Transform:
    """StableAdamW (Wortsman et al. 2023, arXiv 2304.13013, Algorithm 1), per tensor:
    RMS_t = √mean(g²/max(v̂, ε²)) with v̂ this step's bias-corrected second moment (the paper's u_t,
    updated before RMS_t, as in the authors' code);  u = (m̂/(√v̂ + ε) + λθ) / max(1, RMS_t).
    (The paper's debiased β̂ = β(1-β^(t-1))/(1-β^t) make its moments equal m̂ and v̂ here.)"""
    log_b1, log_b2 = _log(b1), _log(b2)

    def update(updates, state, params):
        m, v = state["m"], state["v"]
        bc1, bc2 = _adam_moments(updates, m, v, state["count"], b1, b2, log_b1, log_b2)
        vhat = torch._foreach_div(v, bc2)
        denom = torch._foreach_sqrt(vhat)
        torch._foreach_add_(denom, eps)
        out = torch._foreach_div(m, denom)
        torch._foreach_div_(out, bc1)
        if weight_decay:
            torch._foreach_add_(out, params, alpha=weight_decay)
        sq = torch._foreach_mul(updates, updates)
        torch._foreach_div_(sq, torch._foreach_clamp_min(vhat, eps * eps))
        for o, s in zip(out, sq):  # per-tensor update clipping
            o.div_(torch.clamp(s.mean().sqrt(), min=1.0))
        return out, state

    return Transform(_moment_state, update)


def _spam_warmup(k: torch.Tensor, warmup: int) -> torch.Tensor:
    """SPAM's step scale k steps after a reset: 1 - 0.99·(1 + cos(πk/(N+1)))/2 for k < N, else 1."""
    ramp = 1 - 0.99 * 0.5 * (1 + torch.cos(math.pi * k / (warmup + 1)))
    return torch.where(k < warmup, ramp, torch.ones_like(ramp))


def scale_by_spam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6, theta: float = 5000.0,
                  reset_every: int = 500, warmup: int = 150, clip_delay: int = 20) -> Transform:
    """SPAM (Huang et al. 2025, arXiv 2501.06842), as the authors' code:
    at steps t ≡ 0 (mod ΔT): m, v ← 0 (the bias corrections keep the global t);
    spike clipping with v BEFORE this step's update, where t ≥ D and t mod ΔT ≥ D (D = clip_delay,
    so v has refilled after a reset): where g² > θ·v set g = sign(g)·√(θ·v)  (θ = 0: off);
    moments as Adam;  u = c(t)·m̂·√(1-β2^t)/(√v + ε)  (ε added to the uncorrected √v, as the code);
    c(t) = 1 - 0.99·(1 + cos(π·k/(N+1)))/2 for k = t mod ΔT < N after the first reset, else 1."""
    log_b1, log_b2 = _log(b1), _log(b2)

    def update(updates, state, params=None):
        m, v, count = state["m"], state["v"], state["count"]
        t = count.to(wide(m[0].dtype)) + 1
        k = torch.remainder(t, reset_every)
        keep = (k != 0).to(t.dtype)
        torch._foreach_mul_(m, keep)
        torch._foreach_mul_(v, keep)
        if theta:
            active = (t >= clip_delay) & (k >= clip_delay)
            limit = torch._foreach_mul(v, theta)
            updates = [torch.where(active & (g * g > lim), torch.sign(g) * lim.sqrt(), g)
                       for g, lim in zip(updates, limit)]
        bc1, bc2 = _adam_moments(updates, m, v, count, b1, b2, log_b1, log_b2)
        scale = torch.where(t >= reset_every, _spam_warmup(k, warmup), torch.ones_like(t))
        denom = torch._foreach_sqrt(v)
        torch._foreach_add_(denom, eps)
        out = torch._foreach_div(m, denom)
        torch._foreach_mul_(out, scale * bc2.sqrt() / bc1)
        return out, state

    return Transform(_moment_state, update)


def scale_by_factored_rms(beta2_decay: float = -0.8, eps1: float = 1e-30,
                          d: float = 1.0) -> Transform:
    """Adafactor's preconditioner with update clipping (Shazeer & Stern 2018, arXiv 1804.04235,
    Algorithms 4 and 5, β1 = 0):  β̂2t = 1 - t^c (c = beta2_decay = -0.8);
    tensors with ≥ 2 dims, over the last two:  R ← β̂2t·R + (1-β̂2t)·mean_cols(g² + ε1),
    C ← β̂2t·C + (1-β̂2t)·mean_rows(g² + ε1),  V̂ = R·C / mean(R);
    others: V̂ ← β̂2t·V̂ + (1-β̂2t)·(g² + ε1);
    U = g/√V̂;  u = U / max(1, RMS(U)/d).
    State: ``row``/``col`` for factored tensors (no ``v``), ``v`` for the others; None elsewhere."""

    def init(params):
        fac = [p.dim() >= 2 for p in params]
        return {"row": [p.new_zeros(p.shape[:-1] + (1,)) if f else None
                        for p, f in zip(params, fac)],
                "col": [p.new_zeros(p.shape[:-2] + (1, p.shape[-1])) if f else None
                        for p, f in zip(params, fac)],
                "v": [None if f else torch.zeros_like(p) for p, f in zip(params, fac)],
                "count": zeros(params)}

    def update(updates, state, params=None):
        count = state["count"]
        count.add_(1)
        out = []
        for g, row, col, v in zip(updates, state["row"], state["col"], state["v"]):
            w = count.to(wide(g.dtype)) ** beta2_decay  # 1 - β̂2t
            g2 = g * g + eps1
            if row is not None:
                row.lerp_(g2.mean(dim=-1, keepdim=True), w)
                col.lerp_(g2.mean(dim=-2, keepdim=True), w)
                vhat = (row @ col) / row.mean(dim=-2, keepdim=True)
            else:
                v.lerp_(g2, w)
                vhat = v
            u = g / vhat.sqrt()
            rms = u.square().mean().sqrt()
            out.append(u / torch.clamp(rms / d, min=1.0))
        return out, state

    return Transform(init, update)


def scale_by_param_scale(lr: torch.Tensor, schedule: Optional[Callable] = None,
                         eps2: float = 1e-3) -> Transform:
    """Adafactor's relative step size, to go before ``scale_by_lr(lr, schedule)``:
    u ← max(ε2, RMS(θ))·min(1, 1/(η·s(t)·√t))·u, so that the applied step is
    α_t = max(ε2, RMS(θ_{t-1}))·ρ_t with ρ_t = min(η·s(t), 1/√t) (torch.optim.Adafactor: s = 1)."""

    def update(updates, state, params):
        count = state["count"]
        count.add_(1)
        t = count.to(lr.dtype)
        eta = lr if schedule is None else lr * schedule(count)
        rho = torch.clamp(1 / (eta * t.sqrt()), max=1.0)
        return [u * (torch.clamp(p.square().mean().sqrt(), min=eps2) * rho)
                for u, p in zip(updates, params)], state

    return Transform(lambda params: {"count": zeros(params)}, update)


def add_decayed_weights(weight_decay: float) -> Transform:
    """u ← u + λ·θ. Before the preconditioner: L2 (coupled, torch.optim.Adam); after it:
    decoupled weight decay (Loshchilov & Hutter 2019, arXiv 1711.05101; torch.optim.AdamW)."""

    def update(updates, state, params):
        return torch._foreach_add(updates, params, alpha=weight_decay), state

    return Transform(lambda params: {}, update)


def scale_by_lr(lr: torch.Tensor, schedule: Optional[Callable] = None) -> Transform:
    """u ← -η·s(t)·u with η a 0-dim tensor (changed in place by the owner) and s a schedule of
    the 1-based step count t (its own count)."""

    def init(params):
        return {"count": zeros(params)}

    def update(updates, state, params=None):
        count = state["count"]
        count.add_(1)
        scale = lr if schedule is None else lr * schedule(count)
        return torch._foreach_mul(updates, -scale), state

    return Transform(init, update)


def trace(momentum: float, dampening: float = 0.0, nesterov: bool = False) -> Transform:
    """SGD momentum with torch.optim.SGD semantics (first step: b = g):
    b ← μ·b + (1-τ)·g;  u = g + μ·b (nesterov) or u = b."""

    def init(params):
        return {"momentum_buffer": [torch.zeros_like(p) for p in params], "count": zeros(params)}

    def update(updates, state, params=None):
        buf, count = state["momentum_buffer"], state["count"]
        count.add_(1)
        later = (count > 1).to(wide(buf[0].dtype))  # 0 on the first step, else 1
        torch._foreach_mul_(buf, later * momentum)
        torch._foreach_add_(buf, torch._foreach_mul(updates, 1 - later * dampening))
        if nesterov:
            return torch._foreach_add(updates, buf, alpha=momentum), state
        return list(buf), state

    return Transform(init, update)
