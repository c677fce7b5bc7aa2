"""Learning-rate schedules: pure torch functions of the 1-based step count TENSOR t, returning a
multiplier on lr (so a compiled step never recompiles as t advances)."""
from __future__ import annotations

import math
from typing import Callable

import torch

Schedule = Callable[[torch.Tensor], torch.Tensor]


def constant() -> Schedule:
    """s(t) = 1."""
    return lambda t: torch.ones_like(t)


def warmup(warmup_steps: int) -> Schedule:
    """Linear ramp s(t) = t/W for t < W, then 1."""
    _check(warmup_steps=warmup_steps)
    w = max(warmup_steps, 1)
    return lambda t: torch.clamp(t / w, max=1.0)


def _decay(total_steps, warmup_steps, final_frac, shape) -> Schedule:
    _check(total_steps=total_steps, warmup_steps=warmup_steps, final_frac=final_frac)
    w, span = warmup_steps, total_steps - warmup_steps

    def schedule(t):
        p = torch.clamp((t - w) / span, 0.0, 1.0)
        return torch.where(t < w, t / max(w, 1), shape(p))

    return schedule


def cosine(total_steps: int, warmup_steps: int = 0, final_frac: float = 0.1) -> Schedule:
    """Linear warmup over W steps, then f + (1-f)·(1 + cos(π·p))/2 with p = (t-W)/(T-W) ∈ [0, 1]."""
    return _decay(total_steps, warmup_steps, final_frac,
                  lambda p: final_frac + (1 - final_frac) * 0.5 * (1 + torch.cos(math.pi * p)))


def linear(total_steps: int, warmup_steps: int = 0, final_frac: float = 0.0) -> Schedule:
    """Linear warmup over W steps, then linear decay 1 - (1-f)·p to f at t = T (BERT)."""
    return _decay(total_steps, warmup_steps, final_frac, lambda p: 1 - (1 - final_frac) * p)


def interpolate(start: float, end: float, steps: int, shape: str = "linear") -> Schedule:
    """A hyperparameter that moves from ``start`` to ``end`` (for β1/β2 schedules):
    x(t) = start + (end - start)·s(p), p = min((t-1)/(steps-1), 1), with s(p) = p (linear) or
    (1 - cos πp)/2 (cosine): x(1) = start, x(t) = end for t ≥ steps. Returns a tensor of t's dtype."""
    if shape not in ("linear", "cosine"):
        raise ValueError(f"shape={shape!r} is not allowed: linear or cosine")
    if steps < 1:
        raise ValueError(f"steps={steps} must be >= 1")
    span = max(steps - 1, 1)

    def schedule(t):
        p = torch.clamp((t - 1) / span, 0.0, 1.0)
        s = p if shape == "linear" else 0.5 * (1 - torch.cos(math.pi * p))
        return start + (end - start) * s

    return schedule


SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "constant": constant, "warmup": warmup, "cosine": cosine, "linear": linear}


def make_schedule(name: str, **kw) -> Schedule:
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; allowed: {', '.join(SCHEDULES)}")
    return SCHEDULES[name](**kw)


def _check(total_steps=None, warmup_steps=0, final_frac=0.0):
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps={warmup_steps} must be >= 0")
    if total_steps is not None and total_steps <= warmup_steps:
        raise ValueError(f"total_steps={total_steps} must be > warmup_steps={warmup_steps}")
    if not 0.0 <= final_frac <= 1.0:
        raise ValueError(f"final_frac={final_frac} must be in [0, 1]")
