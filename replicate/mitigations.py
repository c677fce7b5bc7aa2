"""Mitigations of loss spikes: small pieces, each registered with the place where it acts.

Chosen with the multi-select config group ``mitigation`` (``python -m replicate
'mitigation=[clip,embed_shrink]' mitigation.clip.max_norm=0.5``); the options of ``<name>`` are the
keys under ``mitigation.<name>``: the keyword-only arguments of its function (or class) below.
``build(cfg['mitigation'])`` checks them once and returns the chosen pieces grouped by place
(``Mitigations``); the training loop calls each place once and names no mitigation. A piece is its
function with the options bound, called with what its place provides:

==============  =====================================================  ==================================
place           called                                                 here
==============  =====================================================  ==================================
``model``       ``f(model)`` right after the model is built            ``embed_shrink``
``groups``      ``f(model, groups, lr) -> groups`` (param groups)      ``layer_lr``
``chain``       ``f(variant) -> variant``: the optimizer's transform   ``beta_schedule``;
                chain (update-side fixes: ``after_update(transform)``)
``optimizer``   ``f(model, data, opt)`` once the optimizer is built,   ``v_init``
                before step 0 (its state)
``gradient``    ``f(grads, grad_norm)`` in place, after backward and   ``clip``
                before the probes and the step
``loop``        a ``LoopEvent`` (a class): the top of each step, the   ``Rollback``
                loss after the forward pass, skip this step's update,
                metrics to log, its state in checkpoints
==============  =====================================================  ==================================

A mitigation that needs every rank's full optimizer state (not with ``dist.zero``) says so with
``full_state=True``. Adding one = one function (or LoopEvent class) with ``@mitigation(place=...)``
+ one ``conf/mitigation/<name>.yaml`` + one test row.

Not here, because they are something else already: warmup is a schedule (``schedule=warmup``, or
``schedule.warmup_steps=N`` with ``cosine``/``linear``); qk-layernorm, z-loss and scaled
embeddings are options of the GPT model (``model.qk_norm``, ``model.z_loss``,
``model.scaled_embed``); StableAdamW's update clipping and SPAM are optimizer variants.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections import deque
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, Mapping

import torch

from .optim import Transform, TransformOptimizer, chain, with_beta_schedule
from .spikes import OnlineDetector

PLACES = ("model", "groups", "chain", "optimizer", "gradient", "loop")


@dataclass(frozen=True)
class Mitigation:
    """A registered mitigation: its function (or LoopEvent class), where it acts, and whether it
    needs the whole optimizer state on every rank; ``check(**options)`` validates options up front
    for places that first act once training has started (gradient, loop)."""

    name: str
    place: str
    fn: Callable
    full_state: bool = False
    check: Callable | None = None

    def options(self) -> dict[str, Any]:
        """The allowed options with their defaults (the keyword-only arguments)."""
        return {p.name: p.default for p in inspect.signature(self.fn).parameters.values()
                if p.kind is p.KEYWORD_ONLY}


MITIGATIONS: dict[str, Mitigation] = {}


def mitigation(name: str | None = None, *, place: str, full_state: bool = False, check: Callable | None = None):
    """Register a mitigation acting at ``place`` (one of ``PLACES``) under ``name`` (default: the
    function's name in lower case)."""
    if place not in PLACES:
        raise ValueError(f"place={place!r} is not a place; allowed: {', '.join(PLACES)}")

    def register(fn):
        key = name or fn.__name__.lower()
        MITIGATIONS[key] = Mitigation(key, place, fn, full_state, check)
        return fn

    return register


class LoopEvent:
    """A mitigation acting on the loop itself (place ``loop``). Every hook is optional; ``run`` holds
    the loop's objects: ``model``, ``opt``, ``data``, ``probes`` (or None), ``rows`` (logged rows)."""

    def top(self, step: int, run: SimpleNamespace) -> None:
        """At the top of step ``step``, before its batch is drawn."""

    def after_forward(self, step: int, loss: float, run: SimpleNamespace) -> int | None:
        """After the forward pass of ``step``: None to go on, or the step to continue from (the
        model, optimizer and data restored in place by the event)."""
        return None

    def skip_update(self, step: int, loss: float, grad_norm: float) -> bool:
        """True: this step's optimizer update is not applied (its gradient is dropped)."""
        return False

    def event(self) -> dict[str, float]:
        """Metrics to merge into the next logged row (once)."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: Mapping) -> None:
        pass


class MitigationError(ValueError):
    """A bad mitigation option or one that does not fit the run; ``str(err)`` is one line that
    names the mitigation (``mitigation.<name>: ...``)."""


def _one_line(name: str, e: Exception) -> MitigationError:
    key = getattr(e, "key", None)  # a HyperparameterError names its key
    where = f"mitigation.{name}.{key}" if key else f"mitigation.{name}"
    return MitigationError(f"{where}: {str(e).splitlines()[0]}")


def _named(name: str, piece: Callable) -> Callable:
    """``piece`` with a bad option or a misfit (TypeError, ValueError, KeyError) turned into a
    one-line MitigationError naming ``name``: for the places that act while a run is set up."""

    @functools.wraps(piece)
    def call(*args):
        try:
            return piece(*args)
        except (TypeError, ValueError, KeyError) as e:
            raise _one_line(name, e) from None

    return call


SETUP = ("model", "groups", "chain", "optimizer")  # the places that act before step 0


@dataclass
class Mitigations:
    """The chosen mitigations, checked and grouped by place, in config order (``build``): one
    method per place; the loop events are ``loop`` (named in ``loop_names``)."""

    chosen: dict[str, dict] = field(default_factory=dict)  # name -> its options
    pieces: dict[str, list[Callable]] = field(default_factory=dict)  # place -> pieces, in config order
    loop: list[LoopEvent] = field(default_factory=list)
    loop_names: list[str] = field(default_factory=list)

    def needing_full_state(self) -> list[str]:
        return [n for n in self.chosen if MITIGATIONS[n].full_state]

    def model(self, model: torch.nn.Module) -> None:
        for f in self.pieces.get("model", []):
            f(model)

    def groups(self, model: torch.nn.Module, groups: list[dict], lr: float) -> list[dict]:
        for f in self.pieces.get("groups", []):
            groups = f(model, groups, lr)
        return groups

    def chain(self, variant):
        for f in self.pieces.get("chain", []):
            variant = f(variant)
        return variant

    def optimizer(self, model, data, opt) -> None:
        for f in self.pieces.get("optimizer", []):
            f(model, data, opt)

    def gradient(self, grads: list[torch.Tensor], grad_norm: torch.Tensor) -> None:
        for f in self.pieces.get("gradient", []):
            f(grads, grad_norm)

    def state_dict(self) -> dict:
        return {name: ev.state_dict() for name, ev in zip(self.loop_names, self.loop)}

    def load_state_dict(self, state: Mapping) -> None:
        for name, ev in zip(self.loop_names, self.loop):
            if name in state:
                ev.load_state_dict(state[name])


def build(cfg: Mapping | None) -> Mitigations:
    """The mitigations of ``cfg['mitigation']`` ({name: options}), checked and grouped by place.
    MitigationError (one line) for an unknown mitigation, an unknown option or a bad value."""
    out = Mitigations()
    for name, kw in (cfg or {}).items():
        if name not in MITIGATIONS:
            raise MitigationError(f"mitigation: {name!r} is not a mitigation; allowed: {', '.join(MITIGATIONS)}")
        m, kw = MITIGATIONS[name], dict(kw or {})
        allowed = m.options()
        for k in kw:
            if k not in allowed:
                raise MitigationError(f"mitigation: {name}.{k} is not an option; allowed: {', '.join(allowed)}")
        try:
            if m.check is not None:
                m.check(**kw)
            piece = m.fn(**kw) if m.place == "loop" else functools.partial(m.fn, **kw)
        except (TypeError, ValueError) as e:
            raise _one_line(name, e) from None
        out.chosen[name] = kw
        if m.place == "loop":
            out.loop.append(piece)
            out.loop_names.append(name)
        else:
            out.pieces.setdefault(m.place, []).append(_named(name, piece) if m.place in SETUP else piece)
    return out


# ------------------------------------------------------------------------------------- gradient
def _check_clip(*, max_norm: float = 1.0) -> None:
    if not (isinstance(max_norm, (int, float)) and max_norm > 0):
        raise ValueError(f"max_norm={max_norm!r} is not allowed: must be > 0")


@mitigation(place="gradient", check=_check_clip)
@torch.no_grad()
def clip(grads: list[torch.Tensor], norm: torch.Tensor, *, max_norm: float = 1.0) -> None:
    """Global-norm gradient clipping (Pascanu et al. 2013, arXiv 1211.5063; GPT-3, LLaMA, PaLM
    use c = 1): g ← g·min(1, c/‖g‖₂), ‖g‖₂ over all parameters together, in place. ``norm`` is
    the loop's (unclipped, logged) ``grad_norm``; a gradient inside the ball is left bit for bit."""
    torch._foreach_mul_(grads, torch.clamp(max_norm / norm, max=1.0))


# ---------------------------------------------------------------------------------------- model
@mitigation(place="model")
def embed_shrink(model: torch.nn.Module, *, alpha: float = 0.1, layer: str | None = None) -> list:
    """GLM-130B's embedding gradient shrink (Zeng et al. 2022, arXiv 2210.02414, §3):
    emb ← emb·α + emb.detach()·(1-α): the forward pass is unchanged, the gradient into the
    embedding is multiplied by α (α = 0.1 in GLM-130B). Written as emb.detach() + α·(emb -
    emb.detach()), whose value is emb bit for bit. Applied as forward hooks on the modules that own
    the parameters of ``layer`` (a name of ``model.layers()``; None: the first, shallowest layer,
    ``embedding`` for the GPT: wte and wpe). Returns the hook handles."""
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha={alpha!r} must be in (0, 1]")
    layers = model.layers()
    layer = next(iter(layers)) if layer is None else layer
    if layer not in layers:
        raise ValueError(f"layer={layer!r} is not a layer of the model; allowed: {', '.join(layers)}")
    wanted = set(layers[layer])
    owners = []
    for prefix, module in model.named_modules():
        names = {f"{prefix}.{n}" if prefix else n for n, _ in module.named_parameters(recurse=False)}
        if names and names <= wanted:
            owners.append(module)
            wanted -= names
    if wanted:
        raise ValueError(f"layer {layer!r}: parameters {sorted(wanted)} share a module with other layers")

    def shrink(module, inputs, out):
        return out.detach() + alpha * (out - out.detach())

    return [m.register_forward_hook(shrink) for m in owners]


# ------------------------------------------------------------------------------------ optimizer
@mitigation(place="groups")
def layer_lr(model: torch.nn.Module, groups: list[dict], lr: float, *, scales: Mapping[str, float]) -> list[dict]:
    """Per-layer learning rates: η_layer = scale·η for the layers named in ``scales`` (names of
    ``model.layers()``; e.g. ``{embedding: 0.1}``, a smaller embedding learning rate as in
    GLM-130B's discussion and Molybog et al. 2023, arXiv 2304.09871), η for the rest. Each param
    group is split: its unscaled layers first (so group 0's lr, the one the loop logs, is η), then
    one group per scaled layer with lr = scale × (the group's lr, else ``lr``); other group keys are
    kept. A scale of None leaves that layer unscaled (so a config can drop the default
    ``embedding`` key: ``{embedding: null, layer0: 0.1}`` on the MLP)."""
    scales = {k: s for k, s in scales.items() if s is not None}
    layers, named = model.layers(), dict(model.named_parameters())
    unknown = [k for k in scales if k not in layers]
    if unknown:
        raise ValueError(f"scales: {unknown} not layers of the model; allowed: {', '.join(layers)}")
    for k, s in scales.items():
        if not (isinstance(s, (int, float)) and s > 0):
            raise ValueError(f"scales.{k}={s!r} must be a number > 0")
    out = []
    for g in groups:
        mine = {id(p) for p in g["params"]}
        keep = {k: v for k, v in g.items() if k != "params"}
        rest = [named[n] for layer, names in layers.items() if layer not in scales for n in names
                if id(named[n]) in mine]
        out += [{**keep, "params": rest}] if rest else []
        for k, s in scales.items():
            ps = [named[n] for n in layers[k] if id(named[n]) in mine]
            out += [{**keep, "params": ps, "lr": g.get("lr", lr) * float(s)}] if ps else []
    return out


@mitigation(place="chain")
def beta_schedule(variant, *, b1=None, b2=None, steps: int, shape: str = "linear") -> Callable:
    """β1/β2 that change over training, for adam, adamw and adam_eps_inside: β(t) moves from
    ``[start, end]`` over ``steps`` steps, linearly or along a half cosine (None: the optimizer's
    constant value); m̂ = m/(1-Π β1_s), v̂ = v/(1-Π β2_s), the exact normalisation of an EMA whose
    β changes. Both directions are in the literature: β2 rising toward 1 as Adafactor's
    β̂2_t = 1 - t^-0.8 (Shazeer & Stern 2018, arXiv 1804.04235) and the convergence analyses of
    Zhang et al. 2022 (arXiv 2208.09632); β1 decaying as Kingma & Ba 2015 (§4, β1,t = β1·λ^(t-1))
    and Demon (Chen et al. 2019, arXiv 1910.04952). The default (conf/mitigation/beta_schedule.yaml)
    decays β2 from 0.999 to 0.95 (CLAIMS Q3: a large β2 early, a small one when spikes come).
    The β are tensors computed from the step count inside the step: a compiled step never recompiles.
    ``variant`` is the optimizer's (a name or a variant function); returns the scheduled variant."""
    name = variant if isinstance(variant, str) else variant.__name__
    return with_beta_schedule(name, b1=b1, b2=b2, steps=steps, shape=shape)


@mitigation(place="optimizer", full_state=True)
def v_init(model: torch.nn.Module, data, opt: TransformOptimizer, *, batches: int = 8,
           scale: float = 1.0) -> None:
    """Non-zero initialisation of Adam's second moment (Abuduweili & Liu 2024, arXiv 2412.02153,
    "data-driven" v₀): v₀ = scale·(1/k)·Σ_{i<k} g_i², g_i the gradient at the initial parameters on
    batch ``data.batch_at(data.pos + i)``, k = ``batches``, before step 0. The batches are read by
    random access: ``data.pos`` does not move, so training sees the same stream as without v_init
    (these k batches are its first k). Gradients are the model's own (an embed_shrink hook applies),
    unclipped. The optimizer's bias correction is left as it is (v̂_t = v_t/(1-β2^t)), so the first
    steps are also damped by about √((1-β2^t)/1); this is the optimizer code unchanged, our
    reading, not checked against the paper's code. Needs a state ``v`` for every parameter."""
    if batches < 1:
        raise ValueError(f"batches={batches!r} must be >= 1")
    params = [p for p in model.parameters() if p.requires_grad]
    vs = [opt.param_state(p).get("v") for p in params]
    if any(v is None for v in vs):
        raise ValueError("the optimizer has no per-coordinate second moment v for every parameter")
    device = params[0].device
    acc = [torch.zeros_like(p) for p in params]
    for i in range(batches):
        model.zero_grad(set_to_none=True)
        model.loss(_to(data.batch_at(data.pos + i), device)).backward()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        torch._foreach_addcmul_(acc, grads, grads, value=scale / batches)
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        for v, a in zip(vs, acc):
            v.copy_(a)


# ----------------------------------------------------------------------------------------- loop
@mitigation(place="loop", full_state=True)
class Rollback(LoopEvent):
    """PaLM-style rollback (Chowdhery et al. 2022, arXiv 2204.02311, §5.1: restart from a
    checkpoint ~100 steps before the spike and skip ~200–500 data batches).

    ``snapshot()`` at the top of every ``every``-th step keeps the exact training state in memory
    (model, optimizer, data position, torch RNG, probes, spike window, number of logged rows); the
    last ⌈back/every⌉ + 1 snapshots are kept. ``spiked(loss)`` after each forward pass applies
    the online spike test (``spikes.OnlineDetector``: ``spikes.detect``'s definition, step by step). On a
    spike at step s, ``restore()`` reloads the newest snapshot at step ≤ s - ``back`` (the oldest
    if none is that old), drops the logged rows and snapshots after it, and places the data stream:

    - ``mode: skip`` (PaLM; M11 b): position = the snapshot's + ``skip``: the ``skip`` batches from
      the snapshot on are never trained on;
    - ``mode: replay`` (M11 a): position = the snapshot's: the same batches again (in a
      deterministic run the spike recurs, each time counted, until ``max_rollbacks``);
    - ``mode: feed`` (M11 c): position = the spike batch's - ``feed`` + 1: the ``feed`` batches up
      to and including the spike's are fed from the earlier state.

    At most ``max_rollbacks`` rollbacks per run; later spikes are left alone. Each rollback is
    logged on the first step trained after it (see ``event``).

    Outcome of each rollback (M11): it *recurred* when the spike test fires again at a step in
    [restore, t + ``recur``], and is *clean* when step t + ``recur`` passes without one (the test
    runs even when no rollbacks are left); t is the rolled-back spike's step s in modes skip and
    replay, and the step at which the spike's batch is fed again, restore + ``feed`` - 1, in mode
    feed. The run's counts so far
    are logged as ``rollback_recurred`` and ``rollback_clean`` on the row where an outcome is
    decided and on every rollback's row, so the last logged value is the run's; rollbacks minus
    both is the number undecided at the end of the run. The step is the one ``snapshot`` was
    last called with (the loop calls it at the top of every step). ``roll_recurring: false``
    trains through a recurring spike instead of rolling it back (which would restore the same
    snapshot, fewer than ``back`` steps before it), and through any spike with no snapshot at
    least ``back`` steps old, so every rollback is a separate event that goes back ``back`` steps.
    """

    def __init__(self, *, every: int = 10, back: int = 100, skip: int = 200, window: int = 100,
                 factor: float = 3.0, min_loss: float = 0.0, max_rollbacks: int = 10,
                 mode: str = "skip", feed: int = 1, recur: int = 20, roll_recurring: bool = True):
        for key, val, low in (("every", every, 1), ("back", back, 0), ("skip", skip, 0), ("recur", recur, 0),
                              ("window", window, 1), ("max_rollbacks", max_rollbacks, 0), ("feed", feed, 1)):
            if not (isinstance(val, int) and not isinstance(val, bool) and val >= low):
                raise ValueError(f"{key}={val!r} must be an integer >= {low}")
        if mode not in ("skip", "replay", "feed"):
            raise ValueError(f"mode={mode!r} is not allowed: skip, replay or feed")
        if not factor > 1:
            raise ValueError(f"factor={factor!r} must be > 1")
        self.every, self.back, self.skip, self.mode, self.feed = every, back, skip, mode, feed
        self.max_rollbacks = max_rollbacks
        self.detector = OnlineDetector(window, factor, min_loss)
        self.snapshots: deque[dict] = deque(maxlen=-(-back // every) + 1)
        self.count, self.loss = 0, float("nan")
        self.pending: dict[str, float] = {}
        if not isinstance(roll_recurring, bool):
            raise ValueError(f"roll_recurring={roll_recurring!r} must be true or false")
        self.recur, self.recurred, self.clean, self.roll_recurring = recur, 0, 0, roll_recurring
        self.watch_until: int | None = None  # the last step at which a spike counts as recurring
        self.at: int | None = None  # the step of the latest snapshot() call: the current step

    def snapshot(self, step: int, model, opt, data, probes, rows: list) -> None:
        """At the top of step ``step`` (before its batch is drawn), every ``every`` steps."""
        self.at = step
        if step % self.every:
            return
        if self.snapshots and self.snapshots[-1]["step"] == step:
            self.snapshots.pop()  # the same step again after a rollback: the new state replaces it
        self.snapshots.append({
            "step": step, "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "optimizer": opt.state_dict(), "data": dict(data.state_dict()), "rng": torch.get_rng_state(),
            "probes": copy.deepcopy(probes.state_dict()) if probes is not None else None,
            "detector": self.detector.state_dict(), "rows": len(rows)})

    def spiked(self, loss: float, step: int | None = None) -> bool:
        """The spike test on this step's loss; True only while rollbacks are left. Also decides
        whether the latest rollback's spike recurred (see the class); ``step`` defaults to the
        step of the latest ``snapshot`` call."""
        self.loss = loss
        step = self.at if step is None else step
        spike = self.detector.observe(loss)
        if step is not None and self.watch_until is not None and (spike or step >= self.watch_until):
            recurred = spike and step <= self.watch_until
            if recurred:
                self.recurred += 1
            else:
                self.clean += 1
            self.watch_until = None
            self.pending = {**self.pending, **self._outcomes()}
            if recurred and not self.roll_recurring:
                return False  # counted, trained through: the next rollback goes back `back` steps again
        if spike and not self.roll_recurring and step is not None \
                and not any(s["step"] <= step - self.back for s in self.snapshots):
            return False  # no snapshot `back` steps old (a cluster right after a restore): trained through
        return spike and self.count < self.max_rollbacks

    def _outcomes(self) -> dict[str, float]:
        return {"rollback_recurred": float(self.recurred), "rollback_clean": float(self.clean)}

    def restore(self, step: int, model, opt, data, probes, rows: list) -> int:
        """Roll back from a spike at ``step`` (whose batch was the last drawn); returns the step
        to continue from. The model, optimizer and data are restored in place."""
        spike_pos, baseline = data.pos - 1, self.detector.baseline
        old = [s for s in self.snapshots if s["step"] <= step - self.back]
        snap = old[-1] if old else self.snapshots[0]
        while self.snapshots[-1]["step"] > snap["step"]:
            self.snapshots.pop()
        model.load_state_dict(snap["model"])
        opt.load_state_dict(snap["optimizer"])
        data.load_state_dict(snap["data"])
        torch.set_rng_state(snap["rng"])
        if probes is not None:
            probes.load_state_dict(copy.deepcopy(snap["probes"]))
        self.detector.load_state_dict(snap["detector"])
        del rows[snap["rows"]:]
        if self.mode == "skip":
            data.skip(self.skip)
        elif self.mode == "feed":
            data.pos = spike_pos - self.feed + 1
        self.count += 1
        # the step at which the spike's batch is drawn again (feed) or its step comes again (skip, replay)
        self.watch_until = (snap["step"] + self.feed - 1 if self.mode == "feed" else step) + self.recur
        self.pending = {"rollback_spike_step": float(step), "rollback_spike_loss": self.loss,
                        "rollback_baseline": baseline, "rollback_data_pos": float(data.pos),
                        "rollbacks": float(self.count), **self._outcomes()}
        return snap["step"]

    def event(self) -> dict[str, float]:
        """The metrics of the latest rollback, once (merged into the first row logged after it):
        ``rollback_spike_step``, ``rollback_spike_loss``, ``rollback_baseline`` (the median it was
        compared with), ``rollback_data_pos`` (the data position training went on from) and
        ``rollbacks`` (the run's count so far); ``rollback_recurred`` and ``rollback_clean`` (see
        the class)."""
        out, self.pending = self.pending, {}
        return out

    def state_dict(self) -> dict:
        return {"snapshots": list(self.snapshots), "detector": self.detector.state_dict(),
                "count": self.count, "pending": self.pending, "recurred": self.recurred,
                "clean": self.clean, "watch_until": self.watch_until}

    def load_state_dict(self, state: Mapping) -> None:
        self.snapshots.clear()
        self.snapshots.extend(state["snapshots"])
        self.detector.load_state_dict(state["detector"])
        self.count, self.pending = state["count"], dict(state["pending"])
        self.recurred, self.clean = state.get("recurred", 0), state.get("clean", 0)
        self.watch_until = state.get("watch_until")

    # --- the LoopEvent hooks
    def top(self, step: int, run: SimpleNamespace) -> None:
        self.snapshot(step, run.model, run.opt, run.data, run.probes, run.rows)

    def after_forward(self, step: int, loss: float, run: SimpleNamespace) -> int | None:
        if self.spiked(loss):
            return self.restore(step, run.model, run.opt, run.data, run.probes, run.rows)
        return None


# ------------------------------------------------------------------------------------- helpers
def after_update(make_transform: Callable[..., Transform]) -> Callable:
    """A ``chain`` piece for an update-side fix: the variant's chain followed by
    ``make_transform(lr, schedule, **hp)`` (a Transform acting on the final step Δθ)."""
    from .optim import VARIANTS

    def wrap(variant):
        base = VARIANTS[variant] if isinstance(variant, str) else variant

        @functools.wraps(base)
        def wrapped(lr, schedule=None, **hp) -> Transform:
            return chain(base(lr, schedule, **hp), make_transform(lr, schedule, **hp))

        return wrapped

    return wrap


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to(b, device) for b in batch)
    return batch
