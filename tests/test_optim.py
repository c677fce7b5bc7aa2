"""replicate.optim: equivalence with torch.optim, schedules, checkpoints, errors, compile.

Per-variant values (the torch.optim reference and its draw, the checkpoint case, the state
tensors, the quadratic's hyperparameters) are read from the variant's row (replicate.optim.ROWS);
the ``check_*`` functions take a variant's name, so tests/test_variant_rows.py runs a toy variant
through them."""
import random

import pytest
import torch

from replicate.optim import ROWS, VARIANTS, HyperparameterError, make, make_schedule


def mlp(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(),
                               torch.nn.Linear(32, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4))


def batches(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 8, generator=g), torch.randn(16, 4, generator=g)) for _ in range(n)]


def train(model, opt, data, sched=None):
    for x, y in data:
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        if sched is not None:
            sched.step()


def assert_close(a, b, rtol=1e-6):
    for p, q in zip(a.parameters(), b.parameters()):
        assert (p - q).abs().max() <= rtol * q.abs().max(), (p - q).abs().max()


# the variants whose row's reference is a torch.optim class with the same algorithm (adam, adamw, sgd)
EXACT = [n for n, r in ROWS.items() if r.reference is not None and r.reference.exact]


def torch_reference(name, params, hp):
    return ROWS[name].reference.factory(params, dict(hp))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("name", EXACT)
@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-9), (torch.float32, 2e-5)])
def test_matches_torch(name, seed, dtype, rtol):
    """float64 isolates the algorithm (measured ~1e-14). In float32 the gradients' own rounding
    differs from float64 by ~7e-7 after 100 steps, and torch's AdamW rounds 1 - lr·λ to float32
    (drifting up to ~6e-6 from float64, where ours stays ~7e-7), hence the looser bound."""
    ours = ROWS[name].draw(random.Random(seed))
    a, b = mlp(seed).to(dtype), mlp(seed).to(dtype)
    data = [(x.to(dtype), y.to(dtype)) for x, y in batches(100, seed)]
    train(a, make(name, a.parameters(), **ours), data)
    train(b, torch_reference(name, b.parameters(), ours), data)
    assert_close(a, b, rtol)


def test_betas_alias():
    a, b, data = mlp(), mlp(), batches(20)
    train(a, make("adam", a.parameters(), lr=1e-2, betas=(0.8, 0.99)), data)
    train(b, torch.optim.Adam(b.parameters(), lr=1e-2, betas=(0.8, 0.99), foreach=False), data)
    assert_close(a, b)


@pytest.mark.parametrize("name", EXACT)
def test_param_groups_and_torch_schedulers(name):
    a, b = mlp(1).double(), mlp(1).double()
    data = [(x.double(), y.double()) for x, y in batches(60, 1)]

    def groups(m):
        return [{"params": m[0].parameters(), "lr": 3e-3, "weight_decay": 0.05},
                {"params": m[2].parameters()},
                {"params": m[4].parameters(), "lr": 1e-2, "weight_decay": 0.0}]

    kw = dict(lr=1e-3, weight_decay=0.01) | ({"momentum": 0.9} if name == "sgd" else {})
    oa, ob = make(name, groups(a), **kw), torch_reference(name, groups(b), kw)
    lam = lambda t: min(1.0, (t + 1) / 10)  # noqa: E731
    train(a, oa, data[:30], torch.optim.lr_scheduler.LambdaLR(oa, lam))
    train(b, ob, data[:30], torch.optim.lr_scheduler.LambdaLR(ob, lam))
    train(a, oa, data[30:], torch.optim.lr_scheduler.StepLR(oa, step_size=7, gamma=0.5))
    train(b, ob, data[30:], torch.optim.lr_scheduler.StepLR(ob, step_size=7, gamma=0.5))
    assert_close(a, b, 1e-9)
    assert oa.current_lr(2) == ob.param_groups[2]["lr"]


def test_grad_none_skipped():
    p, q = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    opt = make("adam", [p, q], lr=0.1)
    p.grad = torch.ones(3)
    opt.step()
    assert torch.equal(q, torch.ones(2)) and not p.detach().eq(1).any()
    assert opt.param_state(q)["v"].eq(0).all() and opt.param_state(p)["v"].ne(0).all()


def at(s, t):
    return float(s(torch.tensor(float(t))))


def test_schedules():
    assert at(make_schedule("constant"), 7) == 1.0
    w = make_schedule("warmup", warmup_steps=4)
    assert [at(w, t) for t in (1, 2, 4, 100)] == [0.25, 0.5, 1.0, 1.0]
    c = make_schedule("cosine", total_steps=110, warmup_steps=10, final_frac=0.1)
    assert at(c, 5) == 0.5 and at(c, 10) == 1.0 and at(c, 110) == pytest.approx(0.1, abs=1e-7)
    assert at(c, 60) == pytest.approx(0.55, abs=1e-6) and at(c, 500) == pytest.approx(0.1, abs=1e-7)
    c0 = make_schedule("cosine", total_steps=100)
    assert at(c0, 0) == 1.0 and at(c0, 100) == pytest.approx(0.1, abs=1e-7)
    lin = make_schedule("linear", total_steps=100, warmup_steps=20)
    assert at(lin, 10) == 0.5 and at(lin, 20) == 1.0 and at(lin, 60) == 0.5 and at(lin, 100) == 0.0
    assert at(make_schedule("linear", total_steps=10, final_frac=0.2), 10) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="allowed: constant, warmup, cosine, linear"):
        make_schedule("exp")


def test_schedule_in_optimizer():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = make("sgd", [p], lr=1.0, schedule={"name": "warmup", "warmup_steps": 4})
    assert opt.current_lr() == 0.25
    for t in range(1, 7):
        p.grad = torch.ones(1)
        opt.step()
        assert opt.current_lr() == min(t / 4, 1.0)
    assert p.item() == -(0.25 + 0.5 + 0.75 + 1 + 1 + 1)


# The round trip's hyperparameters: the row's "round_trip" case, which exercises the state that only
# some settings use (SPAM resets at step 7 and 14 with the checkpoint at 10, mid warm-up; Adafactor's
# weight decay).
def check_state_dict_round_trip(name, tmp_path):
    data, kw = batches(20, 3), dict(lr=1e-2, schedule={"name": "cosine", "total_steps": 20})
    kw |= ROWS[name].case("round_trip")
    ref = mlp(2)
    oref = make(name, ref.parameters(), **kw)
    train(ref, oref, data)
    a = mlp(2)
    oa = make(name, a.parameters(), **kw)
    train(a, oa, data[:10])
    torch.save({"model": a.state_dict(), "opt": oa.state_dict()}, tmp_path / "ck.pt")
    ck = torch.load(tmp_path / "ck.pt")
    b = mlp(99)
    ob = make(name, b.parameters(), **kw)
    before = ob.param_state(b[0].weight)
    b.load_state_dict(ck["model"])
    ob.load_state_dict(ck["opt"])
    after = ob.param_state(b[0].weight)
    assert all(after[k] is before[k] for k in before)  # loaded in place
    train(b, ob, data[10:])
    for p, q in zip(b.parameters(), ref.parameters()):
        assert torch.equal(p, q)
    for p, q in zip(b.parameters(), ref.parameters()):
        sb, sr = ob.param_state(p), oref.param_state(q)
        assert sb.keys() == sr.keys() and all(torch.equal(sb[k], sr[k]) for k in sb)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_state_dict_round_trip(name, tmp_path):
    check_state_dict_round_trip(name, tmp_path)


def test_param_state_keys():
    p = torch.nn.Parameter(torch.ones(2))
    assert set(make("adam", [p]).param_state(p)) == {"m", "v", "count"}
    assert make("sgd", [p]).param_state(p).get("m") is None


def state_keys(name, dim=2):
    """The probes' keys m (first moment), v (second moment) a ``dim``-D param keeps, from the row's
    state tensors (a factored variant's ``factored`` names for ≥2-D params: adafactor keeps v for
    vectors, row/col and no v for matrices); a variant without one simply lacks the key."""
    row = ROWS[name]
    return {"m", "v"} & set(row.factored if row.factored and dim >= 2 else row.need("state"))


def check_param_state_moments(name):
    row = ROWS[name]
    w, b = torch.nn.Parameter(torch.ones(3, 2)), torch.nn.Parameter(torch.ones(2))
    opt = make(name, [w, b], **row.case("bench"))
    w.grad, b.grad = torch.full((3, 2), 0.5), torch.full((2,), 0.5)
    opt.step()
    sw, sb = opt.param_state(w), opt.param_state(b)
    assert sw["count"].dim() == 0 and float(sw["count"]) == 1.0
    assert {"m", "v"} & set(sw) == state_keys(name)
    assert set(row.factored or row.state) <= set(sw) and set(row.state) <= set(sb)  # the row is truthful
    if row.factored:  # vectors keep the plain state, no factors
        assert not set(row.factored) & set(sb)
    for k in ({"m", "v"} & set(sw)) | (set() if row.factored else set(row.state)):
        assert sw[k].shape == w.shape
    if "v" in sw and name != "adabelief":  # Adam-like, bias-uncorrected: v = (1-β2)·g² after 1 step
        b2 = opt.param_groups[0]["b2"]
        torch.testing.assert_close(sw["v"], torch.full((3, 2), (1 - b2) * 0.25))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_param_state_moments(name):
    check_param_state_moments(name)


PARAMS = [torch.nn.Parameter(torch.ones(2))]


@pytest.mark.parametrize("name, kw, key", [
    ("lamb", {}, "name"),
    ("adam", {"beta1": 0.9}, "beta1"),
    ("adam", {"momentum": 0.9}, "momentum"),
    ("sgd", {"b1": 0.9}, "b1"),
    ("adam", {"lr": 0.0}, "lr"),
    ("sgd", {"lr": -1.0}, "lr"),
    ("adam", {"b1": 1.0}, "b1"),
    ("adam", {"b1": -0.1}, "b1"),
    ("adamw", {"b2": 1.5}, "b2"),
    ("adam", {"betas": (0.9, 1.0)}, "b2"),
    ("adam", {"eps": -1e-8}, "eps"),
    ("adamw", {"weight_decay": -0.1}, "weight_decay"),
    ("sgd", {"weight_decay": -0.1}, "weight_decay"),
    ("sgd", {"momentum": 1.0}, "momentum"),
    ("sgd", {"momentum": -0.5}, "momentum"),
    ("sgd", {"nesterov": True}, "nesterov"),
])
def test_bad_hyperparameters(name, kw, key):
    with pytest.raises(HyperparameterError) as e:
        make(name, PARAMS, **kw)
    assert e.value.key == key and key in str(e.value) and "\n" not in str(e.value)


def test_bad_group_hyperparameter():
    with pytest.raises(HyperparameterError) as e:
        make("adam", [{"params": PARAMS, "b2": 1.0}])
    assert e.value.key == "b2"
    with pytest.raises(HyperparameterError, match="allowed: lr, b1, b2, eps, weight_decay"):
        make("adam", [{"params": PARAMS, "alpha": 1.0}])


# Every variant (its row's Converge.vector hyperparameters) must cut a diagonal quadratic's loss 100x.
# (tests/test_variants.py adds a matrix-shaped quadratic and Rosenbrock for every variant.)
def check_decreases_quadratic(name):
    h = torch.logspace(0, 1.5, 20)  # condition number ~30
    x = torch.nn.Parameter(torch.ones(20))
    opt = make(name, [x], **ROWS[name].need("converge").vector)
    loss = lambda: 0.5 * (h * x * x).sum()  # noqa: E731
    start = loss().item()
    for _ in range(300):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < start / 100


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_decreases_quadratic(name):
    check_decreases_quadratic(name)


@pytest.mark.slow
def test_compiled_matches_eager_without_recompiles():
    import torch._dynamo

    torch._dynamo.reset()
    g = torch.Generator().manual_seed(0)
    grads = [[torch.randn(3, generator=g), torch.randn(2, generator=g)] for _ in range(20)]
    ps = {c: [torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))]
          for c in (False, True)}
    opts = {c: make("adam", ps[c], lr=1e-2, weight_decay=0.1, compile=c,
                    schedule={"name": "warmup", "warmup_steps": 5}) for c in (False, True)}

    def step(t):
        for c in (False, True):
            for p, gr in zip(ps[c], grads[t]):
                p.grad = gr.clone()
            opts[c].param_groups[0]["lr"] = 1e-2 / (1 + t)
            opts[c].step()

    step(0)  # compiles
    with torch._dynamo.config.patch(error_on_recompile=True):
        for t in range(1, 20):
            step(t)
    for p, q in zip(ps[True], ps[False]):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_compile_options_per_device(monkeypatch):
    """On the CPU the step compiles with inductor options this torch has (scalars of the count
    computed once per step, not per vector: wrapper.compile_options); on a GPU with the defaults."""
    import torch._inductor.config as inductor_config

    from replicate.optim.wrapper import compile_options

    cpu = compile_options(torch.device("cpu"))
    assert cpu and all(hasattr(inductor_config, k) for k in cpu)
    assert compile_options("cuda") is None and compile_options(torch.device("cuda", 1)) is None
    seen = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: seen.append(kw) or fn)
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.ones(2)
    make("adam", [p], compile=True).step()
    assert seen == [{"options": cpu}]


# ----------------------------------------------------------------------- mixed precision (bf16 params)
def _bf16_run(name, steps=30, master_weights=True, compile=False):
    torch.manual_seed(0)
    w32 = (torch.randn(64, 64) * 0.1).to(torch.bfloat16).float()  # representable in bf16
    p = torch.nn.Parameter(w32.to(torch.bfloat16))
    opt = make(name, [p], lr=1e-4, compile=compile, master_weights=master_weights)
    ref = torch.nn.Parameter(w32.clone())
    oref = make(name, [ref], lr=1e-4)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        grad = torch.randn(64, 64, generator=g)
        p.grad, ref.grad = grad.to(torch.bfloat16), grad.to(torch.bfloat16).float()
        opt.step()
        oref.step()
    return p, opt, ref, oref


@pytest.mark.parametrize("name", ["adam", "adamw", "lion", "adafactor", "stable_adamw"])
def test_bf16_params_keep_fp32_master_and_state(name):
    """bf16 params: fp32 master + fp32 state; the master follows the fp32 run on the same (bf16)
    gradients exactly, and the param is the master rounded to bf16."""
    p, opt, ref, oref = _bf16_run(name)
    st = opt.param_state(p)
    assert st["master"].dtype == torch.float32
    assert all(v.dtype == torch.float32 for k, v in st.items() if v.dim() > 0)
    torch.testing.assert_close(st["master"], ref.detach(), rtol=1e-6, atol=1e-7)
    assert torch.equal(p.detach(), st["master"].to(torch.bfloat16))


def test_bf16_without_master_loses_small_updates():
    """Why the master copy: lr 1e-4 steps on weights ~0.1 are below bf16's resolution (2^-8 relative),
    so bf16 params stepped in place barely move, while the master accumulates them."""
    p, _, ref, _ = _bf16_run("adam", master_weights=False)
    q, _, _, _ = _bf16_run("adam", master_weights=True)
    torch.manual_seed(0)
    start = (torch.randn(64, 64) * 0.1).to(torch.bfloat16).float()
    moved_plain = (p.detach().float() - start).abs().mean()
    moved_ref = (ref.detach() - start).abs().mean()
    assert moved_plain < 0.5 * moved_ref  # most updates rounded away
    assert (q.detach().float() - ref.detach().to(torch.bfloat16).float()).abs().max() == 0


def test_bf16_master_round_trips_and_compiles(tmp_path):
    p, opt, _, _ = _bf16_run("adam", steps=5)
    sd = opt.state_dict()
    assert sd["master"][0][0].dtype == torch.float32
    q = torch.nn.Parameter(p.detach().clone())
    o2 = make("adam", [q], lr=1e-4)
    o2.load_state_dict(sd)
    torch.testing.assert_close(o2.param_state(q)["master"], opt.param_state(p)["master"], rtol=0, atol=0)
    c, oc, ref, _ = _bf16_run("adam", steps=5, compile=True)
    torch.testing.assert_close(oc.param_state(c)["master"], ref.detach(), rtol=1e-6, atol=1e-7)
