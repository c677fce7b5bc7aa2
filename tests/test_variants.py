"""replicate.optim variants: references over 50 steps, convergence, compile, checks, configs.

Every per-variant value here is read from the variant's row (replicate.optim.ROWS, declared with
``@register`` in replicate/optim/variants.py): its reference (torch.optim where it exists and
agrees with the paper, pytorch-optimizer (test-only) where its code was checked against the paper,
else a float64 transcription of the paper's (or the authors' code's) equations in
replicate/optim/references.py), the hyperparameters it draws, its convergence case and its
compile case.  The ``check_*`` functions take a variant's name, so tests/test_variant_rows.py runs
a toy variant through them.
"""
import math
import random
from pathlib import Path

import pytest
import torch
import yaml

from replicate.optim import ROWS, VARIANTS, HyperparameterError, hparam_defaults, make
from replicate.optim.references import ReferenceUnavailable

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


# --- random hyperparameters and the reference of each variant: both from its row ----------------

def draw(name, seed):
    return ROWS[name].need("draw")(random.Random(f"{name}-{seed}"))


# the rows' references checked here (exact ones, torch.optim's own algorithms, in tests/test_optim.py)
REFERENCED = sorted(n for n, r in ROWS.items() if r.reference is not None and not r.reference.exact)
MORE = {key: (n, ref) for n, r in ROWS.items() for key, ref in r.more_references.items()}


def _match(name, hp, factory, seed):
    a, b = mlp(seed), mlp(seed)
    data = batches(STEPS, seed)
    train(a, make(name, a.parameters(), **hp), data)
    try:
        ref = factory(list(b.parameters()), dict(hp))
    except ReferenceUnavailable as e:
        pytest.skip(str(e))
    train(b, ref, data)
    return a, rel_err(a, b)


def check_reference(name, seed, reference=None):
    """50 float64 steps of an MLP with drawn hyperparameters equal the row's reference's (rtol 1e-5)."""
    ref = reference or ROWS[name].need("reference")
    hp = ref.hparams(draw(name, seed))
    _, err = _match(name, hp, ref.factory, seed)
    assert err <= RTOL, (name, hp, err)


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("name", REFERENCED)
def test_matches_reference(name, seed):
    check_reference(name, seed)


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("key", sorted(MORE))
def test_matches_extra_reference(key, seed):
    name, ref = MORE[key]
    check_reference(name, seed, ref)


def test_spam_reference_exercises_clipping_and_resets():
    """The SPAM reference is not vacuous: with θ off, or with no reset, the result differs."""
    hp = draw("spam", 0)
    factory = ROWS["spam"].reference.factory
    base, _ = _match("spam", hp, factory, 0)
    for over in ({"theta": 0.0}, {"reset_every": 1000}):
        other, _ = _match("spam", hp | over, factory, 0)
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
# 2-D Rosenbrock function from (-1.5, 2); the final loss must be ≤ 1/100 of the start.  The
# hyperparameters: the row's Converge (matrix, rosenbrock, steps). ----------------------------------

def _descend(opt, loss, steps):
    start = loss().item()
    for _ in range(steps):
        opt.zero_grad()
        loss().backward()
        opt.step()
    return loss().item(), start


def check_converges_on_quadratic(name):
    h = torch.logspace(0, 1.5, 20, dtype=torch.float64).reshape(4, 5)  # condition number ~30
    x = torch.nn.Parameter(torch.ones(4, 5, dtype=torch.float64))
    kw = ROWS[name].need("converge").matrix
    end, start = _descend(make(name, [x], **kw), lambda: 0.5 * (h * x * x).sum(), 300)
    assert end <= start / 100, (end, start)


def check_converges_on_rosenbrock(name):
    xy = torch.nn.Parameter(torch.tensor([-1.5, 2.0], dtype=torch.float64))
    case = ROWS[name].need("converge")
    loss = lambda: (1 - xy[0]) ** 2 + 100 * (xy[1] - xy[0] ** 2) ** 2  # noqa: E731
    end, start = _descend(make(name, [xy], **case.rosenbrock), loss, case.steps)
    assert end <= start / 100, (end, start)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_converges_on_quadratic(name):
    check_converges_on_quadratic(name)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_converges_on_rosenbrock(name):
    check_converges_on_rosenbrock(name)


# --- torch.compile: every variant traces as ONE graph with no recompile when lr changes (dynamo
# only, backend "eager"); one variant per distinct code path also runs through inductor.  Compiled
# as the wrapper compiles (not fullgraph, which traced radam's old `.item()` in one graph where the
# wrapper's compile broke it into 4), with dynamo's graph-break counter asserted empty.  The
# hyperparameters: the row's "compile" case; inductor: the rows that say why (``inductor``). ---
INDUCTOR = sorted(n for n, r in ROWS.items() if r.inductor)


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
                    **ROWS[name].case("compile")) for c in (False, True)}

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

def check_config(name, conf=ROOT / "conf"):
    cfg = yaml.safe_load((Path(conf) / "optimizer" / f"{name}.yaml").read_text())
    assert cfg["name"] == name and cfg["compile"] is False and cfg["lr"] > 0
    hp = {k: v for k, v in cfg.items() if k not in ("name", "lr", "compile")}
    defaults = hparam_defaults(VARIANTS[name])
    assert hp.keys() == defaults.keys()
    make(name, [torch.nn.Parameter(torch.ones(2, 2))], **{k: v for k, v in cfg.items()
                                                          if k not in ("name", "compile")})


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_config_per_variant(name):
    check_config(name)
