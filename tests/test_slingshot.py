"""The Slingshot's components (T1, T2): the modular-arithmetic stream, its MLP in float32 and float64,
the model's own probe (zero-gradient fraction, margins, classifier mean) on hand-made cases, and the
probe protocol (``model.probe`` every ``probe.model_every`` steps) through the real loop."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from replicate import results, train
from replicate.config import ConfigError, validate
from replicate.data import Modular, build_data
from replicate.models import ModularMLP, build_model

TINY = ["model=modular_mlp", "data=modular", "data.p=7", "model.p=7", "train.steps=50", "threads=1"]


# ------------------------------------------------------------------------------------------ stream
def test_the_split_halves_the_pairs_disjointly_and_labels_are_the_sum_mod_p():
    s = Modular(seed=0, p=23)
    (x, y), (xv, yv) = s.batch_at(0), s.val_batch()
    assert x.shape == (264, 2) and y.shape == (264,) and xv.shape == (265, 2) and yv.shape == (265,)
    assert x.dtype == y.dtype == torch.long
    assert torch.equal(y, (x[:, 0] + x[:, 1]) % 23) and torch.equal(yv, (xv[:, 0] + xv[:, 1]) % 23)
    pairs = {tuple(r) for r in torch.cat([x, xv]).tolist()}
    assert len(pairs) == 529 and pairs == {(a, b) for a in range(23) for b in range(23)}
    assert s.vocab_size == 23


def test_the_full_batch_is_the_same_tensors_every_step_and_the_split_follows_the_seed():
    s = Modular(seed=3, p=11)
    a, b = s.batch_at(0), s.next()
    assert a[0] is b[0] and a[1] is b[1] and s.batch_at(12345)[0] is a[0]
    again = build_data({"name": "modular", "seed": 3, "p": 11})
    assert torch.equal(again.batch_at(0)[0], a[0]) and torch.equal(again.val_batch()[1], s.val_batch()[1])
    other = Modular(seed=4, p=11).batch_at(0)[0]
    assert not torch.equal(other, a[0])
    torch.manual_seed(0)
    first = Modular(seed=3, p=11).batch_at(0)[0]
    torch.manual_seed(99)  # the split never reads the global RNG
    assert torch.equal(Modular(seed=3, p=11).batch_at(0)[0], first)


@pytest.mark.parametrize("op, f", [("sub", lambda a, b: a - b), ("mul", lambda a, b: a * b)])
def test_other_ops(op, f):
    x, y = Modular(seed=0, p=7, op=op, train_frac=0.3).batch_at(0)
    assert len(y) == int(0.3 * 49) and torch.equal(y, f(x[:, 0], x[:, 1]) % 7)


# ------------------------------------------------------------------------------------------- model
def test_shapes_layers_and_the_architecture():
    torch.manual_seed(0)
    m = ModularMLP(p=7, emb=4, hidden=5)
    x, y = Modular(seed=0, p=7).batch_at(0)
    assert m(x).shape == (len(y), 7)
    assert m.embedding.weight.shape == (7, 4) and m.hidden.weight.shape == (5, 8) and m.head.weight.shape == (7, 5)
    names = [n for ps in m.layers().values() for n in ps]
    assert list(m.layers()) == ["embedding", "hidden", "head"]
    assert sorted(names) == sorted(n for n, _ in m.named_parameters()) and len(names) == len(set(names))
    # the two operands share one table: logits = head(relu(hidden([E[a], E[b]])))
    h = torch.cat([m.embedding.weight[x[:, 0]], m.embedding.weight[x[:, 1]]], dim=1)
    assert torch.allclose(m(x), m.head(torch.relu(m.hidden(h))))
    assert m.loss((x, y)).item() == pytest.approx(torch.nn.functional.cross_entropy(m(x), y).item())


def test_float64_end_to_end_from_the_same_start():
    torch.manual_seed(1)
    m32 = ModularMLP(p=7, dtype="float32")
    torch.manual_seed(1)
    m64 = build_model({"name": "modular_mlp", "p": 7, "dtype": "float64"})
    for (n, a), (_, b) in zip(m32.named_parameters(), m64.named_parameters()):
        assert b.dtype == torch.float64 and torch.equal(a.double(), b), n
    batch = Modular(seed=0, p=7).batch_at(0)
    assert m64(batch[0]).dtype == torch.float64
    loss = m64.loss(batch)
    loss.backward()
    assert loss.dtype == torch.float64 and all(p.grad.dtype == torch.float64 for p in m64.parameters())


# ------------------------------------------------------------------------------------------ probe
def _with_logits(dtype: str, z: list[list[float]]) -> ModularMLP:
    m = ModularMLP(p=3, emb=1, hidden=2, dtype=dtype)
    fixed = torch.tensor(z, dtype=m.dtype)
    m.forward = lambda x: fixed  # the probe reads the logits through self(x)
    with torch.no_grad():
        m.head.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
    return m


def test_probe_values_by_hand_absorbed_in_float32_not_in_float64():
    # row 0: p_y = 1 / (1 + 2 e^-20) = 1 - 4.1e-9: exactly 1 in float32 (below half an ulp), not in float64
    z = [[20.0, 0.0, 0.0], [0.0, 5.0, 0.0]]
    batch = (torch.zeros(2, 2, dtype=torch.long), torch.tensor([0, 1]))
    p32, p64 = _with_logits("float32", z).probe(batch), _with_logits("float64", z).probe(batch)
    assert p32["zero_grad_frac"] == 0.5 and p64["zero_grad_frac"] == 0.0
    for p in (p32, p64):
        assert p["margin"] == pytest.approx(12.5) and p["margin_min"] == pytest.approx(5.0)
        assert p["mean_row_norm"] == pytest.approx(5.0)  # mean row (3, 4)
        assert p["head_norm"] == pytest.approx(math.sqrt(91))
    assert set(p32) == {"zero_grad_frac", "margin", "margin_min", "mean_row_norm", "head_norm"}


def test_a_negative_margin_when_the_correct_class_is_not_the_largest():
    batch = (torch.zeros(1, 2, dtype=torch.long), torch.tensor([2]))
    p = _with_logits("float64", [[1.0, 3.0, 0.5]]).probe(batch)
    assert p["margin"] == pytest.approx(-2.5) and p["margin_min"] == pytest.approx(-2.5)


# ------------------------------------------------------------------------------- through the loop
def _metrics(root, name):
    df = results.load(root)
    return df[df.metric == name].sort_values("step")


def test_the_loop_logs_the_models_probe_every_model_every_steps_without_changing_training(cfg_factory, tmp_path):
    on = cfg_factory(*TINY, "probe=layers", "probe.every=25", "probe.model_every=5", results_dir=tmp_path / "on")
    train.run(on)
    train.run(cfg_factory(*TINY, results_dir=tmp_path / "off"))
    for name in ("zero_grad_frac", "margin", "margin_min", "mean_row_norm", "head_norm"):
        assert _metrics(tmp_path / "on", name).step.tolist() == list(range(0, 50, 5)), name
    assert _metrics(tmp_path / "on", "r_std/head").step.tolist() == [0, 25]
    assert _metrics(tmp_path / "on", "loss").value.tolist() == _metrics(tmp_path / "off", "loss").value.tolist()
    # step 0's probe reads the parameters of step 0's loss (before the update): the initial head
    torch.manual_seed(0)
    init = ModularMLP(p=7).requires_grad_(False)
    assert _metrics(tmp_path / "on", "head_norm").value.iloc[0] == pytest.approx(float(init.head.weight.norm()))
    assert _metrics(tmp_path / "on", "mean_row_norm").value.iloc[0] == pytest.approx(
        float(init.head.weight.mean(0).norm()))


def test_model_every_defaults_to_every_and_runs_alone(cfg_factory, tmp_path):
    train.run(cfg_factory(*TINY, "probe=layers", "probe.every=20", results_dir=tmp_path / "a"))
    assert _metrics(tmp_path / "a", "zero_grad_frac").step.tolist() == [0, 20, 40]
    train.run(cfg_factory(*TINY, "probe.model_every=10", results_dir=tmp_path / "b"))  # probe=none: every 0
    df = results.load(tmp_path / "b")
    assert _metrics(tmp_path / "b", "margin").step.tolist() == [0, 10, 20, 30, 40]
    assert not any("/" in m for m in df.metric.unique())  # no per-layer probes


def test_the_loop_names_no_model():
    src = inspect.getsource(train)
    assert "ModularMLP" not in src and "zero_grad_frac" not in src and "modular" not in src


@pytest.mark.parametrize("over, match", [
    (["data.train_frac=1.5"], "data: train_frac must be a number in \\(0, 1\\)"),
    (["data.op=div"], "data: unknown op 'div'"),
    (["model.dtype=float16"], "model: dtype must be float32 or float64"),
    (["+model.width=3"], "model: model 'modular_mlp' got an unknown option 'width'"),
])
def test_a_bad_option_is_one_line(over, match, cfg_factory):
    with pytest.raises(ConfigError, match=match) as e:
        train._build(cfg_factory(*TINY, *over))
    assert "\n" not in str(e.value)


def test_a_bad_model_every_is_one_line(cfg_factory):
    with pytest.raises(ConfigError, match="probe.model_every=-1 is not allowed") as e:
        validate(cfg_factory(*TINY, "probe.model_every=-1"))
    assert "\n" not in str(e.value)
