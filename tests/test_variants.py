"""replicate.optim variants: references over 50 steps, convergence tables, compile, checks, configs.

Reference per variant (REFERENCES below): torch.optim where it exists and agrees with the paper,
pytorch-optimizer (test-only) where its code was checked against the paper, else a plain per-tensor
transcription of the paper's (or the authors' code's) equations written out in this file.
"""
import math
import random
from pathlib import Path

import pytest
import torch
import yaml

from replicate.optim import VARIANTS, HyperparameterError, hparam_defaults, make

ROOT = Path(__file__).resolve().parent.parent
STEPS, RTOL = 50, 1e-5


def mlp(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(),
                               torch.nn.Linear(32, 32), torch.nn.Tanh(),
                               torch.nn.Linear(32, 4)).double()


def batches(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 8, generator=g, dtype=torch.float64),
             torch.randn(16, 4, generator=g, dtype=torch.float64)) for _ in range(n)]


def train(model, opt, data):
    for x, y in data:
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()


@torch.no_grad()
def rel_err(a, b) -> float:
    """max over param tensors of max|a - b| / max|b|."""
    return max(float((p - q).abs().max() / q.abs().max())
               for p, q in zip(a.parameters(), b.parameters()))


# --- plain transcriptions: a per-tensor for-loop optimizer over a rule(p, g, state, t, **hp) -----

class Plain(torch.optim.Optimizer):
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


# --- random hyperparameters and the reference for each variant ----------------------------------

def draw(name, seed):
    r = random.Random(f"{name}-{seed}")
    lr = 10 ** r.uniform(-3.5, -2)
    wd = r.choice([0.0, 10 ** r.uniform(-3, -1)])
    b1, b2 = r.uniform(0.0, 0.95), 1 - 10 ** r.uniform(-3, -1)
    if name == "adafactor":
        return dict(lr=10 ** r.uniform(-3, -1), beta2_decay=r.uniform(-1.0, -0.5),
                    eps2=10 ** r.uniform(-4, -2), d=r.uniform(0.3, 2.0), weight_decay=wd)
    if name == "lion":
        return dict(lr=lr / 10, b1=b1, b2=b2, weight_decay=wd)
    if name == "adam_eps0":
        return dict(lr=lr, b1=b1, b2=b2, weight_decay=wd)
    if name == "adam_atan2":
        return dict(lr=lr, b1=b1, b2=b2, a=r.uniform(0.5, 2.0), b=r.uniform(0.5, 2.0), weight_decay=wd)
    if name == "spam":  # small θ so that clipping fires; short reset period within 50 steps
        return dict(lr=lr, b1=b1, b2=b2, eps=10 ** r.uniform(-8, -5), theta=r.uniform(1.2, 3.0),
                    reset_every=r.randint(12, 20), warmup=r.randint(2, 8), clip_delay=r.randint(2, 6),
                    weight_decay=wd)
    if name == "radam":
        return dict(lr=lr, b1=b1, b2=b2, eps=10 ** r.uniform(-10, -6), weight_decay=wd,
                    decoupled_weight_decay=r.random() < 0.5)
    return dict(lr=lr, b1=b1, b2=b2, eps=10 ** r.uniform(-10, -6), weight_decay=wd)


def _betas(hp):
    hp = dict(hp)
    hp["betas"] = (hp.pop("b1"), hp.pop("b2"))
    return hp


def _po(cls_name):
    return getattr(pytest.importorskip("pytorch_optimizer"), cls_name)


# name -> (reference optimizer factory(params, hp), why this reference)
REFERENCES = {
    "adam_eps_inside": (lambda ps, hp: Plain(ps, eps_inside_rule, **hp),
                        "transcription: neither torch nor pytorch-optimizer puts ε under the root"),
    "adam_eps0": (lambda ps, hp: torch.optim.AdamW(ps, eps=0.0, foreach=False, **_betas(hp)),
                  "torch.optim.AdamW(eps=0): the same update wherever v̂ > 0 (all of an MLP's)"),
    "adam_atan2": (lambda ps, hp: Plain(ps, atan2_rule, **hp),
                   "transcription of the paper's update (no reference in torch/pytorch-optimizer)"),
    "adabelief": (lambda ps, hp: _po("AdaBelief")(ps, rectify=False, weight_decouple=True,
                                                  fixed_decay=False, foreach=False, **_betas(hp)),
                  "pytorch-optimizer AdaBelief (rectify off): s += ε and √ŝ + ε as the paper/official code"),
    "radam": (lambda ps, hp: torch.optim.RAdam(ps, foreach=False, **_betas(hp)), "torch.optim.RAdam"),
    "lion": (lambda ps, hp: _po("Lion")(ps, weight_decouple=True, foreach=False, **_betas(hp)),
             "pytorch-optimizer Lion: the paper's update with decoupled decay"),
    "adafactor": (lambda ps, hp: torch.optim.Adafactor(ps, foreach=False, eps=(None, hp.pop("eps2")), **hp),
                  "torch.optim.Adafactor (relative step; ε1 differs only where g² ≲ 1e-30)"),
    "stable_adamw": (lambda ps, hp: _po("StableAdamW")(ps, weight_decouple=True, kahan_sum=False,
                                                       foreach=False, **_betas(hp)),
                     "pytorch-optimizer StableAdamW: the paper's Algorithm 1 (β̂, updated u, η_t on λ)"),
    "spam": (lambda ps, hp: SpamCode(ps, **hp),
             "transcription of the authors' code (warm-up included); pytorch-optimizer's warm-up is "
             "one step late; decay order differs by O(η²λ), ~1e-6 here"),
}
EXTRA = {  # further references: (variant, hparam overrides, factory, why)
    "adafactor_absolute": ("adafactor", dict(relative_step=False, eps1=1e-30),
                           lambda ps, hp: Plain(ps, adafactor_rule, **{k: v for k, v in hp.items()
                                                                       if k not in ("eps2", "relative_step")}),
                           "transcription of the paper (absolute step; torch has relative only)"),
    "spam_vs_pytorch_optimizer": ("spam", dict(warmup=0),
                                  lambda ps, hp: _po("SPAM")(
                                      ps, lr=hp["lr"], betas=(hp["b1"], hp["b2"]), eps=hp["eps"],
                                      threshold=hp["theta"], update_proj_gap=hp["reset_every"],
                                      warmup_epoch=0, grad_accu_steps=hp["clip_delay"],
                                      weight_decay=hp["weight_decay"], density=1.0, foreach=False),
                                  "pytorch-optimizer SPAM: resets and clipping; its warm-up is one "
                                  "step later than the authors' code, so warm-up off here"),
}
NO_REFERENCE_HERE = {"adam", "adamw", "sgd"}  # matched to torch.optim in tests/test_optim.py


def test_references_cover_variants():
    assert set(REFERENCES) | NO_REFERENCE_HERE == set(VARIANTS)


def _match(name, hp, factory, seed):
    a, b = mlp(seed), mlp(seed)
    data = batches(STEPS, seed)
    train(a, make(name, a.parameters(), **hp), data)
    train(b, factory(list(b.parameters()), dict(hp)), data)
    return a, rel_err(a, b)


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_matches_reference(name, seed):
    hp = draw(name, seed)
    _, err = _match(name, hp, REFERENCES[name][0], seed)
    assert err <= RTOL, (name, hp, err)


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("key", sorted(EXTRA))
def test_matches_extra_reference(key, seed):
    name, over, factory, _ = EXTRA[key]
    hp = draw(name, seed) | over
    if name == "adafactor":
        hp.pop("eps2")
        hp["lr"] /= 10
    _, err = _match(name, hp, factory, seed)
    assert err <= RTOL, (key, hp, err)


def test_spam_reference_exercises_clipping_and_resets():
    """The SPAM rows above are not vacuous: with θ off, or with no reset, the result differs."""
    hp = draw("spam", 0)
    base, _ = _match("spam", hp, REFERENCES["spam"][0], 0)
    for over in ({"theta": 0.0}, {"reset_every": 1000}):
        other, _ = _match("spam", hp | over, REFERENCES["spam"][0], 0)
        assert rel_err(other, base) > 1e-3, over


def test_adam_eps0_zero_where_v_is_zero():
    p = torch.nn.Parameter(torch.ones(3))
    opt = make("adam_eps0", [p], lr=0.1)
    for _ in range(3):
        p.grad = torch.tensor([1.0, 0.0, -2.0])
        opt.step()
    assert torch.isfinite(p).all() and p[1] == 1.0 and p[0] < 1 and p[2] > 1


def test_atan2_is_scale_invariant_and_bounded():
    ps = [torch.nn.Parameter(torch.zeros(4, dtype=torch.float64)) for _ in range(2)]
    opts = [make("adam_atan2", [p], lr=1.0, a=1.0) for p in ps]
    g = torch.tensor([1e-30, -3.0, 1e20, 0.5], dtype=torch.float64)
    for _ in range(5):
        for p, o, s in zip(ps, opts, (1.0, 1e-12)):
            p.grad = g * s
            o.step()
    torch.testing.assert_close(ps[0], ps[1], rtol=1e-12, atol=0)
    assert (ps[0].abs() <= 5 * math.pi / 2).all()


def test_stable_adamw_is_adamw_with_the_step_divided_by_rms():
    """Planted spike: StableAdamW's step = AdamW's step / max(1, RMS_t), RMS_t from the UPDATED v̂."""
    ps = [torch.nn.Parameter(torch.zeros(100, dtype=torch.float64)) for _ in range(2)]
    kw = dict(lr=1.0, b1=0.9, b2=0.99, eps=1e-6, weight_decay=0.0)
    stable, plain = make("stable_adamw", [ps[0]], **kw), make("adamw", [ps[1]], **kw)
    spike = torch.ones(100, dtype=torch.float64)
    spike[:10] = 1000.0
    for t in range(51):
        g = spike if t == 50 else torch.ones(100, dtype=torch.float64)
        before = [p.detach().clone() for p in ps]
        for p, o in zip(ps, (stable, plain)):
            p.grad = g.clone()
            o.step()
    vhat = plain.param_state(ps[1])["v"] / (1 - 0.99 ** 51)
    rms = float(torch.sqrt((g * g / vhat.clamp(min=1e-12)).mean()))
    assert rms > 2
    torch.testing.assert_close(ps[0] - before[0], (ps[1] - before[1]) / rms, rtol=1e-12, atol=0)


def test_spam_clips_a_spike_with_v_before_the_update():
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = make("spam", [p], lr=1.0, theta=4.0, clip_delay=2, b2=0.5)
    for _ in range(3):
        p.grad = torch.ones(1, dtype=torch.float64)
        opt.step()
    v_before = opt.param_state(p)["v"].clone()  # 1 - 0.5³
    p.grad = torch.full((1,), 1e6, dtype=torch.float64)
    opt.step()
    clipped = math.sqrt(4.0 * float(v_before))
    assert float(opt.param_state(p)["v"]) == pytest.approx(0.5 * float(v_before) + 0.5 * clipped ** 2)


# --- convergence: every variant, a diagonal quadratic (a matrix, so Adafactor factors it) and the
# 2-D Rosenbrock function from (-1.5, 2); the final loss must be ≤ 1/100 of the start. -------------
CONVERGE = {  # name: (quadratic kwargs, rosenbrock kwargs, rosenbrock steps)
    "adam": (dict(lr=0.03), dict(lr=0.03), 2000),
    "adamw": (dict(lr=0.03, weight_decay=0.0), dict(lr=0.03, weight_decay=0.0), 2000),
    "adam_eps_inside": (dict(lr=0.03), dict(lr=0.03), 2000),
    "adam_eps0": (dict(lr=0.03), dict(lr=0.03), 2000),
    "adam_atan2": (dict(lr=0.03), dict(lr=0.01), 2000),
    "adabelief": (dict(lr=0.03), dict(lr=0.03), 2000),
    # RAdam's first 4 steps are plain momentum SGD (ρt ≤ 5): lr 0.01 keeps them stable on Rosenbrock.
    "radam": (dict(lr=0.03), dict(lr=0.01), 4000),
    "lion": (dict(lr=0.01), dict(lr=0.003), 2000),
    # Adafactor's relative step decays as 1/√t and stalls near 5e-3 on Rosenbrock: absolute step there.
    "adafactor": (dict(lr=0.1), dict(lr=0.003, relative_step=False), 2000),
    "stable_adamw": (dict(lr=0.03, weight_decay=0.0), dict(lr=0.01, weight_decay=0.0), 2000),
    "spam": (dict(lr=0.03), dict(lr=0.01), 2000),
    "sgd": (dict(lr=0.01, momentum=0.9), dict(lr=1e-3, momentum=0.9), 2000),
}


def test_converge_table_covers_variants():
    assert set(CONVERGE) == set(VARIANTS)


def _descend(opt, loss, steps):
    start = loss().item()
    for _ in range(steps):
        opt.zero_grad()
        loss().backward()
        opt.step()
    return loss().item(), start


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_converges_on_quadratic(name):
    h = torch.logspace(0, 1.5, 20, dtype=torch.float64).reshape(4, 5)  # condition number ~30
    x = torch.nn.Parameter(torch.ones(4, 5, dtype=torch.float64))
    end, start = _descend(make(name, [x], **CONVERGE[name][0]), lambda: 0.5 * (h * x * x).sum(), 300)
    assert end <= start / 100, (end, start)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_converges_on_rosenbrock(name):
    xy = torch.nn.Parameter(torch.tensor([-1.5, 2.0], dtype=torch.float64))
    _, kw, steps = CONVERGE[name]
    loss = lambda: (1 - xy[0]) ** 2 + 100 * (xy[1] - xy[0] ** 2) ** 2  # noqa: E731
    end, start = _descend(make(name, [xy], **kw), loss, steps)
    assert end <= start / 100, (end, start)


# --- torch.compile: every variant traces as ONE graph with no recompile when lr changes (dynamo
# only, backend "eager"); one variant per distinct code path also runs through inductor.  Compiled
# as the wrapper compiles (not fullgraph, which traced radam's old `.item()` in one graph where the
# wrapper's compile broke it into 4), with dynamo's graph-break counter asserted empty. ---
COMPILE_KW = {"sgd": dict(momentum=0.9, nesterov=True),
              "spam": dict(reset_every=4, warmup=2, clip_delay=1, theta=2.0, weight_decay=0.1),
              "adafactor": dict(weight_decay=0.1), "radam": dict(weight_decay=0.1)}
INDUCTOR = ["adafactor", "radam", "spam"]  # factored reductions + None state; 0-dim branch; resets


def _compiled_vs_eager(name, monkeypatch, backend):
    import torch._dynamo

    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    compile_ = torch.compile  # inductor takes the wrapper's options; the eager backend has none
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compile_(
        fn, backend=backend, **(kw if backend == "inductor" else {})))
    counters.clear()
    g = torch.Generator().manual_seed(0)
    shapes = [(3, 2), (2,)]
    grads = [[torch.randn(s, generator=g) for s in shapes] for _ in range(10)]
    ps = {c: [torch.nn.Parameter(torch.ones(s)) for s in shapes] for c in (False, True)}
    opts = {c: make(name, ps[c], lr=1e-2, compile=c, schedule={"name": "warmup", "warmup_steps": 3},
                    **COMPILE_KW.get(name, {})) for c in (False, True)}

    def step(t):
        for c in (False, True):
            for p, gr in zip(ps[c], grads[t]):
                p.grad = gr.clone()
            opts[c].param_groups[0]["lr"] = 1e-2 / (1 + t)
            opts[c].step()

    step(0)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for t in range(1, 10):
            step(t)
    assert not counters["graph_break"], dict(counters["graph_break"])
    for p, q in zip(ps[True], ps[False]):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    for p, q in zip(ps[True], ps[False]):
        a, b = opts[True].param_state(p), opts[False].param_state(q)
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_compiles_to_one_graph_without_recompiles(name, monkeypatch):
    _compiled_vs_eager(name, monkeypatch, "eager")


@pytest.mark.slow
@pytest.mark.parametrize("name", INDUCTOR)
def test_inductor_matches_eager(name, monkeypatch):
    _compiled_vs_eager(name, monkeypatch, "inductor")


# --- hyperparameter checks --------------------------------------------------------------------
PARAMS = [torch.nn.Parameter(torch.ones(2))]


@pytest.mark.parametrize("name, kw, key", [
    ("adam_atan2", {"a": -1.0}, "a"),
    ("adam_atan2", {"a": 0.0}, "a"),
    ("adam_atan2", {"b": -0.5}, "b"),
    ("adam_atan2", {"eps": 1e-8}, "eps"),
    ("adam_eps0", {"eps": 1e-8}, "eps"),
    ("spam", {"reset_every": 0}, "reset_every"),
    ("spam", {"reset_every": 2.5}, "reset_every"),
    ("spam", {"warmup": -1}, "warmup"),
    ("spam", {"clip_delay": -2}, "clip_delay"),
    ("spam", {"theta": -1.0}, "theta"),
    ("spam", {"b2": 1.0}, "b2"),
    ("lion", {"b1": 1.5}, "b1"),
    ("lion", {"eps": 1e-8}, "eps"),
    ("lion", {"weight_decay": -0.1}, "weight_decay"),
    ("adafactor", {"beta2_decay": 0.5}, "beta2_decay"),
    ("adafactor", {"d": 0.0}, "d"),
    ("adafactor", {"eps1": -1e-30}, "eps1"),
    ("adafactor", {"eps2": -1e-3}, "eps2"),
    ("adafactor", {"betas": (0.9, 0.99)}, "betas"),
    ("adabelief", {"eps": -1.0}, "eps"),
    ("radam", {"b1": -0.1}, "b1"),
    ("stable_adamw", {"lr": 0.0}, "lr"),
    ("adam_eps_inside", {"eps": -1e-8}, "eps"),
])
def test_bad_hyperparameters(name, kw, key):
    with pytest.raises(HyperparameterError) as e:
        make(name, PARAMS, **kw)
    assert e.value.key == key and key in str(e.value) and "\n" not in str(e.value)


# --- configs: one YAML per variant, naming exactly its hyperparameters -------------------------

@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_config_per_variant(name):
    cfg = yaml.safe_load((ROOT / "conf" / "optimizer" / f"{name}.yaml").read_text())
    assert cfg["name"] == name and cfg["compile"] is False and cfg["lr"] > 0
    hp = {k: v for k, v in cfg.items() if k not in ("name", "lr", "compile")}
    defaults = hparam_defaults(VARIANTS[name])
    assert hp.keys() == defaults.keys()
    make(name, [torch.nn.Parameter(torch.ones(2, 2))], **{k: v for k, v in cfg.items()
                                                          if k not in ("name", "compile")})
