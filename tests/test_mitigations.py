"""Mitigations (replicate/mitigations.py), GPT options and optimizer presets, each on a planted case."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from replicate import mitigations, results, spikes, train
from replicate.config import ConfigError
from replicate.data import Markov, Regression
from replicate.models import GPT
from replicate.optim import TransformOptimizer, interpolate, make, with_beta_schedule

CONF = Path(__file__).resolve().parent.parent / "conf"
PRESETS = sorted(p.stem for p in (CONF / "optimizer" / "preset").glob("*.yaml"))
GPT_CFG = ["model=gpt", "data=markov", "data.batch_size=8", "data.context=16", "model.width=32",
           "model.heads=2", "optimizer.lr=3.0e-3", "threads=1"]
MLP_CFG = ["model=mlp", "data=regression", "data.batch_size=16", "threads=1"]


def gpt(seed=0, **kw):
    torch.manual_seed(seed)
    return GPT(vocab_size=64, context=16, depth=2, width=32, heads=2, **kw)


def batch(seed=0):
    return Markov(seed=seed, vocab_size=64, context=16, batch_size=8).batch_at(0)


def grads_of(model, b):
    model.zero_grad(set_to_none=True)
    loss = model.loss(b)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def losses(root):
    df = results.load(root)
    wide = df.pivot_table(index="step", columns="metric", values="value")
    return wide


# ------------------------------------------------------------------------------------------ clip
def test_clip_caps_the_global_norm_exactly_and_leaves_small_gradients_alone():
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(5, 3, generator=g) * 10, torch.randn(7, generator=g)]
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    before = [x.clone() for x in grads]
    mitigations.clip(grads, norm, max_norm=0.5)
    after = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    assert after.item() == pytest.approx(0.5, rel=1e-6)
    for a, b in zip(grads, before):  # the direction is kept
        torch.testing.assert_close(a, b * (0.5 / norm), rtol=1e-6, atol=0)
    small = [x.clone() for x in before]  # inside the ball: bit for bit
    mitigations.clip(small, torch.linalg.vector_norm(torch.stack(torch._foreach_norm(small))), max_norm=1e6)
    assert all(torch.equal(a, b) for a, b in zip(small, before))


def test_clip_in_the_loop_bounds_the_sgd_step(cfg_factory, monkeypatch):
    """SGD without momentum: with clipping at c every step moves θ by exactly η·c in norm."""
    cfg = cfg_factory(*MLP_CFG, "optimizer=sgd", "optimizer.momentum=0.0", "optimizer.lr=0.1", "train.steps=3",
                      "mitigation=[clip]", "mitigation.clip.max_norm=1.0e-3")
    built = train._build(cfg)
    model = built[0]
    before = [p.detach().clone() for p in model.parameters()]
    real_build = train._build
    monkeypatch.setattr(train, "_build", lambda c: built)
    m = train.run(cfg)
    monkeypatch.setattr(train, "_build", real_build)
    assert m["status"] == "done"
    wide = losses(cfg["results_dir"])
    assert (wide["grad_norm"] > 1e-3).all()  # the logged norm is the unclipped one
    moved = torch.linalg.vector_norm(torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before)]))
    assert moved.item() <= 3 * 0.1 * 1e-3 * (1 + 1e-5)


# ---------------------------------------------------------------------------------- embed_shrink
@pytest.mark.parametrize("alpha", [0.25, 0.1])
def test_embed_shrink_keeps_the_forward_pass_and_scales_the_embedding_gradient(alpha):
    plain, shrunk = gpt(), gpt()
    handles = mitigations.embed_shrink(shrunk, alpha=alpha)
    assert len(handles) == 2  # wte and wpe
    b = batch()
    l0, g0 = grads_of(plain, b)
    l1, g1 = grads_of(shrunk, b)
    assert torch.equal(l0, l1)  # forward unchanged, bit for bit
    for name in g0:
        if name in ("wte.weight", "wpe.weight"):
            if alpha == 0.25:  # a power of two: exact
                assert torch.equal(g1[name], alpha * g0[name]), name
            else:
                torch.testing.assert_close(g1[name], alpha * g0[name], rtol=1e-5,
                                           atol=1e-6 * float(g0[name].abs().max()))
        else:
            assert torch.equal(g1[name], g0[name]), name


def test_embed_shrink_on_a_named_layer_and_bad_layer():
    from replicate.models import MLP

    torch.manual_seed(0)
    mlp = MLP(hidden=[8, 8])
    assert len(mitigations.embed_shrink(mlp, alpha=0.5)) == 1  # the first layer: linears.0
    with pytest.raises(ValueError, match="allowed: embedding, block0, block1, head"):
        mitigations.embed_shrink(gpt(), layer="wte")


# -------------------------------------------------------------------------------------- layer_lr
def test_layer_lr_gives_the_embedding_exactly_the_scaled_step():
    model, ref = gpt(), gpt()
    b = batch()
    groups = mitigations.layer_lr(model, [{"params": list(model.parameters())}], 1e-2, scales={"embedding": 0.1})
    assert [len(g["params"]) for g in groups][1] == 2 and groups[1]["lr"] == 1e-2 * 0.1
    opt = TransformOptimizer(groups, "adam", lr=1e-2)
    named = dict(ref.named_parameters())
    emb = [named["wte.weight"], named["wpe.weight"]]
    rest = [p for n, p in ref.named_parameters() if n not in ("wte.weight", "wpe.weight")]
    o_emb, o_rest = make("adam", emb, lr=1e-2 * 0.1), make("adam", rest, lr=1e-2)
    for _ in range(3):
        for m, opts in ((model, [opt]), (ref, [o_emb, o_rest])):
            grads_of(m, b)
            for o in opts:
                o.step()
    for (n, p), q in zip(model.named_parameters(), ref.parameters()):
        assert torch.equal(p, q), n
    # and with SGD the embedding's step is 0.1 × the unscaled one
    a, c = gpt(), gpt()
    sa = TransformOptimizer(mitigations.layer_lr(a, [{"params": list(a.parameters())}], 0.5, scales={"embedding": 0.1}),
                            "sgd", lr=0.5)
    sc = make("sgd", c.parameters(), lr=0.5)
    w0 = a.wte.weight.detach().clone()
    for m, o in ((a, sa), (c, sc)):
        grads_of(m, b)
        o.step()
    # (atol: float32 rounding of θ ~ 0.02 itself, ~2e-9)
    torch.testing.assert_close(a.wte.weight - w0, 0.1 * (c.wte.weight - w0), rtol=1e-5, atol=1e-8)
    assert torch.equal(a.blocks[0].mlp.fc.weight, c.blocks[0].mlp.fc.weight)
    with pytest.raises(ValueError, match="allowed: embedding"):
        mitigations.layer_lr(a, [{"params": list(a.parameters())}], 0.1, scales={"emb": 0.1})


# ---------------------------------------------------------------------------------------- v_init
def test_v_init_sets_v_to_the_mean_squared_gradient_of_k_batches(cfg_factory):
    cfg = cfg_factory(*MLP_CFG, "mitigation=[v_init]", "mitigation.v_init.batches=3")
    model, data, opt, _ = train._build(cfg)
    assert data.pos == 0  # the stream did not move
    torch.manual_seed(cfg["seed"])
    from replicate.models import build_model

    fresh = build_model(cfg["model"])  # the same initial parameters
    sq = {n: torch.zeros_like(p) for n, p in fresh.named_parameters()}
    for i in range(3):
        _, g = grads_of(fresh, data.batch_at(i))
        for n in sq:
            sq[n] += g[n] ** 2 / 3
    for n, p in model.named_parameters():
        st = opt.param_state(p)
        torch.testing.assert_close(st["v"], sq[n], rtol=1e-6, atol=0)
        assert st["m"].eq(0).all() and float(st["count"]) == 0
        assert p.grad is None


def test_v_init_needs_a_second_moment(cfg_factory):
    with pytest.raises(ConfigError, match="mitigation.v_init: .*second moment"):
        train._build(cfg_factory(*MLP_CFG, "optimizer=sgd", "mitigation=[v_init]"))


# --------------------------------------------------------------------------------- beta_schedule
def test_beta_schedule_gives_the_scheduled_betas_and_the_exact_bias_correction():
    b2 = interpolate(0.999, 0.95, 11, "linear")
    at = {1: 0.999, 6: 0.999 + (0.95 - 0.999) * 0.5, 11: 0.95, 30: 0.95}
    for t, want in at.items():
        assert float(b2(torch.tensor(float(t), dtype=torch.float64))) == pytest.approx(want, abs=1e-15)
    cos = interpolate(0.9, 0.0, 11, "cosine")
    assert float(cos(torch.tensor(6.0, dtype=torch.float64))) == pytest.approx(0.45, abs=1e-15)

    p = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
    opt = TransformOptimizer([p], with_beta_schedule("adam", b2=[0.999, 0.95], steps=11), lr=1e-2,
                             b1=0.9, eps=1e-8)
    g = torch.Generator().manual_seed(0)
    m = v = torch.zeros(4, dtype=torch.float64)
    x, p1, p2 = torch.ones(4, dtype=torch.float64), 1.0, 1.0
    for t in range(1, 16):
        grad = torch.randn(4, generator=g, dtype=torch.float64)
        p.grad = grad.clone()
        opt.step()
        beta2 = 0.999 + (0.95 - 0.999) * min((t - 1) / 10, 1.0)
        m = 0.9 * m + 0.1 * grad
        v = beta2 * v + (1 - beta2) * grad**2
        p1, p2 = p1 * 0.9, p2 * beta2
        x = x - 1e-2 * (m / (1 - p1)) / ((v / (1 - p2)).sqrt() + 1e-8)
        st = opt.param_state(p)
        assert float(st["p2"]) == pytest.approx(p2, rel=1e-14)
        torch.testing.assert_close(st["v"], v, rtol=1e-12, atol=0)
        torch.testing.assert_close(p.detach(), x, rtol=1e-12, atol=0)


def test_a_constant_beta_schedule_is_adam():
    """Same algorithm, different rounding (1-Πβ against -expm1(t·log β), lerp against mul-add):
    compared in float64."""
    a, b = gpt().double(), gpt().double()
    oa = make("adamw", a.parameters(), lr=1e-3, b2=0.99)
    ob = TransformOptimizer(b.parameters(), with_beta_schedule("adamw", b2=[0.99, 0.99], steps=5), lr=1e-3, b2=0.99)
    bt = batch()
    for _ in range(5):
        for m, o in ((a, oa), (b, ob)):
            grads_of(m, bt)
            o.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-13)


def test_beta_schedule_compiles_once(dynamo_only):
    import torch._dynamo

    ps = {c: [torch.nn.Parameter(torch.ones(3))] for c in (False, True)}
    opts = {c: TransformOptimizer(ps[c], with_beta_schedule("adam", b1=[0.9, 0.5], b2=[0.95, 0.999], steps=6),
                                  lr=1e-2, compile=c) for c in (False, True)}
    g = torch.Generator().manual_seed(0)

    def step():
        gr = torch.randn(3, generator=g)
        for c in (False, True):
            ps[c][0].grad = gr.clone()
            opts[c].step()

    step()  # compiles
    with torch._dynamo.config.patch(error_on_recompile=True):
        for _ in range(9):  # β1, β2 change every step: no recompile
            step()
    assert not dynamo_only()
    torch.testing.assert_close(ps[True][0], ps[False][0], rtol=1e-6, atol=1e-7)


def test_beta_schedule_only_for_adam_like(cfg_factory):
    with pytest.raises(ConfigError, match="mitigation.beta_schedule.name"):
        train._build(cfg_factory(*MLP_CFG, "optimizer=sgd", "mitigation=[beta_schedule]"))
    with pytest.raises(ConfigError, match="b2"):
        train._build(cfg_factory(*MLP_CFG, "mitigation=[beta_schedule]", "mitigation.beta_schedule.b2=[0.9,1.5]"))


# -------------------------------------------------------------------------------------- rollback
def test_the_online_detector_flags_the_steps_spikes_detect_finds():
    rng = np.random.default_rng(0)
    loss = np.exp(-np.arange(400) / 200) * (1 + 0.1 * rng.random(400))
    loss[[50, 51, 120, 300]] *= [5, 8, 4, 20]
    ep = spikes.detect(loss, window=30, factor=3.0)
    want = {t for s, e in zip(ep["start"], ep["end"]) for t in range(int(s), int(e) + 1)}
    det = spikes.OnlineDetector(window=30, factor=3.0)
    got = {t for t, x in enumerate(loss) if det.observe(float(x))}
    assert got == want == {50, 51, 120, 300}


BAD = 33  # the planted bad batch: its targets are shifted by 100, its loss ~10⁴ × the others


@pytest.fixture
def planted(monkeypatch):
    """Full-batch regression (a smooth loss: no spike of its own) with batch BAD poisoned; records
    every batch index the run draws."""
    drawn: list[int] = []
    real = Regression.batch_at

    def batch_at(self, i):
        drawn.append(int(i))
        x, y = real(self, i)
        return (x, y + 100.0) if i == BAD else (x, y)

    monkeypatch.setattr(Regression, "batch_at", batch_at)
    return drawn


ROLLBACK = ["model=mlp", "data=regression", "data.batch_size=null", "threads=1", "optimizer.lr=3e-3", "train.steps=60", "mitigation=[rollback]",
            "mitigation.rollback.every=5", "mitigation.rollback.back=10", "mitigation.rollback.skip=15",
            "mitigation.rollback.window=20"]


def test_rollback_restores_the_snapshot_and_skips_exactly_m_batches(cfg_factory, planted):
    cfg = cfg_factory(*ROLLBACK)
    assert train.run(cfg)["status"] == "done"
    wide = losses(cfg["results_dir"])
    ev = wide.dropna(subset=["rollback_spike_step"])
    assert len(ev) == 1 and list(wide.index) == list(range(60))
    snap = 20  # the newest snapshot (every 5) at least back=10 steps before the spike at 33
    assert ev.index[0] == snap and ev["rollback_spike_step"].iloc[0] == BAD
    assert ev["rollback_data_pos"].iloc[0] == snap + 15 and ev["rollbacks"].iloc[0] == 1
    assert ev["rollback_spike_loss"].iloc[0] > 3 * ev["rollback_baseline"].iloc[0]
    # batches drawn: 0..33 (the spike), then from 35 = 20 + 15 on: 20..34 are never trained on again
    assert planted[:BAD + 1] == list(range(BAD + 1))
    assert planted[BAD + 1:] == list(range(snap + 15, snap + 15 + 60 - snap))
    assert wide["loss"].max() < 10 * wide["loss"].iloc[:BAD].max()  # the poisoned batch was skipped
    # deterministic: the same run again gives the same series, bit for bit
    again = cfg_factory(*ROLLBACK, results_dir=Path(cfg["results_dir"]).parent / "again")
    train.run(again)
    assert losses(again["results_dir"]).equals(wide)


def test_rollback_replay_restores_the_exact_state(cfg_factory, planted, tmp_path):
    """mode replay, one rollback: the same batches from the restored snapshot; the spike recurs and
    is then left alone, so the loss series equals the run without rollback bit for bit (model,
    optimizer, data and rng restored exactly)."""
    plain = cfg_factory(*ROLLBACK[:-5], results_dir=tmp_path / "plain")
    replay = cfg_factory(*ROLLBACK, "mitigation.rollback.mode=replay", "mitigation.rollback.max_rollbacks=1",
                         results_dir=tmp_path / "replay")
    train.run(plain)
    del planted[:]
    train.run(replay)
    a, b = losses(tmp_path / "plain"), losses(tmp_path / "replay")
    assert b["loss"].equals(a["loss"]) and b["grad_norm"].equals(a["grad_norm"])
    assert b["rollback_spike_step"].dropna().tolist() == [BAD]
    assert planted[BAD + 1:BAD + 1 + 20] == list(range(20, 40))  # the same batches again from step 20


def test_rollback_unit_restore_is_exact():
    model = gpt()
    data = Markov(seed=0, vocab_size=64, context=16, batch_size=8)
    opt = make("adam", model.parameters(), lr=1e-2)
    rb = mitigations.Rollback(every=2, back=2, skip=3, window=10)
    rows: list = []
    for step in range(4):
        rb.snapshot(step, model, opt, data, None, rows)
        grads_of(model, data.next())
        opt.step()
        rows.append({"step": step})
    want = {k: v.clone() for k, v in model.state_dict().items()}
    want_opt = {n: {k: v.clone() for k, v in opt.param_state(p).items()} for n, p in model.named_parameters()}
    rb.snapshot(4, model, opt, data, None, rows)
    for step in range(4, 7):
        grads_of(model, data.next())
        opt.step()
    rb.loss = 99.0
    assert rb.restore(7, model, opt, data, None, rows) == 4 and len(rows) == 4 and data.pos == 4 + 3
    for k, v in model.state_dict().items():
        assert torch.equal(v, want[k]), k
    for n, p in model.named_parameters():
        st = opt.param_state(p)
        assert all(torch.equal(st[k], want_opt[n][k]) for k in st), n
    assert rb.event()["rollback_spike_step"] == 7 and rb.event() == {}


# -------------------------------------------------------------------------------- model options
def test_gpt_options_off_are_the_plain_model():
    a, b = gpt(), gpt(qk_norm=False, z_loss=0.0, scaled_embed=False)
    assert a.state_dict().keys() == b.state_dict().keys()
    bt = batch()
    assert torch.equal(a.loss(bt), b.loss(bt))


def test_z_loss_adds_c_log2_z():
    plain, z = gpt(), gpt(z_loss=1e-2)
    bt = batch()
    logits = plain(bt[:, :-1]).reshape(-1, 64)
    ce = torch.nn.functional.cross_entropy(logits, bt[:, 1:].reshape(-1))
    want = ce + 1e-2 * torch.logsumexp(logits, -1).square().mean()
    assert torch.equal(plain.loss(bt), ce)
    torch.testing.assert_close(z.loss(bt), want, rtol=1e-6, atol=0)
    assert z.loss(bt) > plain.loss(bt)


def test_scaled_embed_scales_the_embedding_by_sqrt_width():
    plain, scaled = gpt(), gpt(scaled_embed=True)
    idx = batch()[:, :-1]
    torch.testing.assert_close(scaled.embed(idx), math.sqrt(32) * plain.embed(idx), rtol=1e-6, atol=0)
    assert not torch.equal(scaled.loss(batch()), plain.loss(batch()))


def test_qk_norm_makes_attention_invariant_to_the_scale_of_q_and_k():
    bt = batch()
    for qk in (False, True):
        a, b = gpt(qk_norm=qk), gpt(qk_norm=qk)
        with torch.no_grad():
            for blk in b.blocks:  # q and k rows of the qkv projection × 7 (weights and biases)
                blk.attn.qkv.weight[:64] *= 7
                blk.attn.qkv.bias[:64] += 0.3  # non-zero bias, scaled with the rest
                blk.attn.qkv.bias[:64] *= 7
                a_blk = a.blocks[list(b.blocks).index(blk)]
                a_blk.attn.qkv.bias[:64] += 0.3
        la, lb = a.loss(bt), b.loss(bt)
        if qk:
            torch.testing.assert_close(la, lb, rtol=1e-4, atol=0)
            names = [n for n, _ in a.named_parameters() if "q_norm" in n or "k_norm" in n]
            assert len(names) == 2 * 2 * 2 and all(n in a.layers()["block0"] + a.layers()["block1"] for n in names)
        else:
            assert abs(la.item() - lb.item()) > 1e-4


# ---------------------------------------------------------------------------------------- presets
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_builds_and_names_its_paper(preset, cfg_factory):
    text = (CONF / "optimizer" / "preset" / f"{preset}.yaml").read_text()
    assert "arXiv" in text.split("defaults:")[0]
    cfg = cfg_factory(*GPT_CFG, f"optimizer=preset/{preset}")
    assert cfg["mitigation"]["clip"]["max_norm"] == 1.0 and cfg["schedule"]["name"] in ("cosine", "linear")
    model, data, opt, _ = train._build(cfg)
    group = opt.param_groups[0]
    assert all(group[k] == cfg["optimizer"][k] for k in ("lr", "b1", "b2", "eps", "weight_decay"))
    with_more = cfg_factory(*GPT_CFG, f"optimizer=preset/{preset}", "mitigation=[embed_shrink]")
    assert set(with_more["mitigation"]) == {"clip", "embed_shrink"}


@pytest.mark.parametrize("preset, want", [
    ("gpt3", dict(name="adamw", b2=0.95, eps=1e-8, schedule="cosine", final_frac=0.1)),
    ("llama2", dict(name="adamw", b2=0.95, eps=1e-5, weight_decay=0.1, schedule="cosine")),
    ("bert", dict(b2=0.999, schedule="linear", final_frac=0.0)),
])
def test_preset_values(preset, want, cfg_factory):
    cfg = cfg_factory(f"optimizer=preset/{preset}")
    for k, v in want.items():
        got = cfg["schedule"]["name" if k == "schedule" else k] if k in ("schedule", "final_frac") else cfg["optimizer"][k]
        assert got == v, k


# --------------------------------------------------------------------------------------- together
ALL = "mitigation=[clip,embed_shrink,layer_lr,v_init,beta_schedule,rollback]"


def test_all_mitigations_compose_with_the_probes_and_are_deterministic(cfg_factory, tmp_path):
    over = [*GPT_CFG, ALL, "probe=layers", "probe.every=5", "train.steps=20", "mitigation.clip.max_norm=0.5",
            "mitigation.v_init.batches=2", "mitigation.rollback.every=5", "mitigation.rollback.window=10",
            "mitigation.rollback.factor=1.01", "mitigation.rollback.back=5", "mitigation.rollback.skip=3",
            "mitigation.rollback.max_rollbacks=2", "data.inject_at=[12]", "data.inject_frac=1.0"]
    a = cfg_factory(*over, results_dir=tmp_path / "a")
    assert set(a["mitigation"]) == {"clip", "embed_shrink", "layer_lr", "v_init", "beta_schedule", "rollback"}
    assert a["mitigation"]["clip"]["max_norm"] == 0.5
    assert train.run(a)["status"] == "done"
    train.run(cfg_factory(*over, results_dir=tmp_path / "b"))
    wa, wb = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert wa.equals(wb) and list(wa.index) == list(range(20))
    assert "r_frac_sign/embedding" in wa and wa["rollbacks"].max() >= 1  # the rare-token batch at 12


def test_a_killed_run_with_rollback_resumes_to_the_identical_result(cfg_factory, planted, monkeypatch, tmp_path):
    over = [*ROLLBACK, "train.checkpoint_every=15"]
    ref = cfg_factory(*over, results_dir=tmp_path / "ref")
    train.run(ref)
    cfg = cfg_factory(*over, results_dir=tmp_path / "killed")
    real_save, saves = results.atomic_torch_save, []

    def save_then_die(obj, path):
        real_save(obj, path)
        saves.append(obj["step"])
        if len(saves) == 3:  # saves at 15, 30; the spike at 33 rolls back to 20; dies at 30 again
            raise KeyboardInterrupt

    monkeypatch.setattr(results, "atomic_torch_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train.run(cfg)
    monkeypatch.setattr(results, "atomic_torch_save", real_save)
    assert train.run(cfg)["status"] == "done"
    assert losses(tmp_path / "killed").equals(losses(tmp_path / "ref"))


@pytest.mark.parametrize("over, match", [
    (["mitigation=[clip]", "+mitigation.clip.norm=1"], "mitigation: clip.norm is not an option"),
    (["mitigation=[clip]", "mitigation.clip.max_norm=0"], "mitigation.clip: max_norm=0"),
    (["mitigation=[layer_lr]", "+mitigation.layer_lr.scales.emb=0.1"], "mitigation.layer_lr: scales"),
    (["mitigation=[rollback]", "mitigation.rollback.mode=jump"], "mitigation.rollback: mode"),
])
def test_bad_mitigation_values_are_one_line_config_errors(over, match, cfg_factory):
    with pytest.raises(ConfigError, match=match) as e:
        train._build(cfg_factory(*MLP_CFG, *over))
    assert "\n" not in str(e.value)


def test_all_mitigations_with_a_compiled_step_match_eager(cfg_factory, tmp_path, dynamo_only):
    """optimizer.compile=true (dynamo, backend "eager", one graph): the same losses as eager."""
    over = [*GPT_CFG, ALL, "train.steps=12", "mitigation.v_init.batches=2", "mitigation.rollback.window=5",
            "mitigation.rollback.every=2", "mitigation.rollback.back=2", "mitigation.rollback.factor=1.01"]
    for c in ("false", "true"):
        train.run(cfg_factory(*over, f"optimizer.compile={c}", results_dir=tmp_path / c))
    a, b = losses(tmp_path / "false"), losses(tmp_path / "true")
    assert list(a.index) == list(b.index) == list(range(12))
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-6)
    assert not dynamo_only()
