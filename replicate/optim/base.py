"""Core types: a Transform is an optax-style (init, update) pair over lists of tensors.

Conventions:
- ``init(params) -> state``: a dict whose values are lists of tensors (one per param) or 0-dim
  tensors (shared by all params, e.g. ``count``); a chain's state is a tuple of sub-states.
- ``update(updates, state, params) -> (new_updates, state)``: state tensors are mutated IN PLACE
  and the same state object is returned, so a sub-list of the same tensor objects (see
  ``select``) may be passed, and compiled graphs keep valid references.
- A transform never mutates its input ``updates`` (the first input is the gradients);
  it may return its own state tensors, so later transforms must not mutate theirs either.
- Applying: ``params += updates`` (``scale_by_lr`` puts in the minus sign).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch


class Transform(NamedTuple):
    init: Callable[[list[torch.Tensor]], Any]
    update: Callable[..., tuple[list[torch.Tensor], Any]]


def chain(*transforms: Transform) -> Transform:
    """Compose transforms left to right; the state is the tuple of their states."""

    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(updates, state, params=None):
        for t, s in zip(transforms, state):
            updates, _ = t.update(updates, s, params)
        return updates, state

    return Transform(init, update)


class HyperparameterError(ValueError):
    """A bad optimizer hyperparameter; ``.key`` names it."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


_UNIT = (lambda x: 0.0 <= x < 1.0, "in [0, 1)")
_NONNEG = (lambda x: x >= 0.0, ">= 0")
# Range checks by hyperparameter name, shared by all variants: key -> (predicate, allowed).
CHECKS: dict[str, tuple[Callable[[float], bool], str]] = {
    "lr": (lambda x: x > 0.0, "> 0"),
    "b1": _UNIT,
    "b2": _UNIT,
    "eps": _NONNEG,
    "weight_decay": _NONNEG,
    "momentum": _UNIT,
    "dampening": (lambda x: 0.0 <= x <= 1.0, "in [0, 1]"),
    "a": (lambda x: x > 0.0, "> 0"),
    "b": (lambda x: x > 0.0, "> 0"),
    "theta": _NONNEG,
    "reset_every": (lambda x: x >= 1 and x == int(x), "an integer >= 1"),
    "warmup": (lambda x: x >= 0 and x == int(x), "an integer >= 0"),
    "clip_delay": (lambda x: x >= 0 and x == int(x), "an integer >= 0"),
    "beta2_decay": (lambda x: x <= 0.0, "<= 0"),
    "eps1": _NONNEG,
    "eps2": _NONNEG,
    "d": (lambda x: x > 0.0, "> 0"),
}


def check_hparams(hparams: dict) -> None:
    for key, value in hparams.items():
        if key not in CHECKS:
            continue
        ok, allowed = CHECKS[key]
        try:
            good = ok(float(value))
        except (TypeError, ValueError, OverflowError):
            good = False
        if not good:
            raise HyperparameterError(key, f"{key}={value!r} is not allowed: {key} must be {allowed}")


def wide(dtype: torch.dtype) -> torch.dtype:
    """Dtype for scalars (lr, bias corrections): float64 for float64 params, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def zeros(params: list[torch.Tensor]) -> torch.Tensor:
    """A 0-dim float32 counter on the params' device."""
    return torch.zeros((), dtype=torch.float32, device=params[0].device if params else None)


# --- small helpers over state trees (tuples / dicts / lists of tensors / tensors) -----------------

def tree_map(fn: Callable[[torch.Tensor], Any], tree):
    if isinstance(tree, torch.Tensor):
        return fn(tree)
    if isinstance(tree, dict):
        return {k: tree_map(fn, v) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(tree_map(fn, v) for v in tree)
    return tree


def state_dicts(state):
    """Yield every dict in a (nested tuple) state, in chain order."""
    if isinstance(state, dict):
        yield state
    elif isinstance(state, tuple):
        for s in state:
            yield from state_dicts(s)


def select(state, idx: list[int]):
    """The state restricted to params ``idx``: same tensor objects, so updates land in place."""
    if isinstance(state, tuple):
        return tuple(select(s, idx) for s in state)
    return {k: [v[i] for i in idx] if isinstance(v, list) else v for k, v in state.items()}


def copy_into(dst, src, path: str = "state") -> None:
    """Copy a saved state tree into the existing tensors in place (structure must match; None
    marks a state entry a param does not have, e.g. Adafactor's v for a factored matrix)."""
    if dst is None:
        if src is not None:
            raise ValueError(f"{path}: saved state does not match (tensor where None expected)")
    elif isinstance(dst, torch.Tensor):
        if not isinstance(src, torch.Tensor) or src.shape != dst.shape:
            raise ValueError(f"{path}: saved state does not match (shape or type)")
        dst.copy_(src)
    elif isinstance(dst, dict):
        if not isinstance(src, dict) or set(src) != set(dst):
            raise ValueError(f"{path}: saved keys {sorted(src)} != {sorted(dst)}")
        for k in dst:
            copy_into(dst[k], src[k], f"{path}.{k}")
    elif isinstance(dst, (tuple, list)):
        if not isinstance(src, (tuple, list)) or len(src) != len(dst):
            raise ValueError(f"{path}: saved state has a different length")
        for i, (d, s) in enumerate(zip(dst, src)):
            copy_into(d, s, f"{path}[{i}]")
