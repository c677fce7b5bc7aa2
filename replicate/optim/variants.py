"""Optimizer variants: ``(lr: Tensor, schedule, **hparams) -> Transform``.

A variant's keyword defaults define its allowed hyperparameters (papers' symbols). Adding one =
one function here (decorated with ``@register``) + one ``conf/optimizer/<name>.yaml`` + one row
in the test tables (tests/test_optim.py, tests/test_variants.py).

State keys read by the probes through ``TransformOptimizer.param_state(p)``: ``m`` (first moment),
``v`` (second moment, bias-uncorrected) and the 0-dim ``count``.  Variants without a first moment
have no ``m`` (sgd keeps ``momentum_buffer``; adafactor has none); variants without a
per-coordinate second moment have no ``v`` (sgd, lion, and adafactor's factored ≥2-D tensors,
which keep ``row``/``col`` instead).  adabelief's ``v`` is its belief s (EMA of (g-m)² + ε).
Unless stated, weight decay is decoupled as in AdamW: θ ← θ - η·s(t)·(u + λθ).
"""
from __future__ import annotations

import functools
import inspect
from typing import Callable, Optional, Sequence

import torch

from .base import CHECKS, HyperparameterError, Transform, chain
from .schedules import interpolate
from .transforms import (add_decayed_weights, scale_by_adam, scale_by_adam_atan2,
                         scale_by_adam_eps0, scale_by_adam_scheduled, scale_by_belief,
                         scale_by_factored_rms, scale_by_lion,
                         scale_by_lr, scale_by_param_scale, scale_by_radam, scale_by_spam,
                         scale_by_stable_adamw, trace)

VARIANTS: dict[str, Callable[..., Transform]] = {}


def register(fn):
    VARIANTS[fn.__name__] = fn
    return fn


def hparam_defaults(variant: Callable) -> dict:
    """The variant's hyperparameters and their defaults (its keyword-only arguments)."""
    return {n: p.default for n, p in inspect.signature(variant).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


@register
def adam(lr, schedule=None, *, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0) -> Transform:
    """Adam (Kingma & Ba 2015, arXiv 1412.6980), as torch.optim.Adam:
    g ← g + λθ (L2, only if λ > 0);  θ ← θ - η·s(t)·m̂/(√v̂ + ε)."""
    l2 = [add_decayed_weights(weight_decay)] if weight_decay else []
    return chain(*l2, scale_by_adam(b1, b2, eps), scale_by_lr(lr, schedule))


@register
def adamw(lr, schedule=None, *, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01) -> Transform:
    """AdamW (Loshchilov & Hutter 2019, arXiv 1711.05101), as torch.optim.AdamW:
    θ ← θ - η·s(t)·(m̂/(√v̂ + ε) + λθ)  (decoupled weight decay)."""
    return chain(scale_by_adam(b1, b2, eps), add_decayed_weights(weight_decay),
                 scale_by_lr(lr, schedule))


@register
def sgd(lr, schedule=None, *, momentum=0.0, dampening=0.0, nesterov=False,
        weight_decay=0.0) -> Transform:
    """SGD with momentum, as torch.optim.SGD: g ← g + λθ;  b ← μ·b + (1-τ)·g (b₁ = g);
    θ ← θ - η·s(t)·(g + μ·b if nesterov else b)."""
    if nesterov and (momentum <= 0 or dampening != 0):
        raise HyperparameterError("nesterov", "nesterov=True requires momentum > 0 and dampening = 0")
    parts = [add_decayed_weights(weight_decay)] if weight_decay else []
    if momentum:
        parts.append(trace(momentum, dampening, nesterov))
    return chain(*parts, scale_by_lr(lr, schedule))


def _decoupled(pre: Transform, weight_decay: float, lr, schedule) -> Transform:
    """θ ← θ - η·s(t)·(u + λθ)."""
    wd = [add_decayed_weights(weight_decay)] if weight_decay else []
    return chain(pre, *wd, scale_by_lr(lr, schedule))


@register
def adam_eps_inside(lr, schedule=None, *, b1=0.9, b2=0.999, eps=1e-8,
                    weight_decay=0.0) -> Transform:
    """Adam with ε under the square root (Kingma & Ba 2015, arXiv 1412.6980, ε moved):
    θ ← θ - η·s(t)·(m̂/√(v̂ + ε) + λθ)."""
    return _decoupled(scale_by_adam(b1, b2, eps, eps_inside=True), weight_decay, lr, schedule)


@register
def adam_eps0(lr, schedule=None, *, b1=0.9, b2=0.999, weight_decay=0.0) -> Transform:
    """Adam with ε = 0 (arXiv 1412.6980): θ ← θ - η·s(t)·(m̂/√v̂ + λθ);
    the update is 0 where v̂ = 0."""
    return _decoupled(scale_by_adam_eps0(b1, b2), weight_decay, lr, schedule)


@register
def adam_atan2(lr, schedule=None, *, b1=0.9, b2=0.99, a=1.27, b=1.0,
               weight_decay=0.0) -> Transform:
    """Adam-atan2 (Everett et al. 2024, arXiv 2407.05872): θ ← θ - η·s(t)·(a·atan2(m̂, b·√v̂) + λθ);
    no ε.  a = 1.27 ≈ 4/π, b = 1 (the widely used adam-atan2-pytorch defaults): at |m̂| = √v̂ the
    step equals Adam's, and it is bounded by a·π/2."""
    return _decoupled(scale_by_adam_atan2(b1, b2, a, b), weight_decay, lr, schedule)


@register
def adabelief(lr, schedule=None, *, b1=0.9, b2=0.999, eps=1e-16, weight_decay=0.0) -> Transform:
    """AdaBelief (Zhuang et al. 2020, arXiv 2010.07468), ε as the official code:
    m ← β1·m + (1-β1)·g;  s ← β2·s + (1-β2)·(g - m)² + ε;
    θ ← θ - η·s(t)·(m̂/(√(s/(1-β2^t)) + ε) + λθ)
    (decoupled decay, the official code's weight_decouple)."""
    return _decoupled(scale_by_belief(b1, b2, eps), weight_decay, lr, schedule)


@register
def radam(lr, schedule=None, *, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0,
          decoupled_weight_decay=False) -> Transform:
    """RAdam (Liu et al. 2020, arXiv 1908.03265), as torch.optim.RAdam (threshold ρt > 5, ε added
    to the uncorrected √v):  g ← g + λθ (L2; decoupled_weight_decay: θ ← θ - η·s(t)·λθ);
    θ ← θ - η·s(t)·rt·m̂·√(1-β2^t)/(√v + ε) if ρt > 5, else θ ← θ - η·s(t)·m̂."""
    if decoupled_weight_decay:
        return _decoupled(scale_by_radam(b1, b2, eps), weight_decay, lr, schedule)
    l2 = [add_decayed_weights(weight_decay)] if weight_decay else []
    return chain(*l2, scale_by_radam(b1, b2, eps), scale_by_lr(lr, schedule))


@register
def lion(lr, schedule=None, *, b1=0.9, b2=0.99, weight_decay=0.0) -> Transform:
    """Lion (Chen et al. 2023, arXiv 2302.06675): c = β1·m + (1-β1)·g;
    θ ← θ - η·s(t)·(sign(c) + λθ);  m ← β2·m + (1-β2)·g.  State: m, count (no v)."""
    return _decoupled(scale_by_lion(b1, b2), weight_decay, lr, schedule)


@register
def adafactor(lr, schedule=None, *, beta2_decay=-0.8, eps1=1e-30, eps2=1e-3, d=1.0,
              relative_step=True, weight_decay=0.0) -> Transform:
    """Adafactor (Shazeer & Stern 2018, arXiv 1804.04235), β1 = 0: factored second moment over
    the last two dims of ≥2-D tensors, β̂2t = 1 - t^(-0.8), U = g/√V̂ clipped to RMS ≤ d;
    θ ← θ - α_t·U/max(1, RMS(U)/d) - η·s(t)·λθ, with α_t = max(ε2, RMS(θ))·min(η·s(t), 1/√t)
    (relative_step) or α_t = η·s(t).  As torch.optim.Adafactor (lr = the ρ cap, decay by η·λ)
    except ε1: the paper's g² + ε1 (ε1 = 1e-30) where torch clamps V̂ ≥ ε1² and mean(R) ≥ ε1
    (ε1 = machine epsilon) — the two differ only where g² ≲ 1e-30 (float64) / 1e-14 (float32).
    State: row/col (factored, no v) or v (vectors), count."""
    pre = [scale_by_factored_rms(beta2_decay, eps1, d)]
    if relative_step:
        pre.append(scale_by_param_scale(lr, schedule, eps2))
    wd = [add_decayed_weights(weight_decay)] if weight_decay else []
    return chain(*pre, *wd, scale_by_lr(lr, schedule))


@register
def stable_adamw(lr, schedule=None, *, b1=0.9, b2=0.99, eps=1e-6, weight_decay=0.01) -> Transform:
    """StableAdamW (Wortsman et al. 2023, arXiv 2304.13013, Algorithm 1): AdamW with Adafactor's
    update clipping as a per-tensor learning rate:  RMS_t = √mean(g²/max(v̂_t, ε²)) with v̂_t this
    step's (updated) bias-corrected second moment;  η_t = η·s(t)/max(1, RMS_t);
    θ ← θ - η_t·(m̂/(√v̂ + ε) + λθ)."""
    return chain(scale_by_stable_adamw(b1, b2, eps, weight_decay), scale_by_lr(lr, schedule))


@register
def spam(lr, schedule=None, *, b1=0.9, b2=0.999, eps=1e-6, theta=5000.0, reset_every=500,
         warmup=150, clip_delay=20, weight_decay=0.0) -> Transform:
    """SPAM (Huang et al. 2025, arXiv 2501.06842), as the authors' code: every ``reset_every``
    steps m, v ← 0; spike-aware clipping g ← sign(g)·√(θ·v) where g² > θ·v, with v before this
    step's update, from step ``clip_delay`` after each reset on (θ = 0: off); cosine warm-up of the
    step over ``warmup`` steps after each reset: c = 1 - 0.99·(1 + cos(πk/(N+1)))/2, k < N;
    θ ← θ - η·s(t)·(c·m̂·√(1-β2^t)/(√v + ε) + λθ)  (t, the bias-correction step, is never reset).
    Decay acts on θ_{t-1} as in AdamW; the authors' code decays the already-updated θ, which differs
    by η²λ·c·|u| per step (~1e-6 relative over 50 steps at η = 2e-3, λ = 4e-3)."""
    return _decoupled(scale_by_spam(b1, b2, eps, theta, int(reset_every), int(warmup),
                                    int(clip_delay)), weight_decay, lr, schedule)


# --- β schedules (a mitigation, not a registered variant) ---------------------------------------
BETA_SCHEDULABLE = ("adam", "adamw", "adam_eps_inside")


def with_beta_schedule(name: str, *, b1: Optional[Sequence[float]] = None,
                       b2: Optional[Sequence[float]] = None, steps: int,
                       shape: str = "linear") -> Callable[..., Transform]:
    """The variant ``name`` (adam, adamw or adam_eps_inside) with β1 and/or β2 moving from
    ``[start, end]`` over ``steps`` steps (``schedules.interpolate``; None: the constant group
    value), through ``scale_by_adam_scheduled`` (bias correction 1 - Π β_s). Same hyperparameters
    as the variant, so it drops into ``TransformOptimizer(params, variant, ...)``."""
    if name not in BETA_SCHEDULABLE:
        raise HyperparameterError("name", f"a beta schedule needs optimizer {', '.join(BETA_SCHEDULABLE)}, "
                                  f"not {name!r}")
    ends = {}
    for key, val in (("b1", b1), ("b2", b2)):
        if val is None:
            continue
        if len(val) != 2 or not all(CHECKS[key][0](float(x)) for x in val):
            raise HyperparameterError(key, f"{key}={list(val)!r} is not allowed: [start, end], "
                                      f"each {CHECKS[key][1]}")
        ends[key] = interpolate(float(val[0]), float(val[1]), int(steps), shape)
    base = VARIANTS[name]

    @functools.wraps(base)
    def variant(lr, schedule=None, **hp) -> Transform:
        b1_t = ends.get("b1", lambda t: torch.full_like(t, hp["b1"]))
        b2_t = ends.get("b2", lambda t: torch.full_like(t, hp["b2"]))
        pre = scale_by_adam_scheduled(lambda t: (b1_t(t), b2_t(t)), hp["eps"],
                                      eps_inside=name == "adam_eps_inside")
        if name == "adam":  # L2 before the preconditioner, as adam
            l2 = [add_decayed_weights(hp["weight_decay"])] if hp["weight_decay"] else []
            return chain(*l2, pre, scale_by_lr(lr, schedule))
        return _decoupled(pre, hp["weight_decay"], lr, schedule)

    variant.__name__ = f"{name}+beta_schedule"
    return variant
