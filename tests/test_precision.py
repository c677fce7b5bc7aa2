"""Mixed precision in the training loop (replicate/precision.py): bf16/fp16 autocast, fp16 loss
scaling with the modelled fp16 gradient storage (underflow below 2^-25, overflow above 65504),
skipped steps, clip on unscaled gradients, the scaler's state across a resume, bad values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from replicate import results, train
from replicate.config import ConfigError
from replicate.precision import Precision

MLP = ["model=mlp", "data=regression", "train.steps=80", "threads=1"]
# gradient h_i at the start (x = 1), h log-spaced over 8 decades: a known spread of gradient sizes
PLANTED = ["model=diag_quadratic", "data=none", "model.dim=1000", "model.h_min=1.0e-8", "model.h_max=1.0",
           "optimizer.lr=1.0e-3", "train.steps=3", "probe=layers", "probe.every=1", "probe.dip=false", "threads=1"]
HALF_TINY = 2.0**-25  # fp16 rounds |x| <= 2^-25 to 0 (half the smallest subnormal, 2^-24)


def series(root, metric):
    df = results.load(root, metrics=[metric])
    return df.sort_values("step")["value"].to_numpy()


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_bf16_and_fp16_runs_train_and_autocast_is_in_effect(cfg_factory, tmp_path, precision):
    ref = cfg_factory(*MLP, results_dir=tmp_path / "fp32")
    cfg = cfg_factory(*MLP, f"train.precision={precision}", results_dir=tmp_path / precision)
    assert train.run(ref)["status"] == "done" and train.run(cfg)["status"] == "done"
    lo, lo32 = series(cfg["results_dir"], "loss"), series(ref["results_dir"], "loss")
    assert len(lo) == 80 and np.all(np.isfinite(lo)) and lo[-1] < 0.5 * lo[0]
    assert not np.array_equal(lo, lo32)  # the forward pass really ran in low precision
    np.testing.assert_allclose(lo, lo32, rtol=0.2)  # ... and trained like fp32
    if precision == "fp16":
        assert set(series(cfg["results_dir"], "loss_scale")) == {2.0**16}  # GradScaler's default start
        assert series(cfg["results_dir"], "step_skipped").sum() == 0
    else:
        assert "loss_scale" not in set(results.load(cfg["results_dir"])["metric"])


@pytest.mark.parametrize("scale", [2.0**-16, 1.0])
def test_a_too_small_fixed_loss_scale_zeroes_the_small_gradients_and_a_dynamic_one_does_not(cfg_factory, tmp_path,
                                                                                          scale):
    h = torch.logspace(-8, 0, 1000).numpy()
    expected = float(np.mean(h * scale <= HALF_TINY))  # the coordinates whose g*s underflows in fp16
    assert expected > 0.05
    zero = {}
    for arm, over in {"fixed": [f"train.loss_scale={scale}"], "dynamic": [], "fp32": None}.items():
        prec = ["train.precision=fp32"] if over is None else ["train.precision=fp16", *over]
        cfg = cfg_factory(*PLANTED, *prec, results_dir=tmp_path / arm)
        train.run(cfg)
        zero[arm] = series(cfg["results_dir"], "frac_g_zero/x")[0]  # step 0: g = h exactly
    assert zero["fixed"] == pytest.approx(expected, abs=2e-3)
    assert zero["dynamic"] == 0.0 and zero["fp32"] == 0.0


def test_an_fp16_overflow_skips_the_step_and_the_dynamic_scale_backs_off(cfg_factory, tmp_path):
    # f = x^2/2 at x = 1000: g = 1000, g * 2^16 > 65504 overflows fp16 until s <= 2^6 (ten halvings)
    quad = ["model=quadratic", "data=none", "model.x0=1000.0", "optimizer.lr=0.1", "train.steps=20", "threads=1"]
    cfg = cfg_factory(*quad, "train.precision=fp16", results_dir=tmp_path / "dyn")
    train.run(cfg)
    skipped, scale, loss = (series(cfg["results_dir"], m) for m in ("step_skipped", "loss_scale", "loss"))
    assert list(skipped[:10]) == [1.0] * 10 and skipped[10:].sum() == 0
    assert list(scale[:11]) == [2.0**(16 - k) for k in range(11)] and scale[-1] == 2.0**6
    assert np.all(loss[:11] == loss[0]) and loss[11] < loss[10]  # no step until the scale fits
    fixed = cfg_factory(*quad, "train.precision=fp16", "train.loss_scale=65536.0", results_dir=tmp_path / "fix")
    train.run(fixed)
    assert series(fixed["results_dir"], "step_skipped").sum() == 20  # a fixed scale never backs off
    assert np.all(series(fixed["results_dir"], "loss") == loss[0])


def test_clip_and_the_logged_grad_norm_see_unscaled_gradients(cfg_factory, tmp_path):
    norms = {}
    for arm, over in {"fp32": [], "fp16": ["train.precision=fp16", "train.loss_scale=0.00390625"]}.items():
        cfg = cfg_factory(*MLP, "train.steps=5", "mitigation=[clip]", "mitigation.clip.max_norm=0.01", *over,
                          results_dir=tmp_path / arm)
        train.run(cfg)
        norms[arm] = series(cfg["results_dir"], "grad_norm")
        norms[arm + "_loss"] = series(cfg["results_dir"], "loss")
    np.testing.assert_allclose(norms["fp16"], norms["fp32"], rtol=0.05)  # not 1/256 of it
    assert norms["fp32"][0] > 0.01  # clip was active: the same clipped steps give the same losses
    np.testing.assert_allclose(norms["fp16_loss"], norms["fp32_loss"], rtol=0.05)


def test_a_killed_fp16_run_resumes_with_its_loss_scale(tmp_path, cfg_factory, monkeypatch):
    # the scale falls from 2^16 to 2^6 over the first 10 steps; a resume that forgot it would start at 2^16 again
    over = ["model=quadratic", "data=none", "model.x0=1000.0", "optimizer.lr=0.1", "train.steps=30",
            "train.checkpoint_every=12", "train.precision=fp16", "threads=1"]
    ref = train.run(cfg_factory(*over, results_dir=tmp_path / "ref"))
    cfg = cfg_factory(*over)
    real_save = results.atomic_torch_save

    def save_then_die(obj, path):
        real_save(obj, path)
        raise KeyboardInterrupt

    monkeypatch.setattr(results, "atomic_torch_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train.run(cfg)
    ck = torch.load(results.run_dir(cfg["results_dir"], cfg) / "checkpoint.pt", weights_only=False)
    assert ck["step"] == 12 and ck["precision"]["scale"] == 2.0**6
    monkeypatch.setattr(results, "atomic_torch_save", real_save)
    resumed = train.run(cfg)
    assert resumed["status"] == "done" and resumed["resumes"] == 1
    a = results.load(tmp_path / "ref").pivot_table(index="step", columns="metric", values="value")
    b = results.load(cfg["results_dir"]).pivot_table(index="step", columns="metric", values="value")
    assert a.equals(b) and ref["run_id"] == resumed["run_id"]


def test_precision_object_is_plain_for_fp32():
    p = Precision("fp32", 2.0**-16)
    assert not p.fp16 and p.scale() == 1.0 and p.finite(torch.tensor(float("inf")))
    assert p.state_dict() == {}


@pytest.mark.parametrize("override, key", [
    ("train.precision=fp8", "train.precision"), ("train.loss_scale=0.0", "train.loss_scale"),
    ("train.loss_scale=-1.0", "train.loss_scale"), ("train.loss_scale=auto", "train.loss_scale"),
])
def test_a_bad_precision_value_is_one_line(cfg_factory, override, key):
    with pytest.raises(ConfigError) as err:
        train.run(cfg_factory(*MLP, override))
    assert str(err.value).startswith(f"{key}=") and "\n" not in str(err.value)
