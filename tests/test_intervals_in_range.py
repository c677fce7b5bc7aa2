"""No interval the suite publishes leaves its quantity's range (CLAIMS.md, "Spike definitions": spike
rates get intervals that cannot leave their range, never a t interval below 0).

Over the COMMITTED results (results/leaderboard.md, results/scorecard.json): every "x [lo, hi]" cell
of the leaderboard, and every claim's value and (ci_low, ci_high), must be finite, lo <= x <= hi, and
inside the range of the quantity (rates, counts, losses, heights, steps >= 0; fractions in [0, 1];
Spearman rho in [-1, 1]; AUROC in [0, 1]; ...). A scorecard claim's range is read off its own
``metric`` text (``claim_range``); a metric this cannot read gets the generic checks only. Beside
them: the report's spike-rate figure draws the pooled Poisson interval, never below 0.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

RESULTS = Path(__file__).resolve().parent.parent / "results"
INF = math.inf
NONNEG = (0.0, INF)
UNIT = (0.0, 1.0)

# ---------------------------------------------------------------------------------- leaderboard
# every column of results/leaderboard.md that carries an interval, and the range of its quantity
LEADERBOARD_RANGES = {
    "spikes R3 /1k": NONNEG, "R10 /1k": NONNEG, "R100 /1k": NONNEG, "Z6 /1k": NONNEG,  # rates per 1k steps
    "largest (R3)": NONNEG,  # a loss / median ratio of positive losses
    "recover (R3, steps)": NONNEG,  # steps
    "final loss": NONNEG,  # a cross-entropy / quadratic loss
    "LR sens.": NONNEG,  # mean of min(final, init) minus its minimum
}
CELL = re.compile(r"^(?P<v>\S+) \[(?P<lo>\S+), (?P<hi>\S+)\]$")


def leaderboard_cells(text: str) -> list[tuple[str, str, str, float, float, float]]:
    """(workload, arm, column, value, lo, hi) of every "x [lo, hi]" cell of a leaderboard page."""
    out, header, workload = [], None, None
    for line in text.splitlines():
        if line.startswith("## "):
            workload, header = line[3:].strip(), None
            continue
        if not line.startswith("|") or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        assert len(cells) == len(header), line
        for col, cell in zip(header, cells):
            m = CELL.match(cell)
            if m:
                out.append((workload, cells[1], col, float(m["v"]), float(m["lo"]), float(m["hi"])))
    return out


def _check(name: str, value: float, lo: float, hi: float, bounds: tuple[float, float]) -> list[str]:
    """The reasons (none when it is fine) why ``value [lo, hi]`` is not a valid interval in ``bounds``."""
    bad = []
    if not all(math.isfinite(x) for x in (value, lo, hi)):
        bad.append(f"{name}: not finite: {value} [{lo}, {hi}]")
    elif not lo <= value <= hi:
        bad.append(f"{name}: value outside its interval: {value} [{lo}, {hi}]")
    if not bounds[0] <= lo <= hi <= bounds[1]:
        bad.append(f"{name}: [{lo}, {hi}] leaves the range {bounds}")
    return bad


def test_the_committed_leaderboard_has_no_interval_outside_its_range():
    page = (RESULTS / "leaderboard.md").read_text()
    cells = leaderboard_cells(page)
    assert len(cells) > 100, "the committed leaderboard should have intervals to check"
    bad = []
    for workload, arm, col, v, lo, hi in cells:
        bad += _check(f"{workload}/{arm}/{col}", v, lo, hi, LEADERBOARD_RANGES.get(col, (-INF, INF)))
    assert not bad, f"{len(bad)} leaderboard intervals out of range:\n" + "\n".join(bad[:40])
    assert {c[2] for c in cells} <= set(LEADERBOARD_RANGES), "a leaderboard column without a known range"
    assert "t interval]" not in page  # the old "mean over seeds [95% t interval]" header


def test_leaderboard_cells_parse_a_page():
    page = "\n".join(["## mlp", "", "| # | arm | final loss | largest |", "|---|---|---|---|",
                      "| 1 | `a` | 0.5 [-0.1, 1.1] | diverged |", "| 2 | `b` | – | 3 |"])
    assert leaderboard_cells(page) == [("mlp", "`a`", "final loss", 0.5, -0.1, 1.1)]
    assert _check("x", 0.5, -0.1, 1.1, NONNEG) and not _check("x", 0.5, 0.0, 1.1, NONNEG)
    assert _check("x", 2.0, 0.0, 1.1, NONNEG)  # the value outside its own interval
    assert _check("x", 0.5, 0.0, float("nan"), (-INF, INF))


# ------------------------------------------------------------------------------------ scorecard
# Keywords of a claim's metric text and the range of the quantity they name (lower case). The one
# found first in the text that describes the value wins: the text after "value =" / "value:" when
# it names the quantity, else the text before "beside" (what the claim measures first).
KEYWORDS = (
    (r"\bauroc\b", UNIT),
    (r"\bspearman\b|\brhos?\b|ρ", (-1.0, 1.0)),
    (r"\br\^2\b|r²", UNIT),  # an in-sample least-squares fit containing the constant (isotonic)
    (r"\bspike cuts?\b", (-INF, 1.0)),  # 1 - fix / baseline
    (r"\bfractions?\b", UNIT),
    (r"max_b eta\*\(b\) / eta\*\(b_max\)", (1.0, INF)),  # a peak over a value it includes
    (r"\bper 1k steps\b", NONNEG),  # a spike rate
    (r"std\(|\|\|u\|\||\brms /", NONNEG),  # a norm, a standard deviation, or a ratio of them
)


def _first_kind(text: str):
    hits = [(m.start(), bounds) for pat, bounds in KEYWORDS for m in [re.search(pat, text)] if m]
    return min(hits, key=lambda h: h[0])[1] if hits else None


def claim_range(metric: str) -> tuple[float, float] | None:
    """The range of the value a scorecard claim's ``metric`` describes; None when it names no quantity
    this knows (then only finiteness and lo <= value <= hi are checked)."""
    text = metric.lower()
    m = re.search(r"\bvalue\s*[=:]", text)
    if m:
        found = _first_kind(text[m.end():])
        if found:
            return found
    return _first_kind(re.split(r"[;,]?\s*beside\b", text)[0])


def _claims() -> list[dict]:
    return json.loads((RESULTS / "scorecard.json").read_text())


def _all_rows() -> list[tuple[str, dict]]:
    """(name, row) of every value with an interval the committed scorecards publish: each claim's
    row in scorecard.json and in heldout/scorecard.json, and each of its rows by spike definition."""
    out = []
    for page in ("scorecard.json", "heldout/scorecard.json"):
        path = RESULTS / page
        if not path.exists():
            continue
        for c in json.loads(path.read_text()):
            out.append((f"{page}:{c['claim']}", c))
            for d, row in (c.get("by_definition") or {}).items():
                out.append((f"{page}:{c['claim']}[{d}]", {**c, **row}))
    return out


def _metric_of(claim: dict, by_id: dict[str, dict]) -> str:
    """A tier's copy ("M6_gpu": "as the cpu tier") measures what its cpu claim measures."""
    base = re.sub(r"_gpu$", "", claim["claim"])
    if claim["metric"].strip().lower().startswith("as the cpu tier") and base in by_id:
        return by_id[base]["metric"]
    return claim["metric"]


# How each committed claim's metric reads (a guard on claim_range: a claim whose metric changes
# so that it reads otherwise fails here, by name, instead of being checked against a wrong range).
READ_AS = {"M0": UNIT, "M1": NONNEG, "M2": UNIT, "M3": (-1.0, 1.0), "M4": NONNEG, "M5": NONNEG, "M6": NONNEG,
           "M7": UNIT, "M8": UNIT, "M9": (-1.0, 1.0), "M10": (-INF, 1.0), "M11": UNIT, "B1": UNIT, "B2": UNIT,
           "W1": UNIT, "W2": UNIT, "S1": (1.0, INF), "Q1": NONNEG, "Q2": UNIT, "Q3": NONNEG, "Q4": UNIT}


def test_claim_ranges_are_read_off_the_metric():
    by_id = {c["claim"]: c for c in _claims()}
    read = {cid: claim_range(_metric_of(c, by_id)) for cid, c in by_id.items() if cid in READ_AS}
    assert read == {cid: READ_AS[cid] for cid in read}
    assert claim_range("something new, mean over seeds") is None


def test_the_committed_scorecard_has_no_interval_outside_its_range():
    """Both committed scorecards (seeds 0-2 and the held-out seeds), every spike definition's row."""
    by_id = {c["claim"]: c for c in _claims()}
    bad, checked = [], 0
    for name, c in _all_rows():
        if c.get("value") is None:  # not run, or nothing measured under that definition
            continue
        bounds = claim_range(_metric_of(c, by_id)) or (-INF, INF)
        v = float(c["value"])
        if c.get("ci_low") is None or c.get("ci_high") is None:
            if not (math.isfinite(v) and bounds[0] <= v <= bounds[1]):
                bad.append(f"{name}: value {v} outside {bounds}")
            continue
        bad += _check(name, v, float(c["ci_low"]), float(c["ci_high"]), bounds)
        checked += 1
    assert checked >= 30, "the committed scorecards should have intervals to check"
    assert not bad, "\n".join(bad)


# ------------------------------------------------------------------------ the drawn intervals
def _named_arm_runs():
    """Two named arms, 2 seeds of 1000 steps each: ``calm`` has no spike, ``spiky`` 3 and 1."""
    runs, frames = [], []
    for arm, per_seed in (("calm", ((), ())), ("spiky", ((200, 400, 600), (500,)))):
        for seed, at in enumerate(per_seed):
            rid = f"{arm}-{seed}"
            x = np.ones(1000)
            for t in at:
                x[t:t + 3] = 50.0
            runs.append({"run_id": rid, "experiment": "x", "seed": seed, "status": "done", "label": arm})
            frames.append(pd.DataFrame({"step": np.arange(1000), "metric": "loss", "value": x, "run_id": rid,
                                        "experiment": "x", "seed": seed, "status": "done"}))
    return pd.concat(frames, ignore_index=True), pd.DataFrame(runs)


def test_the_spike_rate_figure_draws_the_pooled_poisson_interval():
    import matplotlib.pyplot as plt

    from replicate.report import figures
    from replicate.report.figures.spike_rates import KINDS
    from replicate.stats import rate_interval

    metrics, runs = _named_arm_runs()
    fig = figures.fig_spike_rates(metrics, runs, "x")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("pooled rate, exact Poisson 95% interval" in s for s in labels)
    bars = {}
    for container in ax.containers:  # errorbar containers: (line, caps, (the vertical bar collection,))
        label = container.get_label()
        segs = container.lines[2][0].get_segments()
        pts = container.lines[0].get_ydata()
        bars[label] = [(float(y), float(s[0][1]), float(s[1][1])) for y, s in zip(pts, segs)]
    h3 = next(v for k, v in bars.items() if k.startswith("R3 (primary)"))
    # calm: 0 in 2000 steps; spiky: 4 in 2000 steps (arms in sorted order)
    assert h3 == [pytest.approx(rate_interval([0, 0], [1000, 1000])), pytest.approx(rate_interval([3, 1], [1000, 1000]))]
    assert all(lo >= 0 for bars_of in bars.values() for _, lo, _ in bars_of)
    plt.close(fig)
    caption = next(k for k in KINDS if k.name == "spike_rates").caption
    assert "pooled" in caption and "Poisson" in caption and "t interval" not in caption


def test_the_leaderboard_figure_names_its_intervals():
    import matplotlib.pyplot as plt

    from replicate import leaderboard
    from replicate.report import figures

    metrics, runs = _named_arm_runs()
    runs = runs.assign(**{"model.name": "mlp", "optimizer.lr": 3e-3})
    board = leaderboard.summarize(leaderboard.run_table(metrics, runs))
    assert (board[[c for c in board.columns if c.endswith("_lo")]].fillna(0) >= 0).all().all()
    fig = figures.fig_leaderboard(board)
    labels = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert "spikes R3 (primary): rate pooled over seeds, exact Poisson 95% interval" in labels
    assert all(f"spikes {d}: rate pooled over seeds, exact Poisson 95% interval" in labels for d in ("R10", "R100", "Z6"))
    assert "final loss: mean over seeds, 95% t interval clipped at 0" in labels
    plt.close(fig)
