"""The mitigation seam: a toy mitigation at each place, added with one function, one YAML and one
row (its registration), runs through the real training loop, which names no mitigation."""

from __future__ import annotations

import io
import shutil
import tokenize
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from replicate import mitigations, results, train
from replicate.config import ConfigError
from replicate.optim import Transform

ROOT = Path(__file__).resolve().parent.parent
BASE = ["model=mlp", "data=regression", "data.batch_size=16", "threads=1", "train.steps=6", "progress=false"]
SGD = ["optimizer=sgd", "optimizer.momentum=0.0", "optimizer.lr=0.05"]


# --- the toys: one function each, registered at its place -----------------------------------------
def scale_params(model, *, factor: float = 2.0) -> None:
    """model: θ₀ ← factor·θ₀."""
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(factor)


def freeze_layer(model, groups, lr, *, layer: str = "layer2") -> list[dict]:
    """groups: the layer's parameters leave the param groups (never stepped)."""
    frozen = {id(model.get_parameter(n)) for n in model.layers()[layer]}
    return [{**g, "params": [p for p in g["params"] if id(p) not in frozen]} for g in groups]


def _scale(factor):
    def make(lr, schedule=None, **hp):
        return Transform(lambda params: {}, lambda u, state, params=None: (torch._foreach_mul(u, factor), state))
    return make


def half_step(variant, *, factor: float = 0.5):
    """chain: an update-side transform after the variant's own chain: Δθ ← factor·Δθ."""
    return mitigations.after_update(_scale(factor))(variant)


def v_const(model, data, opt, *, value: float = 1.0) -> None:
    """optimizer: v₀ = value before step 0."""
    for p in (p for g in opt.param_groups for p in g["params"]):
        opt.param_state(p)["v"].fill_(value)


def grad_scale(grads, norm, *, factor: float = 0.5) -> None:
    """gradient: g ← factor·g in place."""
    torch._foreach_mul_(grads, factor)


class SkipOdd(mitigations.LoopEvent):
    """loop: skip the update of every odd step; log how many were skipped."""

    def __init__(self, *, every: int = 2):
        if every < 1:
            raise ValueError(f"every={every!r} must be >= 1")
        self.every, self.skipped, self.pending = every, 0, {}

    def skip_update(self, step, loss, grad_norm):
        if step % self.every:
            self.skipped += 1
            self.pending = {"toy_skipped": float(self.skipped)}
            return True
        return False

    def event(self):
        out, self.pending = self.pending, {}
        return out

    def state_dict(self):
        return {"skipped": self.skipped}

    def load_state_dict(self, state):
        self.skipped = state["skipped"]


TOYS = {  # name: (place, function, yaml body)
    "toy_model": ("model", scale_params, "factor: 2.0\n"),
    "toy_groups": ("groups", freeze_layer, "layer: layer2\n"),
    "toy_chain": ("chain", half_step, "factor: 0.5\n"),
    "toy_optimizer": ("optimizer", v_const, "value: 1.0\n"),
    "toy_gradient": ("gradient", grad_scale, "factor: 0.5\n"),
    "toy_loop": ("loop", SkipOdd, "every: 2\n"),
}


@pytest.fixture
def toys(tmp_path, monkeypatch):
    """Register the toys and give a config tree with their YAMLs beside the real ones."""
    monkeypatch.setattr(mitigations, "MITIGATIONS", dict(mitigations.MITIGATIONS))
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)
    for name, (place, fn, body) in TOYS.items():
        mitigations.mitigation(name, place=place)(fn)
        (conf / "mitigation" / f"{name}.yaml").write_text(f"# @package mitigation.{name}\n# a toy\n{body}")

    def cfg(*over, results_dir):
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            c = compose("config", overrides=[*BASE, *(SGD if not any(o.startswith("optimizer=") for o in over) else []),
                                               *over, f"results_dir={results_dir}"])
        return OmegaConf.to_container(c, resolve=True)

    return cfg


def params_after(cfg) -> tuple[list[torch.Tensor], list[torch.Tensor], object]:
    """(initial params, params after cfg's training, the optimizer) through train's real loop."""
    built = train._build(cfg)
    init = [p.detach().clone() for p in built[0].parameters()]
    real = train._build
    try:
        train._build = lambda c: built
        assert train.run(cfg)["status"] == "done"
    finally:
        train._build = real
    return init, [p.detach().clone() for p in built[0].parameters()], built[2]


def test_every_place_has_a_toy():
    assert {place for place, _, _ in TOYS.values()} == set(mitigations.PLACES)


def test_a_toy_at_the_model(toys, tmp_path):
    init, _, _ = params_after(toys(results_dir=tmp_path / "plain"))
    got, _, _ = params_after(toys("mitigation=[toy_model]", results_dir=tmp_path / "toy"))
    for a, b in zip(got, init):
        torch.testing.assert_close(a, 2.0 * b, rtol=0, atol=0)


def test_a_toy_at_the_param_groups(toys, tmp_path):
    cfg = toys("mitigation=[toy_groups]", results_dir=tmp_path / "toy")
    init, after, _ = params_after(cfg)
    model = train._build(cfg)[0]
    frozen = {i for i, (n, _) in enumerate(model.named_parameters()) if n in model.layers()["layer2"]}
    assert frozen
    for i, (a, b) in enumerate(zip(after, init)):
        assert torch.equal(a, b) == (i in frozen), i  # only the frozen layer is unchanged


def _steps(init, after):
    return [a - b for a, b in zip(after, init)]


def test_a_toy_in_the_chain_and_at_the_gradient(toys, tmp_path):
    """SGD without momentum, one step: halving Δθ (chain) or g (gradient) halves the plain step."""
    one = ["train.steps=1"]
    plain = _steps(*params_after(toys(*one, results_dir=tmp_path / "plain"))[:2])
    for name in ("toy_chain", "toy_gradient"):
        got = _steps(*params_after(toys(*one, f"mitigation=[{name}]", results_dir=tmp_path / name))[:2])
        for a, b in zip(got, plain):
            torch.testing.assert_close(a, 0.5 * b, rtol=1e-5, atol=1e-7)  # θ - θ₀ in float32


def test_a_toy_at_the_optimizer_state(toys, tmp_path):
    cfg = toys("optimizer=adam", "mitigation=[toy_optimizer]", results_dir=tmp_path / "toy")
    model, _, opt, _ = train._build(cfg)
    assert all(bool((opt.param_state(p)["v"] == 1.0).all()) for p in model.parameters())


def test_a_toy_loop_event_skips_updates_logs_and_checkpoints(toys, tmp_path):
    cfg = toys("optimizer=adam", "mitigation=[toy_loop]", "train.checkpoint_every=2",
               "train.keep_checkpoint=true", results_dir=tmp_path / "toy")
    _, _, opt = params_after(cfg)
    assert float(opt.param_state(next(iter(opt.param_groups[0]["params"])))["count"]) == 3  # steps 0, 2, 4
    df = results.load(tmp_path / "toy")
    assert df[df["metric"] == "toy_skipped"]["value"].max() == 3
    ck = torch.load(next((tmp_path / "toy").rglob("checkpoint.pt")), weights_only=False)
    assert ck["loop"] == {"toy_loop": {"skipped": 2}}  # saved at step 4, after steps 1 and 3


@pytest.mark.parametrize("over, match", [
    (["mitigation=[toy_gradient]", "+mitigation.toy_gradient.scale=1"],
     "mitigation: toy_gradient.scale is not an option; allowed: factor"),
    (["mitigation=[toy_loop]", "mitigation.toy_loop.every=0"], "mitigation.toy_loop: every=0"),
    (["mitigation=[toy_groups]", "mitigation.toy_groups.layer=neck"], "mitigation.toy_groups: 'neck'"),
])
def test_a_toys_bad_option_is_one_line_naming_it(toys, tmp_path, over, match):
    with pytest.raises(ConfigError, match=match) as e:
        train._build(toys(*over, results_dir=tmp_path / "bad"))
    assert "\n" not in str(e.value)


def test_the_loop_names_no_mitigation():
    """train.py's code (comments and strings aside) mentions no registered mitigation."""
    src = (ROOT / "replicate" / "train.py").read_text()
    names = {t.string for t in tokenize.generate_tokens(io.StringIO(src).readline) if t.type == tokenize.NAME}
    assert not names & set(mitigations.MITIGATIONS), names & set(mitigations.MITIGATIONS)


def test_every_mitigation_has_a_yaml_naming_exactly_its_options():
    for name, m in mitigations.MITIGATIONS.items():
        body = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "mitigation" / f"{name}.yaml"))
        assert set(body) == set(m.options()), name


def test_the_toys_together_with_a_compiled_step_match_eager(toys, tmp_path, dynamo_only):
    """Every toy at once, optimizer.compile=true (dynamo, one graph): the same losses as eager."""
    over = ["optimizer=adam", "mitigation=[toy_model,toy_groups,toy_chain,toy_optimizer,toy_gradient,toy_loop]"]
    for c in ("false", "true"):
        assert train.run(toys(*over, f"optimizer.compile={c}", results_dir=tmp_path / c))["status"] == "done"
    a, b = (results.load(tmp_path / c) for c in ("false", "true"))
    la, lb = (d[d["metric"] == "loss"].sort_values("step")["value"].to_numpy() for d in (a, b))
    assert len(la) == 6
    torch.testing.assert_close(torch.tensor(lb), torch.tensor(la), rtol=1e-6, atol=0)
    assert not dynamo_only()
