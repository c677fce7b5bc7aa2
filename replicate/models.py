"""Models: quadratics, an MLP for regression, an MLP for modular arithmetic, and a small
nanoGPT-style decoder.

Every model has ``loss(batch) -> scalar Tensor`` and ``layers() -> dict[str, list[str]]``, the
latter mapping a layer name (shallow first) to the names of its parameters, as
``named_parameters()`` spells them; each parameter belongs to exactly one layer. A model MAY also
define ``probe(batch) -> dict[str, float]``, metrics of its own that the probes log every
``probe.model_every`` steps (replicate/probes.py); ``ModularMLP`` does.

``build_model(cfg)`` picks a class from ``MODELS`` by ``cfg['name']`` and passes the other keys to
its constructor. Parameters are created under whatever ``torch.manual_seed`` the caller set.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["MODELS", "build_model", "Quadratic", "DiagQuadratic", "NoisyQuadratic", "MLP", "ModularMLP", "GPT",
           "plain_kwargs"]


# --------------------------------------------------------------------------------------- helpers
def plain_kwargs(cfg: Mapping) -> dict:
    """A plain, resolved ``dict`` of a config mapping (OmegaConf containers included)."""
    try:  # OmegaConf is a dependency of the suite, but keep this module importable without it
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover
        pass
    return {k: _plain(v) for k, v in dict(cfg).items()}


def _plain(v):
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, Sequence) and not isinstance(v, (str, bytes)):
        return [_plain(x) for x in v]
    return v


def build_from_registry(cfg: Mapping, registry: Mapping, kind: str, drop: Sequence[str] = ()):
    """Shared builder: ``cfg['name']`` selects the factory, the other keys are its kwargs."""
    kw = plain_kwargs(cfg)
    if "name" not in kw:
        raise ValueError(f"{kind} config needs a 'name'; allowed: {sorted(registry)}")
    name = kw.pop("name")
    for k in drop:
        kw.pop(k, None)
    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}; allowed: {sorted(registry)}")
    factory = registry[name]
    params = inspect.signature(factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        allowed = [p for p in params if p != "self"]
        for k in kw:
            if k not in allowed:
                raise ValueError(f"{kind} {name!r} got an unknown option {k!r}; allowed: {allowed}")
    return factory(**kw)


# ------------------------------------------------------------------------------------ quadratics
def _start(x0: float, spread: float, shape: tuple[int, ...], dtype: str) -> torch.Tensor:
    """x0 everywhere, times (1 + spread·U(-1, 1)) from torch's seeded generator when spread > 0."""
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    x = torch.full(shape, float(x0), dtype=getattr(torch, dtype))
    if spread:
        x = x * (1 + spread * (2 * torch.rand(shape, dtype=x.dtype) - 1))
    return x


class Quadratic(nn.Module):
    """f(x) = h x² / 2 on a single scalar parameter ``x`` (shape (1,)); the batch is ignored.

    ``x0_spread`` draws the start from the seed; ``dtype=float64`` lets x shrink for hundreds of
    decades before it underflows (float32 flushes it to zero long before Adam's v has decayed)."""

    def __init__(self, h: float = 1.0, x0: float = 1.0, x0_spread: float = 0.0, dtype: str = "float32"):
        super().__init__()
        self.h = float(h)
        self.x = nn.Parameter(_start(x0, x0_spread, (1,), dtype))

    def loss(self, batch=None) -> torch.Tensor:
        return 0.5 * self.h * (self.x * self.x).sum()

    def layers(self) -> dict[str, list[str]]:
        return {"x": ["x"]}


class DiagQuadratic(nn.Module):
    """f(x) = ½ Σ h_i x_i², h log-spaced from h_min to h_max; x starts at x0 (see Quadratic)."""

    def __init__(self, dim: int = 10, h_min: float = 0.1, h_max: float = 10.0, x0: float = 1.0,
                 x0_spread: float = 0.0, dtype: str = "float32"):
        super().__init__()
        if dim < 1 or h_min <= 0 or h_max <= 0:
            raise ValueError("diag_quadratic needs dim >= 1 and positive curvatures")
        x = _start(x0, x0_spread, (int(dim),), dtype)
        self.register_buffer("h", torch.logspace(math.log10(h_min), math.log10(h_max), int(dim), dtype=x.dtype))
        self.x = nn.Parameter(x)

    def loss(self, batch=None) -> torch.Tensor:
        return 0.5 * (self.h * self.x * self.x).sum()

    def layers(self) -> dict[str, list[str]]:
        return {"x": ["x"]}


class NoisyQuadratic(nn.Module):
    """A noisy quadratic model with off-diagonal curvature (Li et al. 2024, arXiv 2405.14578; Zhang
    et al. 2019, arXiv 1907.04164): f(θ) = ½ θᵀHθ with H block-diagonal, ``dim/block`` blocks
    H_b = diag·I + offdiag·11ᵀ of ``block`` coordinates each (eigenvalues diag + offdiag·block along
    the block's all-ones direction, diag across it). θ starts at x0·(1 + x0_spread·U(-1, 1)) > 0,
    so the gradient's signs agree with the positive off-diagonal curvature: a sign-like step moves
    every coordinate of a block together and pays the large eigenvalue.

    The batch is the minibatch's gradient noise ξ (``data=gradient_noise``: ξ ~ N(0, σ²/B·I)): the
    loss returned is f(θ) + ξ·θ − (ξ·θ).detach(), whose value is the exact (expected) loss f(θ)
    and whose gradient is the minibatch gradient Hθ + ξ. ``batch=None`` gives the exact gradient."""

    def __init__(self, dim: int = 1024, block: int = 16, diag: float = 0.01, offdiag: float = 0.0625,
                 x0: float = 0.1, x0_spread: float = 0.2, dtype: str = "float32"):
        super().__init__()
        if int(block) < 1 or int(dim) < 1 or int(dim) % int(block):
            raise ValueError(f"noisy_quadratic needs dim a positive multiple of block, got dim={dim}, block={block}")
        if diag < 0 or offdiag < 0 or diag + offdiag <= 0:
            raise ValueError("noisy_quadratic needs diag >= 0, offdiag >= 0 and diag + offdiag > 0")
        self.block, self.diag, self.offdiag = int(block), float(diag), float(offdiag)
        self.x = nn.Parameter(_start(x0, x0_spread, (int(dim),), dtype))

    def exact_loss(self) -> torch.Tensor:
        blocks = self.x.view(-1, self.block)
        return 0.5 * (self.diag * blocks.square().sum() + self.offdiag * blocks.sum(dim=1).square().sum())

    def loss(self, batch=None) -> torch.Tensor:
        f = self.exact_loss()
        if batch is None:
            return f
        noise = (batch.to(self.x.dtype) * self.x).sum()
        return f + noise - noise.detach()

    def layers(self) -> dict[str, list[str]]:
        return {"x": ["x"]}


# ------------------------------------------------------------------------------------------- MLP
ACTIVATIONS = {"tanh": torch.tanh, "relu": F.relu, "gelu": F.gelu, "silu": F.silu}


class MLP(nn.Module):
    """in_dim → hidden… → out_dim, mean squared error on a batch (x, y).

    Parameters are ``linears.{k}.weight`` / ``linears.{k}.bias``; layer ``layer{k}`` is linear k.
    """

    def __init__(self, in_dim: int = 1, hidden: Sequence[int] = (64, 64), out_dim: int = 1,
                 activation: str = "tanh"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; allowed: {sorted(ACTIVATIONS)}")
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
            raise ValueError(f"model.hidden={hidden!r}: must be a list of layer widths, e.g. [64, 64]")
        for key, v in (("in_dim", in_dim), *((f"hidden[{i}]", h) for i, h in enumerate(hidden)), ("out_dim", out_dim)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"model.{key}={v!r}: must be an integer >= 1")
        dims = [int(in_dim), *[int(h) for h in hidden], int(out_dim)]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.activation = activation
        self._act = ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k, lin in enumerate(self.linears):
            x = lin(x)
            if k < len(self.linears) - 1:
                x = self._act(x)
        return x

    def loss(self, batch) -> torch.Tensor:
        x, y = batch
        return F.mse_loss(self(x), y)

    def layers(self) -> dict[str, list[str]]:
        return {f"layer{k}": [f"linears.{k}.{n}" for n, _ in lin.named_parameters()]
                for k, lin in enumerate(self.linears)}


# ----------------------------------------------------------------------------------- modular MLP
class ModularMLP(nn.Module):
    """The Slingshot's network for ``data=modular`` (Thilak et al. 2022, arXiv 2206.04817; Liu et
    al. 2026, arXiv 2605.06152): one embedding table of p rows (``emb`` wide) shared by both
    operands, the two embeddings concatenated (2·emb) → ``hidden`` Linear → ReLU → Linear to p
    logits, cross-entropy on a batch (x, y) with x (n, 2) operands and y (n,) labels.

    ``dtype`` float32 or float64: the whole model, its logits and its loss in that dtype (the
    parameters are created in float32 under the caller's seed and then cast, so float64 starts
    from the same weights). Parameters ``embedding.weight``, ``hidden.{weight,bias}``,
    ``head.{weight,bias}``; layers ``embedding``, ``hidden``, ``head`` (the last linear).

    ``probe(batch)``, on the batch given (the probes pass the full training set), in the model's
    dtype: ``zero_grad_frac``, the fraction of examples whose correct-class softmax gradient
    p_y − 1 is exactly 0 (p_y rounds to 1: Liu et al.'s absorption); ``margin`` and
    ``margin_min``, the mean and least of z_y − max_{j≠y} z_j; ``mean_row_norm``, the L2 norm of
    the mean over classes of the head's weight rows (Liu et al.'s classifier mean);
    ``head_norm``, the Frobenius norm of the head's weight (Thilak et al.'s last-layer norm).
    """

    DTYPES = ("float32", "float64")

    def __init__(self, p: int = 23, emb: int = 64, hidden: int = 128, dtype: str = "float32"):
        super().__init__()
        for k, v in (("p", p), ("emb", emb), ("hidden", hidden)):
            if isinstance(v, bool) or not isinstance(v, int) or v < (2 if k == "p" else 1):
                raise ValueError(f"{k} must be an integer >= {2 if k == 'p' else 1}, got {v!r}")
        if dtype not in self.DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
        self.p, self.dtype = int(p), getattr(torch, dtype)
        self.embedding = nn.Embedding(self.p, int(emb))
        self.hidden = nn.Linear(2 * int(emb), int(hidden))
        self.head = nn.Linear(int(hidden), self.p)
        self.to(self.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (n, p) for operands x (n, 2)."""
        if x.dim() != 2 or x.shape[1] != 2:
            raise ValueError(f"modular_mlp takes operands of shape (n, 2), got {tuple(x.shape)}")
        h = self.embedding(x).reshape(x.shape[0], -1)
        return self.head(F.relu(self.hidden(h)))

    def loss(self, batch) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y)

    def layers(self) -> dict[str, list[str]]:
        return {"embedding": ["embedding.weight"], "hidden": ["hidden.weight", "hidden.bias"],
                "head": ["head.weight", "head.bias"]}

    @torch.no_grad()
    def probe(self, batch) -> dict[str, float]:
        x, y = batch
        z = self(x)
        p_y = torch.softmax(z, dim=-1).gather(1, y[:, None]).squeeze(1)
        z_y = z.gather(1, y[:, None]).squeeze(1)
        others = z.scatter(1, y[:, None], float("-inf")).amax(dim=1)
        margin = (z_y - others).double()
        w = self.head.weight
        return {"zero_grad_frac": float(((p_y - 1) == 0).double().mean()),
                "margin": float(margin.mean()), "margin_min": float(margin.min()),
                "mean_row_norm": float(w.mean(dim=0).norm()), "head_norm": float(w.norm())}


# ------------------------------------------------------------------------------------------- GPT
class CausalSelfAttention(nn.Module):
    """Causal multi-head attention. ``qk_norm``: LayerNorm over each head's dimension on q and k
    before the dot product (one LayerNorm for q, one for k, shared by the heads), as Dehghani et al.
    2023 (arXiv 2302.05442) and Wortsman et al. 2023 (arXiv 2309.14322): q ← LN(q), k ← LN(k)."""

    def __init__(self, width: int, heads: int, qk_norm: bool = False):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)  # residual projection
        if qk_norm:
            self.q_norm, self.k_norm = nn.LayerNorm(width // heads), nn.LayerNorm(width // heads)
        else:
            self.q_norm = self.k_norm = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class FeedForward(nn.Module):
    def __init__(self, width: int, mlp_ratio: float):
        super().__init__()
        hidden = int(round(mlp_ratio * width))
        self.fc = nn.Linear(width, hidden)
        self.proj = nn.Linear(hidden, width)  # residual projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, qk_norm: bool = False):
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, qk_norm)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = FeedForward(width, mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """A nanoGPT-style decoder: ``wte`` + ``wpe`` → ``blocks.{i}`` → ``ln_f`` → untied ``head``.

    ``loss(batch)`` takes a LongTensor (B, T+1) with T <= context and returns the mean next-token
    cross-entropy. Layers: ``embedding`` (wte, wpe), ``block0``…, ``head`` (ln_f, head).

    Options against spikes (all off by default; off, the model is exactly the plain one):
    ``qk_norm`` LayerNorm on q and k per head (see CausalSelfAttention; its parameters belong to
    the block's layer); ``z_loss`` c: loss = CE + c·mean(log²Z), Z = Σ exp(logits) per position
    (PaLM, arXiv 2204.02311; Wortsman et al. 2023, arXiv 2309.14322 use c = 1e-4);
    ``scaled_embed``: the embedding (wte + wpe) times √width, Spike No More (Takase et al.,
    arXiv 2312.16903), so the residual stream starts near unit scale.
    """

    def __init__(self, vocab_size: int, context: int = 32, depth: int = 2, width: int = 64,
                 heads: int = 4, mlp_ratio: float = 4, qk_norm: bool = False, z_loss: float = 0.0,
                 scaled_embed: bool = False):
        super().__init__()
        if not (isinstance(z_loss, (int, float)) and z_loss >= 0):
            raise ValueError(f"z_loss must be a number >= 0, got {z_loss!r}")
        self.vocab_size, self.context, self.depth = int(vocab_size), int(context), int(depth)
        self.z_loss, self.scaled_embed = float(z_loss), bool(scaled_embed)
        self.embed_scale = math.sqrt(width)
        self.wte = nn.Embedding(self.vocab_size, width)
        self.wpe = nn.Embedding(self.context, width)
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio, bool(qk_norm)) for _ in range(self.depth))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, self.vocab_size, bias=False)
        self.apply(self._init_weights)
        resid_std = 0.02 / math.sqrt(2 * self.depth)
        for name, p in self.named_parameters():
            if name.endswith("attn.proj.weight") or name.endswith("mlp.proj.weight"):
                nn.init.normal_(p, mean=0.0, std=resid_std)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        if T > self.context:
            raise ValueError(f"sequence length {T} exceeds the model's context {self.context}")
        pos = torch.arange(T, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        return x * self.embed_scale if self.scaled_embed else x

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, vocab_size) for token ids (B, T)."""
        x = self.embed(idx)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        inputs, targets = batch[:, :-1], batch[:, 1:]
        logits = self(inputs)
        logits = logits.reshape(-1, logits.shape[-1])
        loss = F.cross_entropy(logits, targets.reshape(-1))
        if self.z_loss:
            loss = loss + self.z_loss * torch.logsumexp(logits, dim=-1).square().mean()
        return loss

    def layers(self) -> dict[str, list[str]]:
        out = {"embedding": ["wte.weight", "wpe.weight"]}
        for i, block in enumerate(self.blocks):
            out[f"block{i}"] = [f"blocks.{i}.{n}" for n, _ in block.named_parameters()]
        out["head"] = [f"ln_f.{n}" for n, _ in self.ln_f.named_parameters()] + ["head.weight"]
        return out


# ---------------------------------------------------------------------------------------- linear
class Linear(nn.Module):
    """f(θ) = θ · batch on one vector ``theta`` of ``dim`` coordinates (zeros at the start): its
    gradient is exactly the batch, so a data stream of gradients (``data=gradients``) feeds the
    optimizer whatever gradient sequence it describes (Molybog et al. 2023's update-distribution
    experiments). The loss itself is meaningless (unbounded below)."""

    def __init__(self, dim: int = 100_000):
        super().__init__()
        if int(dim) < 1:
            raise ValueError(f"linear needs dim >= 1, got {dim}")
        self.theta = nn.Parameter(torch.zeros(int(dim)))

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.shape != self.theta.shape:
            raise ValueError(f"linear: a batch of shape {tuple(batch.shape)} for dim {self.theta.numel()}")
        return (self.theta * batch).sum()

    def layers(self) -> dict[str, list[str]]:
        return {"theta": ["theta"]}


# -------------------------------------------------------------------------------------- registry
MODELS: dict[str, type[nn.Module]] = {
    "quadratic": Quadratic,
    "diag_quadratic": DiagQuadratic,
    "noisy_quadratic": NoisyQuadratic,
    "mlp": MLP,
    "modular_mlp": ModularMLP,
    "gpt": GPT,
    "linear": Linear,
}

# The data streams (replicate/data.py) whose batches each model's loss takes; the quadratics, which do
# not read the batch (or take none), are not listed: any stream. Checked before a run is built.
TAKES: dict[str, tuple[str, ...]] = {
    "noisy_quadratic": ("gradient_noise", "none"),
    "mlp": ("regression",),
    "modular_mlp": ("modular",),
    "gpt": ("markov", "shakespeare"),
    "linear": ("gradients",),
}


def build_model(cfg: Mapping) -> nn.Module:
    """Build ``MODELS[cfg['name']](**other keys)``; ValueError on an unknown name or option.
    ``compile`` (every model YAML has it) is the training loop's, not the model's: left out."""
    return build_from_registry(cfg, MODELS, "model", drop=("compile",))
