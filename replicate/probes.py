"""Probes: what Adam does inside each layer while it trains. They read, never change, training.

Every ``probe.every`` steps, per layer (``model.layers()``: embedding, each block, head), with
m̂ = m/(1-β1^t), v̂ = v/(1-β2^t) read from the optimizer after its step (Molybog et al. 2023,
arXiv 2304.09871; Wortsman et al. 2023, arXiv 2304.13013; Bai et al. 2025, arXiv 2506.04805):

- update distribution: r = m̂/√v̂ (ε = 0) and u = m̂/(√v̂+ε); ``r_frac_sign`` fraction |r| > 0.9,
  ``r_std`` (√((1-β1)/(1+β1)) for gradients independent over time), ``r_abs_mean`` mean |r|,
  ``r_bc`` bimodality coefficient (b = (γ²+1)/(κ + 3(n-1)²/((n-2)(n-3))), > 5/9 suggests two modes),
  ``r_dip``/``r_dip_p`` Hartigan's dip test on a seeded subsample (float64; needs ``diptest``),
  and fixed-bin histograms of r and u (``histograms.parquet`` beside the metrics);
- stalling: ``frac_g_below_eps`` (|g| < ε), ``frac_g_zero`` (g exactly 0: rows no token used, fp16
  underflow, see replicate/precision.py), ``frac_sqrtv_below_eps`` (√v̂ < ε), ``u_over_r``
  (‖u‖/‖r‖), ``eps_damping`` mean √v̂/(√v̂+ε) (1 where ε is negligible, → 0 where √v̂ ≪ ε),
  ``sqrtv_rms`` = √mean(v̂), the scale ε is compared with (ε/``sqrtv_rms`` ≈ 1 where ‖u‖/‖r‖ ≈ ½),
  ``grad_norm``/``grad_rms``, ``update_norm``/``update_rms`` (the parameter change this step),
  ``update_cos_neg_grad`` = cos(Δθ, -g) = -Δθ·g/(‖Δθ‖‖g‖), how much of this step's update points
  down this step's gradient (1 for gradient descent; Molybog et al.'s "update unrelated to descent"
  is a value near 0),
  ``param_norm``/``param_rms``, ``rms_g2_over_v`` = √mean(g²/max(v̂, ε²)) with v̂ *before* this
  step's gradient (StableAdamW's RMS_t), ``frac_v_decaying`` (g² < 0.1·v̂ before the step:
  coordinates whose v decays like β2^t);
- time correlation: ``grad_autocorr``, the uncentred lag-1 autocorrelation of a fixed, seeded
  subsample of gradient coordinates, Σ g_t·g_{t-1} / √(Σ g_t² · Σ g_{t-1}²), pooled over the steps
  since the previous probe (1 for a constant gradient, about 0 for independent ones, SNR²/(1+SNR²)
  for signal plus noise);
- curvature every ``probe.hessian_every`` steps on a fixed probe batch (``replicate.hessian``):
  ``lambda_max_H``, ``lambda_max_Hhat``, ``lambda_grad_Hhat`` beside ``threshold_2_over_lr`` = 2/η and
  ``threshold_momentum`` = 2(1+β1)/((1-β1)η), Adam's stability limit with momentum.

The model's own probe: a model MAY define ``probe(batch) -> dict[str, float]`` (replicate/models.py).
Every ``probe.model_every`` steps (default: ``probe.every``; 0 turns it off) the probes call it on
``train_batch``, the first training batch (``data.batch_at(0)``: the whole training set for a
full-batch stream), under ``no_grad`` after ``backward()`` and before the optimizer's step, so its
metrics describe the same parameters as the step's logged loss; they are logged under the names it
returns (whole-model, plain). The loop names no model: ``ModularMLP`` (the Slingshot) gives
``zero_grad_frac``, ``margin``, ``margin_min``, ``mean_row_norm``, ``head_norm``. With
``probe.every`` = 0 and ``probe.model_every`` > 0 only the model's probe runs. ``probe.start`` (default
0): no probe of any kind before that step (a workload whose events all come late pays only for them).

Metric names are ``<metric>/<layer>``, whole-model ones plain. An optimizer without a per-coordinate
second moment (SGD, Lion, Adafactor) gets only the metrics that apply; ``notes`` says which not.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch

from .hessian import curvature, thresholds

NEEDS_V = ("r_frac_sign", "r_bc", "r_dip", "r_dip_p", "u_over_r", "frac_sqrtv_below_eps", "rms_g2_over_v",
           "frac_v_decaying", "lambda_max_Hhat", "lambda_grad_Hhat", "histograms of r and u")

try:  # optional: Hartigan's dip test (GPL-2.0+), `pip install diptest`
    import diptest as _diptest
except ImportError:  # pragma: no cover - depends on the environment
    _diptest = None


def bimodality_coefficient(x: torch.Tensor) -> float:
    """Sarle's bimodality coefficient of a sample (float64); NaN for n < 4 or zero variance."""
    x = x.double().flatten()
    n = x.numel()
    if n < 4:
        return float("nan")
    d = x - x.mean()
    m2 = d.pow(2).mean()
    if m2 <= 0:
        return float("nan")
    g = d.pow(3).mean() / m2**1.5
    k = d.pow(4).mean() / m2**2 - 3
    return float((g**2 + 1) / (k + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3))))


def dip(x: torch.Tensor, n: int, seed: int) -> tuple[float, float]:
    """Hartigan's dip statistic and p-value on a seeded subsample of at most n values (float64)."""
    if _diptest is None or x.numel() < 4:
        return float("nan"), float("nan")
    x = x.flatten()
    if x.numel() > n:
        idx = torch.randperm(x.numel(), generator=torch.Generator().manual_seed(seed))[:n]
        x = x[idx.to(x.device)]
    d, p = _diptest.diptest(x.double().cpu().numpy())
    return float(d), float(p)


class Probes:
    """Per-layer statistics of an optimizer with m and v. Call ``before_step(step)`` after
    ``backward()`` and ``after_step(step)`` after ``opt.step()``; the latter returns the metrics."""

    def __init__(self, model: torch.nn.Module, opt: torch.optim.Optimizer, cfg: Mapping[str, Any],
                 seed: int, probe_batch: Any = None, train_batch: Any = None):
        self.model, self.opt, self.seed = model, opt, seed
        self.every = int(cfg.get("every", 0))
        self.start = int(cfg.get("start") or 0)  # no probe (of any kind) before this step
        me = cfg.get("model_every")
        self.model_every = self.every if me is None else int(me)
        self._model_probe = getattr(model, "probe", None) if self.model_every > 0 else None
        self.train_batch = train_batch if train_batch is not None else probe_batch
        self._model_out: dict[str, float] = {}
        self.hessian_every = int(cfg.get("hessian_every", 0))
        self.hessian_iters = int(cfg.get("hessian_iters", 20))
        self.bins, self.range = int(cfg.get("bins", 64)), float(cfg.get("range", 1.25))
        self.dip_samples = int(cfg.get("dip_samples", 50_000)) if cfg.get("dip", True) else 0
        n_auto = int(cfg.get("autocorr_samples", 4096))
        self.probe_batch = probe_batch
        named = dict(model.named_parameters())
        self.layers = {layer: [named[n] for n in names if named[n].requires_grad]
                       for layer, names in model.layers().items()}
        self.hparams = {p: g for g in opt.param_groups for p in g["params"]}
        gen = torch.Generator().manual_seed(seed + 7919)  # probes never touch the global RNG
        self.sub = {layer: torch.randperm(sum(p.numel() for p in ps), generator=gen)[:n_auto].to(ps[0].device)
                    for layer, ps in self.layers.items()}
        self.has_v = "v" in self._state(next(iter(self.hparams)))
        self.notes = "" if self.has_v else (f"{type(opt).__name__} has no per-coordinate second moment v: "
                                            f"not computed: {', '.join(NEEDS_V)}")
        self.histograms: list[dict] = []
        self._auto = {layer: {"prev": None, "xy": 0.0, "xx": 0.0, "yy": 0.0} for layer in self.layers}
        self._pre: dict[str, float] = {}
        self._before: dict[str, list[torch.Tensor]] = {}
        self._grads: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------------------ schedule
    def due(self, step: int) -> bool:
        return self.every > 0 and step >= self.start and step % self.every == 0

    def model_due(self, step: int) -> bool:
        return self._model_probe is not None and step >= self.start and step % self.model_every == 0

    def _state(self, p: torch.Tensor) -> dict:
        get = getattr(self.opt, "param_state", None)
        return get(p) if get is not None else self.opt.state.get(p, {})

    def _moments(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float] | None:
        """(m̂, v̂, ε) of p after the step, or None without a v."""
        s, g = self._state(p), self.hparams[p]
        if "v" not in s or "m" not in s:
            return None
        t = float(s["count"])
        b1, b2 = g.get("b1", 0.9), g.get("b2", 0.999)
        return s["m"] / (1 - b1**t), s["v"] / (1 - b2**t), float(g.get("eps", 0.0))

    # ------------------------------------------------------------------------------ hooks
    @torch.no_grad()
    def before_step(self, step: int) -> None:
        """Every step: the autocorrelation sums. At probe steps: the statistics that need g and v
        from before the optimizer's step, and a copy of the parameters for the update norm. At
        model-probe steps: the model's own ``probe(train_batch)``, on this step's parameters."""
        if self.model_due(step):
            self._model_out = {k: float(v) for k, v in self._model_probe(self.train_batch).items()}
        if self.every <= 0:
            return
        for layer, ps in self.layers.items():
            grads = [p.grad for p in ps if p.grad is not None]
            if len(grads) != len(ps):
                continue
            g = torch.cat([x.flatten() for x in grads])[self.sub[layer]].double()
            a = self._auto[layer]  # sums stay tensors: no device sync on the steps between probes
            if a["prev"] is not None:
                a["xy"] = a["xy"] + g @ a["prev"]
                a["xx"] = a["xx"] + g @ g
                a["yy"] = a["yy"] + a["prev"] @ a["prev"]
            a["prev"] = g
        if not self.due(step):
            return
        self._pre, self._grads = {}, {}
        self._before = {layer: [p.detach().clone() for p in ps] for layer, ps in self.layers.items()}
        for layer, ps in self.layers.items():
            if any(p.grad is None for p in ps):
                continue
            g = torch.cat([p.grad.flatten() for p in ps]).double()
            self._grads[layer] = g
            self._pre[f"grad_norm/{layer}"] = float(g.norm())
            self._pre[f"grad_rms/{layer}"] = float(g.pow(2).mean().sqrt())
            eps = [float(self.hparams[p].get("eps", float("nan"))) for p in ps]
            if not math.isnan(eps[0]):
                self._pre[f"frac_g_below_eps/{layer}"] = float((g.abs() < eps[0]).double().mean())
            self._pre[f"frac_g_zero/{layer}"] = float((g == 0).double().mean())
            if not self.has_v:
                continue
            vs, ok = [], True
            for p in ps:
                s, hp = self._state(p), self.hparams[p]
                t = float(s["count"])
                if t < 1:  # no v before the first step
                    ok = False
                    break
                vs.append((s["v"] / (1 - hp.get("b2", 0.999) ** t)).flatten())
            if ok:
                v = torch.cat(vs).double()
                self._pre[f"rms_g2_over_v/{layer}"] = float((g.pow(2) / v.clamp_min(eps[0] ** 2)).mean().sqrt())
                self._pre[f"frac_v_decaying/{layer}"] = float((g.pow(2) < 0.1 * v).double().mean())

    @torch.no_grad()
    def after_step(self, step: int) -> dict[str, float]:
        """The metrics of this probe step (empty when it is not one)."""
        own, self._model_out = self._model_out, {}
        if not self.due(step):
            return own
        out = {**self._pre, **own}
        for layer, ps in self.layers.items():
            a = self._auto[layer]
            xx, yy = float(a["xx"]), float(a["yy"])
            denom = math.sqrt(xx) * math.sqrt(yy)  # not sqrt(xx * yy): that underflows to 0 for float64 ~1e-160
            if denom > 0:
                out[f"grad_autocorr/{layer}"] = float(a["xy"]) / denom
            a.update(xy=0.0, xx=0.0, yy=0.0)
            theta = torch.cat([p.detach().flatten() for p in ps]).double()
            delta = theta - torch.cat([b.flatten() for b in self._before[layer]]).double()
            out[f"param_norm/{layer}"] = float(theta.norm())
            out[f"param_rms/{layer}"] = float(theta.pow(2).mean().sqrt())
            out[f"update_norm/{layer}"] = float(delta.norm())
            out[f"update_rms/{layer}"] = float(delta.pow(2).mean().sqrt())
            g = self._grads.get(layer)
            if g is not None and float(g.norm()) > 0 and float(delta.norm()) > 0:
                out[f"update_cos_neg_grad/{layer}"] = float(-(delta @ g) / (delta.norm() * g.norm()))
            if self.has_v:
                out.update(self._update_distribution(step, layer, ps))
        if self.hessian_every and step % self.hessian_every == 0:
            out.update(self.curvature(step))
        self._before, self._grads = {}, {}
        return out

    def _update_distribution(self, step: int, layer: str, ps: list[torch.Tensor]) -> dict[str, float]:
        moments = [self._moments(p) for p in ps]
        if any(m is None for m in moments):
            return {}
        eps = moments[0][2]
        m = torch.cat([mh.flatten() for mh, _, _ in moments]).double()
        sv = torch.cat([vh.flatten() for _, vh, _ in moments]).double().sqrt()
        r = torch.where(sv > 0, m / sv.clamp_min(1e-300), torch.zeros_like(m))
        u = m / (sv + eps) if eps > 0 else r
        for name, x in (("r", r), ("u", u)):
            counts = torch.histc(x.clamp(-self.range, self.range).float(), self.bins, -self.range, self.range)
            self.histograms.append({"step": step, "layer": layer, "quantity": name, "lo": -self.range,
                                    "hi": self.range, "counts": counts.long().cpu().numpy()})
        out = {f"r_frac_sign/{layer}": float((r.abs() > 0.9).double().mean()),
               f"r_std/{layer}": float(r.std()),
               f"r_abs_mean/{layer}": float(r.abs().mean()),
               f"r_bc/{layer}": bimodality_coefficient(r),
               f"frac_sqrtv_below_eps/{layer}": float((sv < eps).double().mean()),
               f"u_over_r/{layer}": float(u.norm() / r.norm()) if r.norm() > 0 else float("nan"),
               f"eps_damping/{layer}": float((sv / (sv + eps)).mean()) if eps > 0 else 1.0,
               f"sqrtv_rms/{layer}": float(sv.pow(2).mean().sqrt())}
        if self.dip_samples and _diptest is not None:
            out[f"r_dip/{layer}"], out[f"r_dip_p/{layer}"] = dip(r, self.dip_samples, self.seed * 100_003 + step)
        return out

    def curvature(self, step: int) -> dict[str, float]:
        """λ_max(H), λ_max(Ĥ), λ_grad(Ĥ) on the fixed probe batch, beside 2/η and Adam's limit."""
        params = [p for ps in self.layers.values() for p in ps]
        precond = None
        moments = [self._moments(p) for p in params] if self.has_v else []
        if moments and all(m is not None for m in moments):  # Adafactor without b1 has v but no m
            precond = [1 / (vh.sqrt() + eps) for _, vh, eps in moments]
        with torch.enable_grad():
            out = curvature(lambda: self.model.loss(self.probe_batch), params, precond,
                            iters=self.hessian_iters, seed=self.seed * 100_003 + step)
        group = self.opt.param_groups[0]
        lr = self.opt.current_lr() if hasattr(self.opt, "current_lr") else group["lr"]
        out.update(thresholds(lr, group.get("b1", group.get("momentum", 0.0))))
        return out

    # ------------------------------------------------------------------------------ resume
    def state_dict(self) -> dict:
        return {"histograms": self.histograms, "auto": self._auto}

    def load_state_dict(self, state: dict) -> None:
        self.histograms, self._auto = state["histograms"], state["auto"]


def histogram_frame(rows: list[dict]):
    """The histograms of a run as a DataFrame (step, layer, quantity, lo, hi, counts)."""
    import pandas as pd

    cols = ["step", "layer", "quantity", "lo", "hi", "counts"]
    df = pd.DataFrame(rows, columns=cols)
    df["counts"] = df["counts"].map(lambda c: np.asarray(c, dtype=np.int64))
    return df
