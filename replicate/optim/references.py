"""Reference implementations of the variants: TEST ORACLES, not for training.

Each variant's row (``variants.ROWS``) points at one of these: a factory ``(params, hp) ->
torch.optim.Optimizer`` taking our hyperparameter names (``b1``, ``b2`` become torch's ``betas``)
and a draw ``(random.Random) -> hp`` of the hyperparameters the reference test checks it at.
The factories are torch.optim where it computes the paper's update, pytorch-optimizer where its
code was checked against the paper (a test-only dependency, imported when a factory is called:
``ReferenceUnavailable`` if it is absent), else a plain per-tensor float64 transcription of the
paper's (or the authors' code's) equations, written out below.
"""
from __future__ import annotations

import math
import random

import torch


class ReferenceUnavailable(ImportError):
    """The reference needs a test-only package that is not installed (tests skip on it)."""


def _po(cls_name: str):
    """A pytorch-optimizer class, imported now (test-only dependency)."""
    try:
        import pytorch_optimizer
    except ImportError as e:
        raise ReferenceUnavailable("pytorch-optimizer (test-only: pip install pytorch-optimizer) "
                                   "is not installed") from e
    return getattr(pytorch_optimizer, cls_name)


def _betas(hp: dict) -> dict:
    """Our b1, b2 as torch's betas=(b1, b2) (unchanged where hp has neither)."""
    hp = dict(hp)
    if "b1" in hp or "b2" in hp:
        hp["betas"] = (hp.pop("b1"), hp.pop("b2"))
    return hp


# --- plain transcriptions: a per-tensor for-loop optimizer over a rule(p, g, state, t, **hp) -----

class Plain(torch.optim.Optimizer):
    """Calls ``rule(p, g, state, t, **hp)`` for every param, t the 1-based step."""

    def __init__(self, params, rule, **hp):
        super().__init__(params, {})
        self.rule, self.hp, self.t = rule, hp, 0

    @torch.no_grad()
    def step(self, closure=None):
        self.t += 1
        for group in self.param_groups:
            for p in group["params"]:
                self.rule(p, p.grad.clone(), self.state[p], self.t, **self.hp)


def _moments(g, st, t, b1, b2):
    m = st["m"] = b1 * st.get("m", torch.zeros_like(g)) + (1 - b1) * g
    v = st["v"] = b2 * st.get("v", torch.zeros_like(g)) + (1 - b2) * g * g
    return m / (1 - b1 ** t), v / (1 - b2 ** t)


def eps_inside_rule(p, g, st, t, lr, b1, b2, eps, weight_decay):
    """θ ← θ - η(m̂/√(v̂ + ε) + λθ)."""
    mh, vh = _moments(g, st, t, b1, b2)
    p -= lr * (mh / torch.sqrt(vh + eps) + weight_decay * p)


def atan2_rule(p, g, st, t, lr, b1, b2, a, b, weight_decay):
    """Everett et al. 2024: θ ← θ - η(a·atan2(m̂, b√v̂) + λθ)."""
    mh, vh = _moments(g, st, t, b1, b2)
    p -= lr * (a * torch.atan2(mh, b * torch.sqrt(vh)) + weight_decay * p)


def adafactor_rule(p, g, st, t, lr, beta2_decay, eps1, d, weight_decay):
    """Shazeer & Stern 2018, Algorithms 4/5 with β1 = 0 and the absolute step α_t = η; row/column
    SUMS as in the paper: V̂ = R·C / (1ᵀR)."""
    w = t ** beta2_decay
    g2 = g * g + eps1
    if g.dim() >= 2:
        st["R"] = (1 - w) * st.get("R", 0.0) + w * g2.sum(dim=1)
        st["C"] = (1 - w) * st.get("C", 0.0) + w * g2.sum(dim=0)
        vhat = torch.outer(st["R"], st["C"]) / st["R"].sum()
    else:
        vhat = st["V"] = (1 - w) * st.get("V", 0.0) + w * g2
    u = g / torch.sqrt(vhat)
    u = u / max(1.0, float(torch.sqrt((u * u).mean())) / d)
    p -= lr * (u + weight_decay * p)


class SpamCode(torch.optim.Optimizer):
    """The SPAM authors' step (github.com/TianjinYellow/SPAM-Optimizer, density 1), transcribed:
    their bookkeeping (total_step, current_step, closed-form CosineAnnealingLR from 0.99 to 0 over
    N + 1) and their order (decay after the step, by lr·λ on the updated θ)."""

    def __init__(self, params, lr, b1, b2, eps, theta, reset_every, warmup, clip_delay, weight_decay):
        super().__init__(params, {})
        self.hp = dict(lr=lr, b1=b1, b2=b2, eps=eps, theta=theta, R=reset_every, N=warmup,
                       D=clip_delay, wd=weight_decay)
        self.total, self.current = 0, warmup + 1

    @torch.no_grad()
    def step(self, closure=None):
        h = self.hp
        death = 0.0 if self.current >= h["N"] else \
            0.99 * (1 + math.cos(math.pi * self.current / (h["N"] + 1))) / 2
        scale = 1 - death
        t = self.total + 1
        for group in self.param_groups:
            for p in group["params"]:
                g, st = p.grad.clone(), self.state[p]
                if "m" not in st or t % h["R"] == 0:
                    st["m"], st["v"] = torch.zeros_like(p), torch.zeros_like(p)
                if h["theta"] != 0 and t >= h["D"] and t % h["R"] >= h["D"]:
                    spike = g * g > h["theta"] * st["v"]
                    g[spike] = g[spike].sign() * torch.sqrt(st["v"][spike] * h["theta"])
                st["m"].mul_(h["b1"]).add_(g, alpha=1 - h["b1"])
                st["v"].mul_(h["b2"]).addcmul_(g, g, value=1 - h["b2"])
                step = h["lr"] * math.sqrt(1 - h["b2"] ** t) / (1 - h["b1"] ** t)
                p.add_(st["m"] / (st["v"].sqrt() + h["eps"]), alpha=-step * scale)
                p.add_(p, alpha=-h["lr"] * h["wd"])
        self.total += 1
        self.current += 1
        if (self.total + 1) % h["R"] == 0:
            self.current = 0


# --- factories (params, hp) -> torch.optim.Optimizer, one per reference --------------------------

def torch_adam(ps, hp):
    return torch.optim.Adam(ps, foreach=False, **_betas(hp))


def torch_adamw(ps, hp):
    return torch.optim.AdamW(ps, foreach=False, **_betas(hp))


def torch_sgd(ps, hp):
    return torch.optim.SGD(ps, foreach=False, **hp)


def eps_inside(ps, hp):
    return Plain(ps, eps_inside_rule, **hp)


def adam_eps0(ps, hp):
    return torch.optim.AdamW(ps, eps=0.0, foreach=False, **_betas(hp))


def adam_atan2(ps, hp):
    return Plain(ps, atan2_rule, **hp)


def adabelief(ps, hp):
    return _po("AdaBelief")(ps, rectify=False, weight_decouple=True, fixed_decay=False,
                            foreach=False, **_betas(hp))


def radam(ps, hp):
    return torch.optim.RAdam(ps, foreach=False, **_betas(hp))


def lion(ps, hp):
    return _po("Lion")(ps, weight_decouple=True, foreach=False, **_betas(hp))


def adafactor(ps, hp):
    return torch.optim.Adafactor(ps, foreach=False, eps=(None, hp.pop("eps2")), **hp)


def adafactor_absolute(ps, hp):
    return Plain(ps, adafactor_rule, **{k: v for k, v in hp.items() if k not in ("eps2", "relative_step")})


def stable_adamw(ps, hp):
    return _po("StableAdamW")(ps, weight_decouple=True, kahan_sum=False, foreach=False, **_betas(hp))


def spam(ps, hp):
    return SpamCode(ps, **hp)


def spam_pytorch_optimizer(ps, hp):
    return _po("SPAM")(ps, lr=hp["lr"], betas=(hp["b1"], hp["b2"]), eps=hp["eps"],
                       threshold=hp["theta"], update_proj_gap=hp["reset_every"], warmup_epoch=0,
                       grad_accu_steps=hp["clip_delay"], weight_decay=hp["weight_decay"],
                       density=1.0, foreach=False)


# --- random hyperparameters for the reference tests: draw(r) -> hp ------------------------------
# tests/test_optim.py draws the torch-exact rows with random.Random(seed), tests/test_variants.py
# the others with random.Random(f"{name}-{seed}").

def draw_torch_adam(r: random.Random) -> dict:
    """Adam / AdamW against torch.optim (tests/test_optim.py)."""
    lr = 10 ** r.uniform(-4, -2)
    wd = r.choice([0.0, 10 ** r.uniform(-3, -1)])
    b1, b2, eps = r.uniform(0.0, 0.99), 1 - 10 ** r.uniform(-4, -1), 10 ** r.uniform(-10, -6)
    return dict(lr=lr, b1=b1, b2=b2, eps=eps, weight_decay=wd)


def draw_torch_sgd(r: random.Random) -> dict:
    """SGD against torch.optim (tests/test_optim.py)."""
    lr = 10 ** r.uniform(-4, -2)
    wd = r.choice([0.0, 10 ** r.uniform(-3, -1)])
    nesterov = r.random() < 0.5
    return dict(lr=lr * 10, momentum=r.uniform(0.5, 0.99), nesterov=nesterov,
                dampening=0.0 if nesterov else r.choice([0.0, r.uniform(0, 0.5)]), weight_decay=wd)


def _common(r: random.Random):
    """lr, weight decay, β1, β2: drawn first by every draw below (so each keeps its numbers)."""
    lr = 10 ** r.uniform(-3.5, -2)
    wd = r.choice([0.0, 10 ** r.uniform(-3, -1)])
    b1, b2 = r.uniform(0.0, 0.95), 1 - 10 ** r.uniform(-3, -1)
    return lr, wd, b1, b2


def draw_adam_like(r: random.Random) -> dict:
    lr, wd, b1, b2 = _common(r)
    return dict(lr=lr, b1=b1, b2=b2, eps=10 ** r.uniform(-10, -6), weight_decay=wd)


def draw_no_eps(r: random.Random) -> dict:
    lr, wd, b1, b2 = _common(r)
    return dict(lr=lr, b1=b1, b2=b2, weight_decay=wd)


def draw_atan2(r: random.Random) -> dict:
    lr, wd, b1, b2 = _common(r)
    return dict(lr=lr, b1=b1, b2=b2, a=r.uniform(0.5, 2.0), b=r.uniform(0.5, 2.0), weight_decay=wd)


def draw_radam(r: random.Random) -> dict:
    lr, wd, b1, b2 = _common(r)
    return dict(lr=lr, b1=b1, b2=b2, eps=10 ** r.uniform(-10, -6), weight_decay=wd,
                decoupled_weight_decay=r.random() < 0.5)


def draw_lion(r: random.Random) -> dict:
    lr, wd, b1, b2 = _common(r)
    return dict(lr=lr / 10, b1=b1, b2=b2, weight_decay=wd)


def draw_adafactor(r: random.Random) -> dict:
    _, wd, _, _ = _common(r)
    return dict(lr=10 ** r.uniform(-3, -1), beta2_decay=r.uniform(-1.0, -0.5),
                eps2=10 ** r.uniform(-4, -2), d=r.uniform(0.3, 2.0), weight_decay=wd)


def draw_spam(r: random.Random) -> dict:
    """Small θ so that clipping fires; a short reset period within the test's 50 steps."""
    lr, wd, b1, b2 = _common(r)
    return dict(lr=lr, b1=b1, b2=b2, eps=10 ** r.uniform(-8, -5), theta=r.uniform(1.2, 3.0),
                reset_every=r.randint(12, 20), warmup=r.randint(2, 8), clip_delay=r.randint(2, 6),
                weight_decay=wd)


def adafactor_absolute_hparams(hp: dict) -> dict:
    """The absolute-step check: relative_step off, the paper's ε1, no ε2, a 10× smaller lr."""
    hp = {k: v for k, v in (hp | dict(relative_step=False, eps1=1e-30)).items() if k != "eps2"}
    hp["lr"] /= 10
    return hp
