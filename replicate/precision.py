"""Mixed precision for the one training loop: ``train.precision`` (fp32, bf16, fp16) and, for fp16,
``train.loss_scale`` (``dynamic`` or a fixed number s).

What runs in low precision (Micikevicius et al. 2018, "Mixed Precision Training", arXiv 1710.03740):

- the forward pass under ``torch.autocast(device_type, dtype)`` (bf16 or fp16): matmuls and the ops
  of autocast's low-precision list run in that dtype, reductions and losses in fp32; the backward
  pass follows, so activation gradients inside the low-precision region are bf16/fp16 too;
- parameters, the optimizer's m and v and the update stay fp32 (the "fp32 master weights");
- fp16 only: the loss is scaled before backward, L·s, and the gradients unscaled before anything
  reads them, g = fl16(∇(L·s)) / s. Under autocast a parameter's gradient comes back in its own
  dtype (fp32), so the fp16 storage a GPU run has where gradients are kept or all-reduced in fp16
  (fp16 model weights with fp32 masters, Megatron/fairseq style; DDP with fp16 buckets) is
  modelled explicitly: each parameter gradient of the scaled loss is rounded to fp16 (round to
  nearest even, subnormals down to 2⁻²⁴ ≈ 6e-8, |x| < 2⁻²⁵ → 0, |x| > 65504 → inf) and back
  before unscaling. A coordinate with |g·s| below 2⁻²⁵ therefore reaches the optimizer as exactly 0:
  the underflow a too-small loss scale causes. bf16 keeps fp32's exponent range and is not
  rounded (no underflow to model; no loss scale);
- a non-finite gradient after unscaling (an fp16 overflow, or inf/nan from the forward pass)
  skips the optimizer step, as ``torch.amp.GradScaler`` does; the dynamic scale (GradScaler's
  defaults: s₀ = 2¹⁶, ×0.5 after a skipped step, ×2 after 2000 steps without one) adapts, a fixed
  scale s stays s (``GradScaler.update(new_scale=s)``).

Same on CPU and CUDA (``torch.autocast`` and ``torch.amp.GradScaler`` take the device type); tested
on CPU only so far. The scaler's state is saved in the run's checkpoint (a resume keeps the scale); a
PaLM-style rollback (mitigation.rollback) restores model, optimizer and data but not the scale. On
this CPU fp16 autocast costs ~2.7x fp32 per step for the MLP, ~7x for the tiny GPT (fp16 matmuls).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """The precision of one run. In the loop::

        with prec.autocast():
            loss = model.loss(batch)
        prec.backward(loss)            # (L·s).backward() for fp16, L.backward() otherwise
        prec.unscale(opt)              # fp16: round each p.grad to fp16, then ÷ s (GradScaler.unscale_)
        ...                            # clip, probes: they see unscaled gradients
        prec.step(opt)                 # opt.step(), skipped on a non-finite gradient (fp16); scale update

    With ``fp32`` every call is the plain one (no autocast, no scaling, no rounding, no sync).
    """

    def __init__(self, precision: str = "fp32", loss_scale: Any = "dynamic", device: Any = "cpu"):
        if precision not in DTYPES:
            raise ValueError(f"precision={precision!r} is not an option: choose one of {', '.join(DTYPES)}")
        fixed = None if loss_scale == "dynamic" else loss_scale
        if fixed is not None and not (isinstance(fixed, (int, float)) and not isinstance(fixed, bool) and fixed > 0):
            raise ValueError(f"loss_scale={loss_scale!r} is not allowed: must be dynamic or a number > 0")
        self.precision, self.dtype = precision, DTYPES[precision]
        self.device_type = torch.device(device).type
        self.fixed = float(fixed) if fixed is not None and precision == "fp16" else None
        self.scaler = torch.amp.GradScaler(self.device_type, enabled=precision == "fp16",
                                           **({"init_scale": self.fixed} if self.fixed is not None else {}))

    @property
    def fp16(self) -> bool:
        return self.scaler.is_enabled()

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def scale(self) -> float:
        """The loss scale s of the coming backward pass (1 without fp16)."""
        return float(self.scaler.get_scale()) if self.fp16 else 1.0

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    @torch.no_grad()
    def unscale(self, opt: torch.optim.Optimizer) -> None:
        """fp16: round every gradient of the scaled loss to fp16 (the modelled fp16 gradient
        storage), then divide by s; afterwards every reader sees fl16(∇(L·s))/s in fp32."""
        if not self.fp16:
            return
        for group in opt.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.copy_(p.grad.to(torch.float16))
        self.scaler.unscale_(opt)

    def finite(self, grad_norm: torch.Tensor | None) -> bool:
        """Whether this step's (unscaled) gradient is finite: always True without fp16 (no sync)."""
        return not self.fp16 or grad_norm is None or bool(torch.isfinite(grad_norm))

    def step(self, opt: torch.optim.Optimizer) -> None:
        if not self.fp16:
            opt.step()
            return
        self.scaler.step(opt)  # skips opt.step() when unscale_ found inf/nan
        self.scaler.update(self.fixed)  # a fixed scale is set again; None: the dynamic rule

    def state_dict(self) -> dict:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.scaler.load_state_dict(state)
