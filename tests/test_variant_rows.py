"""Variants as rows (replicate.optim.ROWS): every row is complete, and a row that is not fails by
name (never a silent 0 in the bench); a new variant is one function + one YAML + one row: a toy one
registered here (signum) runs through the variant tests, the compiled-step test and the bench
helpers, then the registry is restored; parameter kinds through param groups: a toy two-kind
variant (sign descent on hidden matrices, SGD with momentum on embeddings, head and vectors, as
Muon splits a model) steps each group by its own rule and checkpoints."""

from __future__ import annotations

import random

import pytest
import torch

import test_bench_helpers
import test_optim
import test_variants
from replicate import bench
from replicate.models import GPT
from replicate.optim import (ROWS, VARIANTS, Converge, IncompleteRow, Reference, chain, make,
                             param_groups, register, unregister)
from replicate.optim.base import Transform, zeros
from replicate.optim.references import Plain
from replicate.optim.transforms import add_decayed_weights, scale_by_lr


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_row_is_complete(name):
    missing = ROWS[name].missing()
    if missing:
        pytest.fail("; ".join(missing), pytrace=False)


@pytest.fixture
def registered():
    """``registered(fn, **row)`` registers a variant for one test; the registry is restored after."""
    before, names = dict(ROWS), []

    def add(fn, **row):
        register(**row)(fn)
        names.append(fn.__name__)
        return ROWS[fn.__name__]

    yield add
    for name in names:
        unregister(name)
    assert ROWS == before and VARIANTS.keys() == before.keys()


# --- a row without its fields ----------------------------------------------------------------------

def bare(lr, schedule=None, *, weight_decay=0.0) -> Transform:
    """θ ← θ - η·s(t)·(g + λθ) (plain gradient descent, registered without a row's fields)."""
    return chain(add_decayed_weights(weight_decay), scale_by_lr(lr, schedule))


def test_an_incomplete_row_fails_by_name_and_the_bench_never_reads_zero(registered):
    row = registered(bare)
    assert [m.split(" (")[0] for m in row.missing()] == [
        "bare has no state tensors", "bare has no convergence case", "bare has no reference"]
    with pytest.raises(pytest.fail.Exception, match="bare has no convergence case"):
        test_every_variant_row_is_complete("bare")
    for read in (lambda: bench.bytes_per_param("bare"), lambda: bench.STATE_TENSORS["bare"],
                 lambda: bench.expected_state_bytes("bare", [(3, 2)]), lambda: dict(bench.BYTES_PER_PARAM)):
        with pytest.raises(IncompleteRow, match="bare has no state tensors"):
            read()
    with pytest.raises(IncompleteRow, match="bare has no convergence case"):
        test_variants.check_converges_on_quadratic("bare")
    with pytest.raises(IncompleteRow, match="bare has no hyperparameter draw"):
        test_variants.draw("bare", 0)


def test_a_name_is_registered_once(registered):
    with pytest.raises(ValueError, match="already registered"):
        register(state=("m", "v"))(VARIANTS["adam"])


# --- a toy variant: one function, one row, one YAML -----------------------------------------------

def scale_by_sign_momentum(b1: float) -> Transform:
    """m ← β1·m + (1-β1)·g;  u = sign(m)."""

    def init(params):
        return {"m": [torch.zeros_like(p) for p in params], "count": zeros(params)}

    def update(updates, state, params=None):
        state["count"].add_(1)
        torch._foreach_lerp_(state["m"], updates, 1 - b1)
        return torch._foreach_sign(state["m"]), state

    return Transform(init, update)


def signum(lr, schedule=None, *, b1=0.9, weight_decay=0.0) -> Transform:
    """Signum (Bernstein et al. 2018, arXiv 1802.04434): m ← β1·m + (1-β1)·g;
    θ ← θ - η·s(t)·(sign(m) + λθ)."""
    wd = [add_decayed_weights(weight_decay)] if weight_decay else []
    return chain(scale_by_sign_momentum(b1), *wd, scale_by_lr(lr, schedule))


def signum_rule(p, g, st, t, lr, b1, weight_decay):
    """The paper's update, per tensor, in float64 (the reference)."""
    m = st["m"] = b1 * st.get("m", torch.zeros_like(g)) + (1 - b1) * g
    p -= lr * (torch.sign(m) + weight_decay * p)


def signum_reference(ps, hp):
    return Plain(ps, signum_rule, **hp)


def draw_signum(r: random.Random) -> dict:
    return dict(lr=10 ** r.uniform(-4.5, -3), b1=r.uniform(0.0, 0.95),
                weight_decay=r.choice([0.0, 10 ** r.uniform(-3, -1)]))


SIGNUM_ROW = dict(state=("m",), draw=draw_signum,
                  reference=Reference(signum_reference, "float64 transcription of the paper's update"),
                  converge=Converge(vector=dict(lr=0.01), matrix=dict(lr=0.01), rosenbrock=dict(lr=0.003)))
SIGNUM_YAML = "name: signum\nlr: 1.0e-3\nb1: 0.9\nweight_decay: 0.0\ncompile: false\n"


@pytest.fixture
def toy_signum(registered, tmp_path):
    """signum registered with its row; its YAML in a conf dir of its own (returned)."""
    registered(signum, **SIGNUM_ROW)
    conf = tmp_path / "conf"
    (conf / "optimizer").mkdir(parents=True)
    (conf / "optimizer" / "signum.yaml").write_text(SIGNUM_YAML)
    return conf


def test_toy_variant_row_config_and_reference(toy_signum):
    assert not ROWS["signum"].missing()
    test_variants.check_config("signum", toy_signum)
    for seed in range(2):
        test_variants.check_reference("signum", seed)
    # not vacuous: a reference with another β1 does not match
    hp = test_variants.draw("signum", 0)
    _, err = test_variants._match("signum", hp, lambda ps, h: signum_reference(ps, h | {"b1": 0.0}), 0)
    assert err > 1e-3


def test_toy_variant_converges_and_keeps_its_state(toy_signum, tmp_path):
    test_variants.check_converges_on_quadratic("signum")
    test_variants.check_converges_on_rosenbrock("signum")
    test_optim.check_decreases_quadratic("signum")
    test_optim.check_param_state_moments("signum")
    assert test_optim.state_keys("signum") == {"m"}
    test_optim.check_state_dict_round_trip("signum", tmp_path)


def test_toy_variant_compiles_to_one_graph_without_recompiles(toy_signum, monkeypatch):
    test_variants._compiled_vs_eager("signum", monkeypatch, "eager")


def test_toy_variant_bench_helpers(toy_signum):
    assert bench.BYTES_PER_PARAM["signum"] == {"fp32": 20, "bf16": 20}  # 12 + 8·1 (m)
    assert list(bench.BYTES_PER_PARAM)[-2:] == ["signum", "torch_adamw"]
    assert bench.STATE_TENSORS["signum"] == 1 and bench.BENCH_HPARAMS["signum"] == {}
    assert bench.expected_state_bytes("signum", [(4, 3)]) == 4
    assert bench.expected_state_bytes("signum", [(4, 3)], torch.bfloat16) == 8
    test_bench_helpers.check_state_bytes("signum")


# --- parameter kinds: a row's split, a group's own variant -----------------------------------------

def sign_descent(lr, schedule=None, *, weight_decay=0.0) -> Transform:
    """Sign descent (signSGD, Bernstein et al. 2018, arXiv 1802.04434): θ ← θ - η·s(t)·(sign(g) + λθ).
    Its row's split gives it the hidden matrices only; SGD with momentum steps the rest."""

    def update(updates, state, params=None):
        return torch._foreach_sign(updates), state

    wd = [add_decayed_weights(weight_decay)] if weight_decay else []
    return chain(Transform(lambda params: {}, update), *wd, scale_by_lr(lr, schedule))


def split_by_kind(model) -> list[dict]:
    """Hidden 2-D weights: this variant; embeddings, head and vectors: SGD with momentum 0.9."""
    layers, named = model.layers(), dict(model.named_parameters())
    outer = {n for k in ("embedding", "head") for n in layers.get(k, [])}
    hidden = [p for n, p in named.items() if p.dim() == 2 and n not in outer]
    rest = [p for n, p in named.items() if not (p.dim() == 2 and n not in outer)]
    return [{"params": hidden}, {"params": rest, "variant": "sgd", "momentum": 0.9}]


def gpt(seed=0):
    torch.manual_seed(seed)
    return GPT(vocab_size=32, context=8, depth=1, width=16, heads=2)


def tokens(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 32, (4, 9), generator=g) for _ in range(n)]


def fit(model, opt, data):
    for batch in data:
        opt.zero_grad()
        model.loss(batch).backward()
        opt.step()


@pytest.fixture
def two_kinds(registered):
    registered(sign_descent, state=(), no_reference="a toy", split=split_by_kind)


def test_a_two_kind_variant_steps_each_group_with_its_own_rule(two_kinds):
    model = gpt()
    groups = param_groups("sign_descent", model)
    names = {id(p): n for n, p in model.named_parameters()}
    hidden = {names[id(p)] for p in groups[0]["params"]}
    assert hidden and all(n.startswith("blocks.") and n.endswith("weight") for n in hidden)
    assert {"wte.weight", "wpe.weight", "head.weight", "ln_f.weight"} <= {names[id(p)] for p in groups[1]["params"]}
    opt = make("sign_descent", groups, lr=0.01, weight_decay=0.1)
    assert opt.param_groups[1]["variant"] == "sgd" and opt.param_groups[1]["momentum"] == 0.9
    assert opt.param_groups[1]["weight_decay"] == 0.1 and "nesterov" in opt.param_groups[1]
    assert "momentum" not in opt.param_groups[0]
    lr = torch.tensor(0.01)
    buf = {}
    for batch in tokens(3):
        before = [p.detach().clone() for p in model.parameters()]
        opt.zero_grad()
        model.loss(batch).backward()
        opt.step()
        for p, p0 in zip(model.parameters(), before):
            g = p.grad
            if names[id(p)] in hidden:  # θ ← θ - η·(sign(g) + λθ)
                want = p0 + (torch.sign(g) + 0.1 * p0) * -lr
            else:  # torch.optim.SGD: g ← g + λθ; b ← 0.9·b + g (b₁ = g); θ ← θ - η·b
                g = g + 0.1 * p0
                buf[id(p)] = g if id(p) not in buf else 0.9 * buf[id(p)] + g
                want = p0 + buf[id(p)] * -lr
            torch.testing.assert_close(p.detach(), want, rtol=1e-6, atol=1e-8)
    for p in model.parameters():
        assert ("momentum_buffer" in opt.param_state(p)) == (names[id(p)] not in hidden)


def test_a_two_kind_variant_checkpoint_round_trips(two_kinds, tmp_path):
    data, kw = tokens(6, 1), dict(lr=0.01, schedule={"name": "cosine", "total_steps": 6})
    ref = gpt(1)
    oref = make("sign_descent", param_groups("sign_descent", ref), **kw)
    fit(ref, oref, data)
    a = gpt(1)
    oa = make("sign_descent", param_groups("sign_descent", a), **kw)
    fit(a, oa, data[:3])
    torch.save({"model": a.state_dict(), "opt": oa.state_dict()}, tmp_path / "ck.pt")
    ck = torch.load(tmp_path / "ck.pt")
    b = gpt(2)
    ob = make("sign_descent", param_groups("sign_descent", b), **kw)
    b.load_state_dict(ck["model"])
    ob.load_state_dict(ck["opt"])
    fit(b, ob, data[3:])
    for p, q in zip(b.parameters(), ref.parameters()):
        assert torch.equal(p, q)
        sb, sr = ob.param_state(p), oref.param_state(q)
        assert sb.keys() == sr.keys() and all(torch.equal(sb[k], sr[k]) for k in sb)
    other = make("sign_descent", [{"params": g["params"]} for g in param_groups("sign_descent", gpt(3))], **kw)
    with pytest.raises(ValueError, match="variant sgd"):
        other.load_state_dict(ck["opt"])


def test_a_two_kind_variant_compiles_each_group_to_one_graph(two_kinds, dynamo_only):
    models = [gpt(4), gpt(4)]
    opts = [make("sign_descent", param_groups("sign_descent", m), lr=0.01, compile=c)
            for m, c in zip(models, (False, True))]
    for batch in tokens(4, 4):
        for m, o in zip(models, opts):
            fit(m, o, [batch])
    assert not dynamo_only()
    for p, q in zip(*(m.parameters() for m in models)):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_param_groups_of_an_ordinary_variant_train_bit_identically(name):
    assert ROWS[name].split is None
    a, b = test_optim.mlp(5), test_optim.mlp(5)
    groups = param_groups(name, b)
    assert len(groups) == 1 and groups[0].keys() == {"params"}
    assert [id(p) for p in groups[0]["params"]] == [id(p) for p in b.parameters()]
    kw = ROWS[name].case("bench")
    oa, ob = make(name, a.parameters(), **kw), make(name, groups, **kw)
    data = test_optim.batches(5, 5)
    test_optim.train(a, oa, data)
    test_optim.train(b, ob, data)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
        sa, sb = oa.param_state(p), ob.param_state(q)
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
