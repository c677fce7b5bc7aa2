"""The claim registry: ``@claim`` and ``pending`` fill ``CLAIMS``; ``evaluate`` judges them.

A claim is registered with ``@claim(id, experiment=..., source=..., statement=..., metric=...,
threshold=...)`` on a function ``judge(metrics, runs) -> Judgement`` that reads only
``results.load()`` (tidy metrics) and ``results.runs()`` (one row per run, flattened config) of its
experiment. ``gpu="<experiment>"`` registers its GPU twin ``<id>_gpu`` too: the same judge on that
experiment, tier gpu, the statement suffixed with ``GPU``; ``twin(id, suffix, ...)`` registers any
other twin ``<id>_<suffix>`` (the same judge, thresholds and premise on a second workload's experiment,
e.g. ``W1_slingshot``). ``figures=[...]`` names the report's
figure kinds its section always shows (a placeholder where the data is missing), beside those its
experiment's data calls for. ``pending(id, ...)`` registers a claim of CLAIMS.md whose experiment
does not exist yet: it shows as ``not run (no experiment yet)``.

Spike definitions (CLAIMS.md, "Spike definitions"): a claim registered with ``spikes=True`` is
judged once under each of ``spikes.DEFINITIONS`` (R3, R10, R100, Z6), its judge called as
``judge(metrics, runs, definition=name)``. Its verdict is R3's (``spikes.PRIMARY``, fixed before
any run; a claim whose CLAIMS.md row names a definition, e.g. T1's "(R100)", registers it with
``primary=``); ``Verdict.by_definition`` holds all four (verdict, value, interval, premise) and
``Verdict.robustness`` says ``robust`` when the other three agree with R3, else which differ and
how. No verdict is ever picked from another definition.

Thresholds (issue 15): a judge whose pre-set threshold a true claim cannot pass on its workload
sets ``Judgement.flag`` (why, and where the derivation is) and ``Judgement.corrected`` (the verdict
under the derived threshold). The verdict stays the pre-set threshold's; both are shown.
"""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import pandas as pd

from .. import results, spikes

PRIMARY = spikes.PRIMARY  # (the Claim field ``spikes`` shadows the module inside the class body)
VERDICTS = ("replicated", "not replicated", "out of regime", "inconclusive", "answered")
# The GPU tier's workload (conf/experiment/*_gpu.yaml), appended to a twin's statement.
GPU = " (GPU tier: 6 x 384 GPT, 10.9M parameters, byte-level Shakespeare, bf16)"


@dataclass
class Judgement:
    """What a judge returns: the measured value with its interval over seeds, and the verdict."""

    verdict: str
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    seeds: list[int] = field(default_factory=list)
    detail: str = ""
    premise: str = ""  # what the runs reached of the claim's premise (CLAIMS.md), per seed
    premise_held: bool | None = None  # None: the claim has no premise (or its judge does not measure it)
    flag: str = ""  # set when a true claim could not pass the pre-set threshold: why, and the derivation's link
    corrected: str | None = None  # with ``flag``: the verdict under the derived threshold


@dataclass
class Claim:
    id: str
    experiment: str | None
    source: str
    statement: str
    metric: str
    threshold: str
    tier: str
    judge: Callable[..., Judgement] | None
    figures: list[str] = field(default_factory=list)
    spikes: bool = False  # judged under each of spikes.DEFINITIONS (judge(..., definition=name))
    primary: str = PRIMARY  # the definition whose verdict is the claim's (CLAIMS.md's row may name one)
    twin_of: str | None = None  # a twin (``<id>_gpu``, ``<id>_slingshot``): the claim whose judge it reuses


@dataclass
class Verdict:
    claim: str
    source: str
    metric: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    threshold: str
    verdict: str
    seeds: list[int]
    runtime_s: float
    experiment: str | None = None
    statement: str = ""
    detail: str = ""
    runs: list[str] = field(default_factory=list)
    premise: str = ""
    premise_held: bool | None = None
    flag: str = ""
    corrected: str | None = None
    # spike claims: definition -> {verdict, value, ci_low, ci_high, premise_held}; {} for the others
    by_definition: dict[str, dict] = field(default_factory=dict)
    robustness: str = ""  # "robust", "R10: not replicated; Z6: ..." (the ones that differ), "" (no spikes)
    primary: str = ""  # spike claims: the definition whose verdict this is (R3 unless the claim's row names one)

    def to_dict(self) -> dict:
        d = asdict(self)
        for row in (d, *d["by_definition"].values()):
            for k in ("value", "ci_low", "ci_high"):
                if isinstance(row.get(k), float) and not math.isfinite(row[k]):
                    row[k] = None
        return d


CLAIMS: dict[str, Claim] = {}


def claim(id: str, *, experiment: str | None, source: str, statement: str, metric: str, threshold: str,
          tier: str = "cpu", gpu: str | None = None, figures: Sequence[str] = (), spikes: bool = False,
          primary: str | None = None):
    """Register ``judge`` as the verdict function of claim ``id`` (and, with ``gpu``, of its GPU
    twin ``<id>_gpu`` on experiment ``gpu``). ``spikes``: the claim counts loss spikes, and its
    judge takes ``definition`` (a name of ``spikes.DEFINITIONS``). ``primary``: the definition whose
    verdict is the claim's when its CLAIMS.md row names one (T1: "Adam spikes (R100)"), fixed here
    before any run; otherwise R3 (``spikes.PRIMARY``)."""
    primary_ = PRIMARY if primary is None else _definition(primary)

    def register(judge):
        if spikes and "definition" not in inspect.signature(judge).parameters:
            raise TypeError(f"claim {id} is registered with spikes=True: its judge needs a `definition` parameter")
        for cid in (id, f"{id}_gpu") if gpu is not None else (id,):
            if cid in CLAIMS and CLAIMS[cid].judge is None:
                raise ValueError(f"claim {cid} is both pending and judged: delete the pending copy")
        CLAIMS[id] = Claim(id, experiment, source, statement, metric, threshold, tier, judge, list(figures), spikes,
                           primary_)
        if gpu is not None:
            twin(id, "gpu", experiment=gpu, workload=GPU, tier="gpu", figures=())
        return judge

    return register


def twin(of: str, suffix: str, *, experiment: str, workload: str, tier: str = "cpu",
         figures: Sequence[str] | None = None) -> Claim:
    """Register ``<of>_<suffix>``: claim ``of``'s judge, metric, threshold, premise and primary
    definition on ``experiment`` (a second workload), its statement suffixed with ``workload``;
    ``figures`` defaults to ``of``'s."""
    c = CLAIMS[of]
    cid = f"{of}_{suffix}"
    if cid in CLAIMS and CLAIMS[cid].twin_of != of:
        raise ValueError(f"claim {cid} is registered already, not as a twin of {of}")
    CLAIMS[cid] = Claim(cid, experiment, c.source, c.statement + workload, c.metric, c.threshold, tier, c.judge,
                        list(c.figures if figures is None else figures), c.spikes, c.primary, twin_of=of)
    return CLAIMS[cid]


def _definition(name: str) -> str:
    """A spike definition's name, checked (``claim``'s own ``spikes`` flag hides the module there)."""
    return spikes.resolve(name).name


def pending(id: str, *, source: str, statement: str, metric: str, threshold: str, tier: str = "cpu") -> None:
    """A claim of CLAIMS.md whose experiment is not written yet: it shows as ``not run``."""
    if id in CLAIMS:
        raise ValueError(f"claim {id} is registered already: a pending copy of it is not needed")
    CLAIMS[id] = Claim(id, None, source, statement, metric, threshold, tier, None)


# ------------------------------------------------------------------------------------- evaluation
def _load_modules() -> None:
    """Import every module of the claims package (each registers its claims)."""
    for mod in pkgutil.iter_modules([str(Path(__file__).parent)]):
        importlib.import_module(f"{__package__}.{mod.name}")


def evaluate(root: Path | str = "results", ids: Iterable[str] | None = None,
             seeds: Iterable[int] | None = None) -> list[Verdict]:
    """Judge every registered claim (or ``ids``) from the finished runs under ``root``; with
    ``seeds``, from the runs of those seeds only (the scorecard passes ``results.PRIMARY_SEEDS``,
    the held-out scorecard its own set: the two never mix)."""
    _load_modules()
    out = []
    for cid in sorted(CLAIMS, key=_order) if ids is None else ids:
        c = CLAIMS[cid]
        v = Verdict(c.id, c.source, c.metric, None, None, None, c.threshold, "", [], 0.0,
                    experiment=c.experiment, statement=c.statement)
        if c.judge is None:
            v.verdict = "not run (tier gpu)" if c.tier == "gpu" else "not run (no experiment yet)"
            out.append(v)
            continue
        runs = results.runs(root, experiment=c.experiment, seeds=seeds)
        done = runs[runs["status"].isin(results.FINISHED)] if not runs.empty else runs
        if done.empty:
            v.verdict = f"not run (tier {c.tier})" if c.tier != "cpu" else "not run"
            out.append(v)
            continue
        metrics = results.load(root, experiment=c.experiment, seeds=seeds)
        j = judge(c, metrics, done)
        if isinstance(j, dict):
            v.by_definition = {d: {"verdict": jd.verdict, "value": jd.value, "ci_low": jd.ci_low,
                                   "ci_high": jd.ci_high, "premise_held": jd.premise_held} for d, jd in j.items()}
            v.robustness = robustness({d: jd.verdict for d, jd in j.items()}, c.primary)
            v.primary = c.primary
            j = j[c.primary]
        v.value, v.ci_low, v.ci_high, v.verdict, v.detail = j.value, j.ci_low, j.ci_high, j.verdict, j.detail
        v.premise, v.premise_held = j.premise, j.premise_held
        v.flag, v.corrected = j.flag, j.corrected
        v.seeds = [int(s) for s in j.seeds]
        v.runtime_s = float(done["wall_time_s"].fillna(0).sum())
        v.runs = sorted(done["run_id"])
        out.append(v)
    return out


def judge(c: Claim, metrics: pd.DataFrame, runs: pd.DataFrame) -> Judgement | dict[str, Judgement]:
    """``c``'s judgement of these runs; for a spike claim, definition -> judgement, one per
    ``spikes.DEFINITIONS`` (the primary's is the verdict)."""
    if not c.spikes:
        return c.judge(metrics, runs)
    return {d: c.judge(metrics, runs, definition=d) for d in spikes.DEFINITIONS}


def robustness(by_definition: dict[str, str], primary: str = spikes.PRIMARY) -> str:
    """``robust`` when every definition gives the primary's verdict, else the others' verdicts
    that differ (``R10: not replicated; Z6: out of regime``); "" without definitions."""
    if not by_definition:
        return ""
    verdict = by_definition[primary]
    differ = [f"{d}: {v}" for d, v in by_definition.items() if d != primary and v != verdict]
    return "; ".join(differ) if differ else "robust"


# CLAIMS.md's order: Molybog, Bai, Wortsman, Li, the Slingshot, Marek, Kimi K2's QK-Clip, the questions
FAMILIES = {"M": 0, "B": 1, "W": 2, "S": 3, "T": 4, "H": 5, "K": 6, "Q": 7}


def _order(cid: str) -> tuple:
    family = FAMILIES.get(cid[0], 9)
    digits = "".join(ch for ch in cid[1:] if ch.isdigit())
    return family, int(digits or 0), cid
