"""Models: loss shapes, GPT causality, layer maps, analytic quadratics, builder errors."""
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from replicate.data import build_data
from replicate.models import MODELS, build_model

CONF = Path(__file__).resolve().parents[1] / "conf"


def _gpt(**kw):
    torch.manual_seed(0)
    cfg = {"name": "gpt", "vocab_size": 50, "context": 16, "depth": 2, "width": 32, "heads": 4}
    return build_model({**cfg, **kw})


def _batch(model_name):
    if model_name in ("quadratic", "diag_quadratic"):
        return None
    if model_name == "mlp":
        return torch.randn(8, 1), torch.randn(8, 1)
    return torch.randint(0, 50, (4, 17))


@pytest.mark.parametrize("name,kw", [
    ("quadratic", {}), ("diag_quadratic", {}), ("mlp", {}),
    ("gpt", {"vocab_size": 50, "context": 16, "width": 32}),
])
def test_loss_scalar_finite_and_layers_cover_every_parameter(name, kw):
    torch.manual_seed(0)
    model = build_model({"name": name, **kw})
    loss = model.loss(_batch(name))
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    layers = model.layers()
    listed = [p for ps in layers.values() for p in ps]
    assert len(listed) == len(set(listed))  # exactly once
    assert sorted(listed) == sorted(n for n, _ in model.named_parameters())


def test_layer_names_shallow_first():
    assert list(_gpt(depth=3).layers()) == ["embedding", "block0", "block1", "block2", "head"]
    assert list(build_model({"name": "mlp", "hidden": [8, 8, 8]}).layers()) == [
        "layer0", "layer1", "layer2", "layer3"]
    assert list(build_model({"name": "quadratic"}).layers()) == ["x"]
    assert _gpt().layers()["embedding"] == ["wte.weight", "wpe.weight"]


def test_quadratic_analytic():
    m = build_model({"name": "quadratic", "h": 3.0, "x0": 2.0})
    loss = m.loss(None)
    loss.backward()
    assert loss.item() == pytest.approx(3.0 * 4.0 / 2)
    assert m.x.grad.item() == pytest.approx(3.0 * 2.0)


def test_diag_quadratic_analytic():
    m = build_model({"name": "diag_quadratic", "dim": 5, "h_min": 0.01, "h_max": 100.0, "x0": 0.5})
    h = torch.tensor([0.01, 0.1, 1.0, 10.0, 100.0])
    torch.testing.assert_close(m.h, h)
    loss = m.loss(None)
    loss.backward()
    assert loss.item() == pytest.approx(0.5 * 0.25 * h.sum().item(), rel=1e-5)
    torch.testing.assert_close(m.x.grad, h * 0.5)


def test_mlp_matches_workload_and_mse():
    torch.manual_seed(0)
    m = build_model({"name": "mlp"})
    shapes = [tuple(p.shape) for p in m.parameters()]
    assert shapes == [(64, 1), (64,), (64, 64), (64,), (1, 64), (1,)]
    x, y = torch.randn(10, 1), torch.randn(10, 1)
    assert m.loss((x, y)).item() == pytest.approx(((m(x) - y) ** 2).mean().item())


def test_gpt_causal():
    m = _gpt().eval()
    idx = torch.randint(0, 50, (2, 16))
    idx2 = idx.clone()
    idx2[:, 10] = (idx[:, 10] + 1) % 50
    with torch.no_grad():
        a, b = m(idx), m(idx2)
    assert a.shape == (2, 16, 50)
    torch.testing.assert_close(a[:, :10], b[:, :10], rtol=0, atol=1e-6)
    assert (a[:, 10:] - b[:, 10:]).abs().max() > 1e-4


def test_gpt_init_and_loss_near_log_vocab():
    m = _gpt(depth=4)
    assert m.wte.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert m.blocks[0].attn.proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(8), rel=0.1)
    assert m.blocks[3].mlp.proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(8), rel=0.1)
    assert m.head.bias is None
    loss = m.loss(torch.randint(0, 50, (8, 17)))
    assert loss.item() == pytest.approx(math.log(50), abs=0.05)
    with pytest.raises(ValueError, match="context"):
        m.loss(torch.randint(0, 50, (2, 18)))


def test_models_follow_the_callers_seed():
    torch.manual_seed(1)
    a = build_model({"name": "mlp"})
    torch.manual_seed(1)
    b = build_model({"name": "mlp"})
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_bad_name_and_kwarg():
    with pytest.raises(ValueError, match="gpt"):  # lists the allowed names
        build_model({"name": "transformer"})
    with pytest.raises(ValueError, match="dpeth"):
        build_model({"name": "gpt", "vocab_size": 10, "dpeth": 3})
    with pytest.raises(ValueError, match="activation"):
        build_model({"name": "mlp", "activation": "swish!"})
    assert set(MODELS) == {"quadratic", "diag_quadratic", "noisy_quadratic", "mlp", "modular_mlp", "gpt", "linear"}


@pytest.mark.parametrize("model,data", [("gpt", "markov"), ("gpt", "shakespeare"),
                                        ("mlp", "regression"), ("quadratic", "none"),
                                        ("diag_quadratic", "none")])
def test_configs_compose_and_build(model, data):
    cfg = OmegaConf.create({"seed": 3, "model": OmegaConf.load(CONF / "model" / f"{model}.yaml"),
                            "data": OmegaConf.load(CONF / "data" / f"{data}.yaml")})
    if data == "shakespeare":
        cfg.data.context = 16  # keep the model small; the interpolation follows
    stream = build_data(cfg.data)
    torch.manual_seed(0)
    m = build_model(cfg.model)
    if model == "gpt":
        assert m.vocab_size == stream.vocab_size == 256 and m.context == cfg.data.context
    assert stream.seed == 3
    assert torch.isfinite(m.loss(stream.next()))
