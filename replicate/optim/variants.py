"""Optimizer variants: ``(lr: Tensor, schedule, **hparams) -> Transform``.

A variant's keyword defaults define its allowed hyperparameters (papers' symbols). Adding one =
one function here (decorated with ``@register``) + one ``conf/optimizer/<name>.yaml`` + one row
in the test table.
"""
from __future__ import annotations

import inspect
from typing import Callable

from .base import HyperparameterError, Transform, chain
from .transforms import add_decayed_weights, scale_by_adam, scale_by_lr, trace

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
