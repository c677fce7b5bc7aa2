"""Optimizer variants, one row each: a function ``(lr: Tensor, schedule, **hparams) -> Transform``
and, in its ``@register(...)`` decorator, the row every test and the bench read.

Adding a variant takes three things (tests/test_variant_rows.py adds a toy one this way):

1. one function here: its keyword-only defaults are its hyperparameters (the paper's symbols),
   its docstring gives the update equation and the paper;
2. its row, the arguments of ``@register``: ``state`` (names of its per-coordinate state tensors:
   bytes per parameter are derived from them), ``reference=Reference(factory, why)`` (or
   ``no_reference="why none exists"``; float64 transcriptions of papers live in references.py),
   ``draw`` (the hyperparameters its reference test draws) and ``converge=Converge(...)``;
   optionally ``cases`` (hyperparameters for the bench, the compile and the checkpoint tests),
   ``extra_pass`` / ``bytes`` / ``state_bytes`` / ``factored`` (memory traffic the derivation
   misses), ``more_references``, ``inductor`` and ``split`` (param groups by parameter kind);
3. one ``conf/optimizer/<name>.yaml`` naming exactly its hyperparameters.

A row missing a required field fails ``test_every_variant_row_is_complete[<name>]`` by name, and
the bench raises ``IncompleteRow`` rather than read a default.

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
import math
import random
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

import torch

from . import references as ref
from .base import CHECKS, HyperparameterError, Transform, chain
from .schedules import interpolate
from .transforms import (add_decayed_weights, scale_by_adam, scale_by_adam_atan2,
                         scale_by_adam_eps0, scale_by_adam_scheduled, scale_by_belief,
                         scale_by_factored_rms, scale_by_lion,
                         scale_by_lr, scale_by_param_scale, scale_by_radam, scale_by_spam,
                         scale_by_stable_adamw, trace)


# --- the row -------------------------------------------------------------------------------------
class IncompleteRow(ValueError):
    """A variant's row lacks a field that a test or the bench needs; the message names both."""


@dataclass(frozen=True)
class Reference:
    """An independent implementation the variant must match: ``factory(params, hp) ->
    torch.optim.Optimizer`` with our hyperparameter names, ``why`` it is the reference (one line),
    ``hparams(drawn) -> hp`` the drawn hyperparameters it is checked at (default: as drawn).
    Checked over 50 float64 steps of an MLP to rtol 1e-5 (tests/test_variants.py); ``exact`` (the
    same algorithm as a torch.optim class): over 100 steps in float64 (rtol 1e-9) and float32
    (2e-5), and with param groups and torch LR schedulers (tests/test_optim.py)."""
    factory: Callable[[list, dict], torch.optim.Optimizer]
    why: str
    hparams: Callable[[dict], dict] = dict
    exact: bool = False


@dataclass(frozen=True)
class Converge:
    """Hyperparameters under which the variant cuts a loss 100× (final ≤ start/100): ``vector``,
    ½Σhᵢxᵢ² over a 20-vector (h log-spaced 1..10^1.5, float32, 300 steps: tests/test_optim.py);
    ``matrix``, the same over a 4×5 matrix (float64, 300 steps; Adafactor factors it);
    ``rosenbrock``, the 2-D Rosenbrock function from (-1.5, 2) in ``steps`` steps (float64)."""
    vector: Mapping
    matrix: Mapping
    rosenbrock: Mapping
    steps: int = 2000


_NEEDS = {  # field -> what the completeness test and IncompleteRow say is missing
    "fn": "function",
    "state": "state tensors (register(..., state=('m', 'v')); () for none)",
    "reference": "reference (register(..., reference=Reference(factory, why)) or no_reference='why')",
    "draw": "hyperparameter draw for its reference test (register(..., draw=...))",
    "converge": "convergence case (register(..., converge=Converge(...)))",
}


@dataclass(frozen=True)
class Row:
    """One variant: its function and what tests and the bench read about it.

    ``state``: names of the per-coordinate state tensors (each the param's shape) it keeps under
    its ``bench`` case, e.g. ("m", "v"); ``factored``: names that replace them for ≥2-D params
    (Adafactor's ("row", "col"): ~no bytes).  Bytes moved per parameter per step (bench.py) are
    derived, 12 + 8·len(state), plus ``extra_pass`` (a per-tensor reduction pass, by layout
    "fp32"/"bf16"), unless ``bytes`` gives its own counts; ``state_bytes(shapes)`` its own rule for
    the fp32 state bytes per parameter.  ``reference`` (a Reference) or ``no_reference`` (why none
    exists); ``more_references``: further checks by name; ``draw(random.Random) -> hp``: the
    hyperparameters the reference test draws.  ``converge``: a Converge.  ``cases``: hyperparameters
    by purpose where the defaults miss a code path: "bench" (benchmarks, state counts), "compile"
    (the compiled-step test), "round_trip" (the checkpoint test).  ``inductor``: why its compiled
    step is also checked with inductor (one variant per distinct code path; "" for no).
    ``split(model) -> [group dicts]``: its param groups by parameter kind (None: one group of
    ``model.parameters()``); a group's ``variant`` key gives that group its own variant."""
    name: str
    fn: Optional[Callable[..., Transform]]
    state: Optional[tuple[str, ...]] = None
    factored: tuple[str, ...] = ()
    extra_pass: Mapping[str, int] = field(default_factory=dict)
    bytes: Optional[Mapping[str, int]] = None
    state_bytes: Optional[Callable[[list[tuple[int, ...]]], float]] = None
    reference: Optional[Reference] = None
    no_reference: str = ""
    more_references: Mapping[str, Reference] = field(default_factory=dict)
    draw: Optional[Callable[[random.Random], dict]] = None
    converge: Optional[Converge] = None
    cases: Mapping[str, Mapping] = field(default_factory=dict)
    inductor: str = ""
    split: Optional[Callable[[torch.nn.Module], list[dict]]] = None

    def missing(self) -> list[str]:
        """What this row lacks, one sentence each ("foo has no convergence case (...)")."""
        need = ["fn", "state", "converge"]
        if self.reference is None and not self.no_reference:
            need.append("reference")
        if self.reference is not None or self.more_references:
            need.append("draw")
        return [f"{self.name} has no {_NEEDS[k]}" for k in need if getattr(self, k) is None]

    def need(self, key: str):
        """The field ``key``, or IncompleteRow naming the variant and the field."""
        value = getattr(self, key)
        if value is None:
            raise IncompleteRow(f"{self.name} has no {_NEEDS.get(key, key)}")
        return value

    def case(self, purpose: str) -> dict:
        """The hyperparameters for ``purpose`` ("bench", "compile", "round_trip"; {} if none)."""
        return dict(self.cases.get(purpose, {}))


ROWS: dict[str, Row] = {}  # name -> row, in registration order (the bench tables' order)
VARIANTS: dict[str, Callable[..., Transform]] = {}  # name -> function (the same registry)


def register(fn: Optional[Callable] = None, /, **row):
    """``@register(state=..., reference=..., draw=..., converge=..., ...)`` above a variant's
    function adds its Row (fields: ``Row``) under the function's name.  A bare ``@register`` adds
    a row without fields (its tests fail by name until they are given)."""
    def add(f: Callable) -> Callable:
        if f.__name__ in ROWS:
            raise ValueError(f"optimizer variant {f.__name__!r} is already registered")
        ROWS[f.__name__] = Row(f.__name__, f, **row)
        VARIANTS[f.__name__] = f
        return f

    return add if fn is None else add(fn)


def unregister(name: str) -> Row:
    """Remove a variant (tests that register a toy one restore the registry with it)."""
    VARIANTS.pop(name)
    return ROWS.pop(name)


def get_row(name: str) -> Row:
    if name not in ROWS:
        raise HyperparameterError("name", f"name={name!r} is not an optimizer; allowed: "
                                  f"{', '.join(sorted(ROWS))}")
    return ROWS[name]


def param_groups(name: str, model: torch.nn.Module) -> list[dict]:
    """The param groups of ``model`` for variant ``name``: its row's ``split(model)``, or one
    group ``[{"params": list(model.parameters())}]`` (the same step as ``model.parameters()``)."""
    split = get_row(name).split
    return [{"params": list(model.parameters())}] if split is None else split(model)


def hparam_defaults(variant: Callable) -> dict:
    """The variant's hyperparameters and their defaults (its keyword-only arguments)."""
    return {n: p.default for n, p in inspect.signature(variant).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _decoupled(pre: Transform, weight_decay: float, lr, schedule) -> Transform:
    """θ ← θ - η·s(t)·(u + λθ)."""
    wd = [add_decayed_weights(weight_decay)] if weight_decay else []
    return chain(pre, *wd, scale_by_lr(lr, schedule))


# --- the variants (registration order = the order of the bench's tables) ------------------------
@register(state=("m", "v"), reference=Reference(ref.torch_adam, "torch.optim.Adam", exact=True),
          draw=ref.draw_torch_adam,
          converge=Converge(vector=dict(lr=0.05), matrix=dict(lr=0.03), rosenbrock=dict(lr=0.03)))
def adam(lr, schedule=None, *, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0) -> Transform:
    """Adam (Kingma & Ba 2015, arXiv 1412.6980), as torch.optim.Adam:
    g ← g + λθ (L2, only if λ > 0);  θ ← θ - η·s(t)·m̂/(√v̂ + ε)."""
    l2 = [add_decayed_weights(weight_decay)] if weight_decay else []
    return chain(*l2, scale_by_adam(b1, b2, eps), scale_by_lr(lr, schedule))


@register(state=("m", "v"), reference=Reference(ref.torch_adamw, "torch.optim.AdamW", exact=True),
          draw=ref.draw_torch_adam,
          converge=Converge(vector=dict(lr=0.05, weight_decay=0.0), matrix=dict(lr=0.03, weight_decay=0.0),
                            rosenbrock=dict(lr=0.03, weight_decay=0.0)))
def adamw(lr, schedule=None, *, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01) -> Transform:
    """AdamW (Loshchilov & Hutter 2019, arXiv 1711.05101), as torch.optim.AdamW:
    θ ← θ - η·s(t)·(m̂/(√v̂ + ε) + λθ)  (decoupled weight decay)."""
    return chain(scale_by_adam(b1, b2, eps), add_decayed_weights(weight_decay),
                 scale_by_lr(lr, schedule))


@register(state=("m", "v"), draw=ref.draw_adam_like,
          reference=Reference(ref.eps_inside, "transcription: neither torch nor pytorch-optimizer "
                                              "puts ε under the root"),
          converge=Converge(vector=dict(lr=0.05), matrix=dict(lr=0.03), rosenbrock=dict(lr=0.03)))
def adam_eps_inside(lr, schedule=None, *, b1=0.9, b2=0.999, eps=1e-8,
                    weight_decay=0.0) -> Transform:
    """Adam with ε under the square root (Kingma & Ba 2015, arXiv 1412.6980, ε moved):
    θ ← θ - η·s(t)·(m̂/√(v̂ + ε) + λθ)."""
    return _decoupled(scale_by_adam(b1, b2, eps, eps_inside=True), weight_decay, lr, schedule)


@register(state=("m", "v"), draw=ref.draw_no_eps,
          reference=Reference(ref.adam_eps0, "torch.optim.AdamW(eps=0): the same update wherever "
                                             "v̂ > 0 (all of an MLP's)"),
          converge=Converge(vector=dict(lr=0.05), matrix=dict(lr=0.03), rosenbrock=dict(lr=0.03)))
def adam_eps0(lr, schedule=None, *, b1=0.9, b2=0.999, weight_decay=0.0) -> Transform:
    """Adam with ε = 0 (arXiv 1412.6980): θ ← θ - η·s(t)·(m̂/√v̂ + λθ);
    the update is 0 where v̂ = 0."""
    return _decoupled(scale_by_adam_eps0(b1, b2), weight_decay, lr, schedule)


@register(state=("m", "v"), draw=ref.draw_atan2,
          reference=Reference(ref.adam_atan2, "transcription of the paper's update (no reference "
                                              "in torch/pytorch-optimizer)"),
          converge=Converge(vector=dict(lr=0.05), matrix=dict(lr=0.03), rosenbrock=dict(lr=0.01)))
def adam_atan2(lr, schedule=None, *, b1=0.9, b2=0.99, a=1.27, b=1.0,
               weight_decay=0.0) -> Transform:
    """Adam-atan2 (Everett et al. 2024, arXiv 2407.05872): θ ← θ - η·s(t)·(a·atan2(m̂, b·√v̂) + λθ);
    no ε.  a = 1.27 ≈ 4/π, b = 1 (the widely used adam-atan2-pytorch defaults): at |m̂| = √v̂ the
    step equals Adam's, and it is bounded by a·π/2."""
    return _decoupled(scale_by_adam_atan2(b1, b2, a, b), weight_decay, lr, schedule)


@register(state=("m", "v"), draw=ref.draw_adam_like,
          reference=Reference(ref.adabelief, "pytorch-optimizer AdaBelief (rectify off): s += ε and "
                                             "√ŝ + ε as the paper/official code"),
          converge=Converge(vector=dict(lr=0.05), matrix=dict(lr=0.03), rosenbrock=dict(lr=0.03)))
def adabelief(lr, schedule=None, *, b1=0.9, b2=0.999, eps=1e-16, weight_decay=0.0) -> Transform:
    """AdaBelief (Zhuang et al. 2020, arXiv 2010.07468), ε as the official code:
    m ← β1·m + (1-β1)·g;  s ← β2·s + (1-β2)·(g - m)² + ε;
    θ ← θ - η·s(t)·(m̂/(√(s/(1-β2^t)) + ε) + λθ)
    (decoupled decay, the official code's weight_decouple)."""
    return _decoupled(scale_by_belief(b1, b2, eps), weight_decay, lr, schedule)


# RAdam's first 4 steps are plain momentum SGD (ρt ≤ 5): lr 0.01 keeps them stable on Rosenbrock.
@register(state=("m", "v"), draw=ref.draw_radam, reference=Reference(ref.radam, "torch.optim.RAdam"),
          converge=Converge(vector=dict(lr=0.05), matrix=dict(lr=0.03), rosenbrock=dict(lr=0.01),
                            steps=4000),
          cases={"compile": {"weight_decay": 0.1}, "round_trip": {"weight_decay": 0.1}},
          inductor="a 0-dim branch (ρt > 5)")
def radam(lr, schedule=None, *, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0,
          decoupled_weight_decay=False) -> Transform:
    """RAdam (Liu et al. 2020, arXiv 1908.03265), as torch.optim.RAdam (threshold ρt > 5, ε added
    to the uncorrected √v):  g ← g + λθ (L2; decoupled_weight_decay: θ ← θ - η·s(t)·λθ);
    θ ← θ - η·s(t)·rt·m̂·√(1-β2^t)/(√v + ε) if ρt > 5, else θ ← θ - η·s(t)·m̂."""
    if decoupled_weight_decay:
        return _decoupled(scale_by_radam(b1, b2, eps), weight_decay, lr, schedule)
    l2 = [add_decayed_weights(weight_decay)] if weight_decay else []
    return chain(*l2, scale_by_radam(b1, b2, eps), scale_by_lr(lr, schedule))


# The spike clip is elementwise (g² > θ·v): no extra pass over memory.
@register(state=("m", "v"), draw=ref.draw_spam,
          reference=Reference(ref.spam, "transcription of the authors' code (warm-up included); "
                                        "pytorch-optimizer's warm-up is one step late; decay order "
                                        "differs by O(η²λ), ~1e-6 here"),
          more_references={"spam_vs_pytorch_optimizer": Reference(
              ref.spam_pytorch_optimizer, "pytorch-optimizer SPAM: resets and clipping; its warm-up "
              "is one step later than the authors' code, so warm-up off here",
              hparams=lambda hp: hp | dict(warmup=0))},
          converge=Converge(vector=dict(lr=0.05), matrix=dict(lr=0.03), rosenbrock=dict(lr=0.01)),
          # resets at steps 7 and 14 with the checkpoint at 10, mid warm-up
          cases={"compile": dict(reset_every=4, warmup=2, clip_delay=1, theta=2.0, weight_decay=0.1),
                 "round_trip": dict(reset_every=7, warmup=4, clip_delay=2, theta=3.0, weight_decay=0.1)},
          inductor="resets of m and v inside the step")
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


@register(state=("m",), draw=ref.draw_lion,
          reference=Reference(ref.lion, "pytorch-optimizer Lion: the paper's update with decoupled decay"),
          converge=Converge(vector=dict(lr=0.01), matrix=dict(lr=0.01), rosenbrock=dict(lr=0.003)),
          cases={"round_trip": {"lr": 1e-3, "weight_decay": 0.1}})
def lion(lr, schedule=None, *, b1=0.9, b2=0.99, weight_decay=0.0) -> Transform:
    """Lion (Chen et al. 2023, arXiv 2302.06675): c = β1·m + (1-β1)·g;
    θ ← θ - η·s(t)·(sign(c) + λθ);  m ← β2·m + (1-β2)·g.  State: m, count (no v)."""
    return _decoupled(scale_by_lion(b1, b2), weight_decay, lr, schedule)


# Its state is the momentum buffer under the bench case (momentum 0.9); without momentum it keeps
# none and moves 12 bytes per parameter (fp32).
@register(state=("momentum_buffer",), draw=ref.draw_torch_sgd,
          reference=Reference(ref.torch_sgd, "torch.optim.SGD", exact=True),
          converge=Converge(vector=dict(lr=0.02, momentum=0.9), matrix=dict(lr=0.01, momentum=0.9),
                            rosenbrock=dict(lr=1e-3, momentum=0.9)),
          cases={"bench": {"momentum": 0.9}, "compile": dict(momentum=0.9, nesterov=True),
                 "round_trip": {"momentum": 0.9}})
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


# RMS_t = √mean(g²/v̂_t) needs this step's v̂ before the update can be applied: a pass reading g
# and v (fp32 4 + 4, bf16 2 + 4 bytes) before the Adam pass.
@register(state=("m", "v"), extra_pass={"fp32": 8, "bf16": 6}, draw=ref.draw_adam_like,
          reference=Reference(ref.stable_adamw, "pytorch-optimizer StableAdamW: the paper's "
                                                "Algorithm 1 (β̂, updated u, η_t on λ)"),
          converge=Converge(vector=dict(lr=0.05, weight_decay=0.0), matrix=dict(lr=0.03, weight_decay=0.0),
                            rosenbrock=dict(lr=0.01, weight_decay=0.0)))
def stable_adamw(lr, schedule=None, *, b1=0.9, b2=0.99, eps=1e-6, weight_decay=0.01) -> Transform:
    """StableAdamW (Wortsman et al. 2023, arXiv 2304.13013, Algorithm 1): AdamW with Adafactor's
    update clipping as a per-tensor learning rate:  RMS_t = √mean(g²/max(v̂_t, ε²)) with v̂_t this
    step's (updated) bias-corrected second moment;  η_t = η·s(t)/max(1, RMS_t);
    θ ← θ - η_t·(m̂/(√v̂ + ε) + λθ)."""
    return chain(scale_by_stable_adamw(b1, b2, eps, weight_decay), scale_by_lr(lr, schedule))


def _factored_state_bytes(shapes: Sequence[tuple[int, ...]]) -> float:
    """Adafactor's fp32 state bytes per parameter: a row and a column factor per matrix of a ≥2-D
    tensor (over its last two dims), a full v for the others."""
    n = sum(math.prod(s) for s in shapes)
    per = sum((s[-2] * (math.prod(s[:-2]) or 1) + s[-1] * (math.prod(s[:-2]) or 1))
              if len(s) >= 2 else math.prod(s) for s in shapes)
    return per * 4 / n


# Passes over memory: read g (row/col means); read g and p (RMS(U), RMS(θ)); read p, g + write p:
# fp32 4 + 8 + 12 = 24, bf16 2 + 6 + 12 = 20 (~no state for matrices; vectors' v is negligible).
# Adafactor's relative step decays as 1/√t and stalls near 5e-3 on Rosenbrock: absolute step there.
@register(state=("v",), factored=("row", "col"), bytes={"fp32": 24, "bf16": 20},
          state_bytes=_factored_state_bytes, draw=ref.draw_adafactor,
          reference=Reference(ref.adafactor, "torch.optim.Adafactor (relative step; ε1 differs only "
                                             "where g² ≲ 1e-30)"),
          more_references={"adafactor_absolute": Reference(
              ref.adafactor_absolute, "transcription of the paper (absolute step; torch has "
              "relative only)", hparams=ref.adafactor_absolute_hparams)},
          converge=Converge(vector=dict(lr=0.1), matrix=dict(lr=0.1),
                            rosenbrock=dict(lr=0.003, relative_step=False)),
          cases={"compile": {"weight_decay": 0.1}, "round_trip": {"weight_decay": 0.1}},
          inductor="factored reductions and None state entries")
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
