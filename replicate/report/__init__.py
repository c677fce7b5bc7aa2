"""The report: every figure and ``results/report/index.html`` from ``results/`` alone, no training.

``python -m replicate.report [results_dir]`` (``make report`` runs the scorecard first) writes
``<results_dir>/report/figures/<experiment>_<kind>.png`` and ``.svg`` and
``<results_dir>/report/index.html``: the scorecard table first (``scorecard.json``, with its
held-out column: each claim's verdict on the held-out seeds, flagged unstable where it differs),
then one section per claim (anchor ``claim-<ID>``) with what was run and its experiment's figures,
then the mitigation leaderboard and the optimizer throughput. The page is self-contained (relative links,
readable from file:// without a server).

The table leads with what a reader needs: each claim's one-line statement, its verdict, whether
the runs reached the claim's premise, its robustness over the four spike definitions (``robust`` or
those that differ from R3's verdict), the held-out seeds' verdict, the value with its interval and
the threshold (⚑ where a true claim could not pass it, with the verdict under the derived one).
Each spike claim's section has the grid of its verdicts by definition (rows) and seed set (columns).

Figures are ``fig_*`` functions in ``replicate.report.figures``, one module per figure family,
each declaring its ``KINDS`` beside its function; which ones an experiment gets
depends on what its runs logged (``FIGURES``: probes, curvature, a sweep), plus the ones a claim
always shows (``@claim(figures=...)`` in replicate/claims/: ``Claim.figures``). A figure that has
no data, or fails, shows a "no data for this figure" box with the reason in its place; it never
fails the report.

Seeds: the figures, like the scorecard and the leaderboard, read the runs of
``results.PRIMARY_SEEDS`` only (``SEEDS``); runs of held-out seeds in the same ``runs/`` folder
(``make replicate SEEDS=10,11,12``) reach the page only through the scorecard's held-out column.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import json
import math
import os
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Callable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.transforms import Bbox
from PIL import Image
from markupsafe import escape

from .. import results, spikes
from .figures import (arm_labels, bench_table, episodes, fig_curvature, fig_grad_rms, fig_leaderboard,  # noqa: F401
                      fig_loss_curves, fig_rms_lead, fig_spike_rates, fig_throughput, fig_update_histograms,
                      lighten_ticks, spike_table, varied_keys, SWEEP_KEYS, _natural_arms)
from .figures import curvature, halflife, histograms, layers, loss, slingshot, spike_rates  # the figure families
from .figures.kinds import Data, Kind

DPI = 110
MARGIN = 3.0  # inches drawn around a figure before it is cut to its ink (``_save``)


# The per-experiment figure kinds, in the page's order: each family module declares its own
# (``KINDS``: name, title, when it applies, how it is drawn, caption, why missing) beside its figure.
FIGURES: list[Kind] = [*loss.KINDS, *slingshot.KINDS, *spike_rates.KINDS, *halflife.KINDS, *histograms.KINDS,
                       *layers.KINDS, *curvature.KINDS]

SEEDS = results.PRIMARY_SEEDS  # the runs the figures are drawn from

VCLASS = {"replicated": "v-replicated", "not replicated": "v-not-replicated", "inconclusive": "v-inconclusive",
          "answered": "v-answered", "out of regime": "v-out-of-regime"}


# ------------------------------------------------------------------------------------ figures
def _save(fig, out: Path, name: str) -> Path:
    """PNG and SVG of ``fig`` cut to its tight bounding box (plus ``savefig.pad_inches``).

    ``bbox_inches="tight"`` measures that box with a layout pass of its own over every axes' ticks
    and text, on every save. Here the PNG is drawn once on a canvas with ``MARGIN`` inches around
    the figure (room for legends beside the grid) and cut where the ink is; the SVG reuses the cut.
    Ink touching the margin's edge, or a legend or placed text beyond it, falls back to the measured
    box."""
    fig.set_dpi(DPI)
    lighten_ticks(fig)  # figures that skipped figures.tight()
    pad = plt.rcParams["savefig.pad_inches"]
    w, h = fig.get_size_inches()
    area = Bbox.from_extents(-MARGIN, -MARGIN, w + MARGIN, h + MARGIN)
    buf = io.BytesIO()
    fig.savefig(buf, format="rgba", dpi=DPI, bbox_inches=area)
    rgba = np.frombuffer(buf.getvalue(), np.uint8)
    # the canvas is the area in pixels, each side truncated after float arithmetic: within one
    sizes = [(W, H) for W in _near(area.width * DPI) for H in _near(area.height * DPI) if W * H * 4 == rgba.size]
    ink = None
    if len(sizes) == 1:
        (W, H), = sizes
        rgba = rgba.reshape(H, W, 4)
        px = rgba.view(np.uint32)[..., 0]  # one RGBA pixel per 32-bit word
        ink = px != px[0, 0]
        rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if (ink is None or not len(rows) or rows[0] == 0 or cols[0] == 0 or rows[-1] == H - 1 or cols[-1] == W - 1
            or _beyond(fig, area)):
        bbox = fig.get_tightbbox(fig.canvas.get_renderer()).padded(pad)
        fig.savefig(out / f"{name}.png", dpi=DPI, bbox_inches=bbox)
    else:
        p = round(pad * DPI)
        y0, y1 = max(rows[0] - p, 0), min(rows[-1] + 1 + p, H)
        x0, x1 = max(cols[0] - p, 0), min(cols[-1] + 1 + p, W)
        Image.fromarray(rgba[y0:y1, x0:x1]).save(out / f"{name}.png", dpi=(DPI, DPI))
        bbox = Bbox.from_extents(x0 / DPI - MARGIN, (H - y1) / DPI - MARGIN, x1 / DPI - MARGIN, (H - y0) / DPI - MARGIN)
    with plt.rc_context({"svg.hashsalt": name}):  # the same figure, the same bytes: no date, fixed ids
        fig.savefig(out / f"{name}.svg", dpi=DPI, bbox_inches=bbox, metadata={"Date": None})
    plt.close(fig)
    return out / f"{name}.png"


def _beyond(fig, area) -> bool:
    """Whether a legend or a placed text (of the figure or an Axes) lies partly outside ``area``
    (inches): the ones placed by hand, beside the grid. Ink alone misses a text whose glyphs beyond
    the edge start after it."""
    renderer, inches = fig.canvas.get_renderer(), fig.dpi_scale_trans.inverted()
    placed = [*fig.legends, *fig.texts, *(a for ax in fig.axes for a in (ax.get_legend(), *ax.texts) if a is not None)]
    for a in placed:
        if a.get_visible():
            b = a.get_window_extent(renderer).transformed(inches)
            if b.x0 < area.x0 or b.y0 < area.y0 or b.x1 > area.x1 or b.y1 > area.y1:
                return True
    return False


def _near(x: float) -> range:
    return range(max(int(x) - 1, 1), int(x) + 2)


def _drop(out: Path, name: str) -> None:
    for ext in ("png", "svg"):
        (out / f"{name}.{ext}").unlink(missing_ok=True)


def _figure(out: Path, name: str, title: str, caption: str, needs: str, draw: Callable[[], object]) -> dict:
    """Draw one figure; save PNG and SVG, or describe the placeholder that takes its place."""
    entry = {"name": name, "title": title, "caption": caption, "anchor": f"fig-{name}", "png": None,
             "svg": None, "reason": needs}
    t0 = time.process_time()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # empty slices and tight_layout chatter
            fig = draw()
    except Exception as e:  # a broken figure never breaks the report
        traceback.print_exc(file=sys.stderr)
        plt.close("all")
        fig = None
        entry["reason"] = str(escape(f"drawing it failed ({type(e).__name__}: {e})"))
    if fig is None:
        _drop(out, name)
        return entry
    png = _save(fig, out, name)
    entry["png"], entry["svg"] = f"figures/{name}.png", f"figures/{name}.svg"
    with Image.open(png) as im:  # the page reserves the image's box before it loads (no jumps)
        entry["width"], entry["height"] = im.size
    entry["cpu_s"] = time.process_time() - t0
    return entry


def experiment_figures(data: Data, out: Path, demanded: set[str] = frozenset()) -> dict[str, dict]:
    """kind -> figure entry for every kind that applies to ``data`` or is ``demanded``."""
    shown = {}
    for k in FIGURES:
        try:
            applies = k.applies(data)
        except Exception:
            applies = False
        if not (applies or k.name in demanded):
            _drop(out, f"{data.experiment}_{k.name}")
            continue
        shown[k.name] = _figure(out, f"{data.experiment}_{k.name}", k.title, k.caption, k.needs,
                                lambda k=k: k.draw(data))
    return shown


# ------------------------------------------------------------------------------------ the page
def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def _claim_rows(scorecard: list[dict], figs: dict[str, dict[str, dict]], runs: pd.DataFrame) -> list[dict]:
    rows = []
    for r in scorecard:
        exp = r.get("experiment")
        verdict = r.get("verdict", "")
        ran = exp in figs and bool(r.get("runs"))
        kinds = figs.get(exp, {})
        order = [k.name for k in FIGURES]
        chosen = [kinds[n] for n in order if n in kinds]
        seeds = r.get("seeds") or []
        lo, hi = r.get("ci_low"), r.get("ci_high")
        rr = runs[runs["experiment"] == exp] if not runs.empty and exp else pd.DataFrame()
        n_runs = len(r.get("runs") or [])
        what = (f"Experiment <code>{exp}</code> (<code>conf/experiment/{exp}.yaml</code>, whose header names the "
                f"paper, the workload and why): {n_runs} finished runs, seeds {', '.join(map(str, seeds)) or '–'}, "
                f"{_fmt(r.get('runtime_s'))} s of training in all. ") if ran else ""
        if ran and not rr.empty:
            arms = _natural_arms(rr.assign(arm=arm_labels(rr)))
            if arms != ["all runs"]:
                what += f"Arms: {escape(', '.join(arms[:12]))}{' …' if len(arms) > 12 else ''}. "
        what += (f"The verdict is {escape(verdict)}: measured {_fmt(r.get('value'))} against the threshold "
                 f"{escape(r.get('threshold'))}.") if ran else ""
        reason = verdict[verdict.find("(") + 1:-1] if "(" in verdict else ""
        notrun = (f"Not run: {reason}." if reason else
                  f"Not run: no finished runs of <code>{escape(exp)}</code> under this results folder." if exp else
                  "Not run.")
        held = r.get("heldout") or {}
        held_verdict = held.get("verdict") or "not run"
        held_seeds = held.get("seeds") or []
        held_s = (f"{held_verdict}: measured {_fmt(held.get('value'))} (seeds {', '.join(map(str, held_seeds))})"
                  if held_seeds else held_verdict)
        by, held_by = r.get("by_definition") or {}, held.get("by_definition") or {}
        grid = [{"definition": d, **{f"{k}verdict": (b.get(d) or {}).get("verdict") or "not run" for k, b in
                                      (("", by), ("heldout_", held_by))}} for d in by]
        for g in grid:
            g["vclass"], g["heldout_vclass"] = (VCLASS.get(g["verdict"], "v-not-run"),
                                                VCLASS.get(g["heldout_verdict"], "v-not-run"))
        rows.append({**r, "anchor": f"claim-{r['claim']}", "notrun": notrun, "vclass": VCLASS.get(verdict, "v-not-run"),
                     "robust_s": r.get("robustness") or "–", "grid": grid,
                     "corrected_vclass": VCLASS.get(r.get("corrected") or "", "v-not-run"),
                     "heldout_verdict": held_verdict, "heldout_vclass": VCLASS.get(held_verdict, "v-not-run"),
                     "heldout_s": held_s, "unstable": r.get("stable") is False,
                     "premise_s": {None: "–", True: "reached", False: "not reached"}[r.get("premise_held")],
                     "value_s": _fmt(r.get("value")),
                     "interval_s": f"[{_fmt(lo)}, {_fmt(hi)}]" if lo is not None and hi is not None else "–",
                     "seeds_s": ",".join(map(str, seeds)) or "–", "ran": ran, "what": what, "figures": chosen,
                     "detail": r.get("detail") or ""})
    return rows


def _heldout_head(scorecard: list[dict]) -> str:
    """The held-out column's header: ``held-out (seeds 10,11,12)``, or ``held-out`` when not run."""
    seed_set = sorted({int(x) for r in scorecard for x in (r.get("heldout") or {}).get("seed_set") or []})
    return f"held-out (seeds {','.join(map(str, seed_set))})" if seed_set else "held-out"


def _experiment_task(task) -> dict[str, dict]:
    root, exp, runs, demanded = task
    data = Data(root, exp, runs, results.load(root, experiment=exp, seeds=SEEDS),
                results.load_histograms(root, experiment=exp, seeds=SEEDS))
    return experiment_figures(data, root / "report" / "figures", demanded)


def _leaderboard_figure(out: Path, board: pd.DataFrame, has_md: bool) -> dict:
    """The mitigation leaderboard's figure entry (``board``: ``replicate.leaderboard.table``)."""
    return _figure(out, "leaderboard", "Mitigation leaderboard",
                   "Per workload, spike episodes per 1k steps under R3 (the primary definition: loss > 3× the median "
                   "of the previous 100 steps, until back under 1.2×), with R10, R100 and Z6 (OLMo-core's 6σ rule) "
                   "beside it, and the final loss (median of the last 5% of steps) per mitigation arm: each rate "
                   "pooled over seeds with its exact Poisson 95% interval, the final loss's mean with its 95% t "
                   "interval over seeds clipped at 0, fewest R3 spikes first (<code>conf/experiment/mitigations.yaml</code>, arms in "
                   "<code>conf/arm/mitigations/</code>; numbers from <code>replicate/leaderboard.py</code>"
                   + (", also in <a href=\"../leaderboard.md\">leaderboard.md</a>" if has_md else "")
                   + ").",
                   "no runs of the <code>mitigations</code> experiment yet",
                   lambda: fig_leaderboard(board) if not board.empty else None)


def _demanded(scorecard: list[dict]) -> dict[str, set[str]]:
    """experiment -> the figure kinds its claims always show (``Claim.figures``), from the claims'
    registry and from ``scorecard`` (whose rows may name other experiments)."""
    from ..claims import CLAIMS, _load_modules

    _load_modules()
    pairs = [(c.id, c.experiment) for c in CLAIMS.values()] + [(r["claim"], r.get("experiment")) for r in scorecard]
    demanded: dict[str, set[str]] = {}
    for claim, exp in pairs:
        if exp:
            demanded.setdefault(exp, set()).update(CLAIMS[claim].figures if claim in CLAIMS else [])
    return demanded


def build(root: Path | str = "results", workers: int | None = None, tables: bool = False) -> list[Path]:
    """Write every figure under ``root/report/figures`` (PNG and SVG) and ``root/report/index.html``;
    return the PNG paths written. ``workers``: processes drawing experiments side by side (default:
    the CPU count, at most 2). ``tables`` (``make report``): first write ``scorecard.{json,md}`` and
    ``leaderboard.md`` too, in this process while the workers draw."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    from .. import leaderboard, scorecard as card

    root = Path(root)
    out = root / "report" / "figures"
    out.mkdir(parents=True, exist_ok=True)
    card_path = root / "scorecard.json"
    runs = results.runs(root, seeds=SEEDS)
    demanded = _demanded(json.loads(card_path.read_text()) if card_path.exists() and not tables else [])
    experiments = sorted(runs.loc[runs["status"].isin(results.FINISHED), "experiment"].unique()) if not runs.empty else []
    todo = [e for e in experiments if e != "mitigations"]  # mitigations: drawn as the leaderboard below
    # the experiments with the most logged data first, so two workers finish together
    size = {e: sum(f.stat().st_size for f in (root / "runs" / e).glob("*/*.parquet")) for e in todo}
    todo.sort(key=lambda e: -size[e])
    workers = max(1, min(workers if workers is not None else (os.cpu_count() or 1), 2, len(todo)))
    tasks = [(root, e, runs[runs["experiment"] == e], demanded.get(e, set())) for e in todo]

    def here() -> dict:
        """This process's share: the tables (when asked) and the leaderboard figure."""
        if tables:
            card.write(root)
        board = leaderboard.table(root)
        if tables:
            results.atomic_write(root / "leaderboard.md", leaderboard.markdown(board) + "\n")
        return _leaderboard_figure(out, board, (root / "leaderboard.md").exists())

    if workers > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
            futures = [pool.submit(_experiment_task, t) for t in tasks]
            lb = here()
            done = [f.result() for f in futures]
    else:
        lb = here()
        done = [_experiment_task(t) for t in tasks]
    scorecard = json.loads(card_path.read_text()) if card_path.exists() else []
    figs: dict[str, dict[str, dict]] = {e: f for e, f in zip(todo, done)}

    extra = []
    extra.append({"anchor": "mitigations", "title": "Mitigations",
                  "text": "The fixes of CLAIMS.md compared on the same spiking workloads (compared, not judged by one "
                          "threshold).", "figures": [lb]})
    tp = _figure(out, "throughput", "Optimizer step throughput",
                 "Achieved GB/s of one optimizer step (counted bytes per parameter, <code>replicate/bench.py</code>, "
                 "over the median step time) per variant, eager (foreach) and compiled, beside torch.optim.AdamW, "
                 "in fp32 and with bf16 params (fp32 master and state; torch's AdamW has no such layout), "
                 "with the device's copy bandwidth (dashed; measured beside each benchmark, median), from "
                 "<code>results/bench/*.json</code> (<code>make bench</code>). On a CPU the copy understates "
                 "the bandwidth (it pays write-allocate, an in-place step does not), so bars can pass it. "
                 "Timings on a shared machine are noisy: see the README's Speed section.",
                 "no benchmark JSON under <code>results/bench/</code> (run <code>make bench</code>)",
                 lambda: fig_throughput(bench_table(root)))
    extra.append({"anchor": "speed", "title": "Speed", "text": "What one optimizer step costs, per variant.",
                  "figures": [tp]})
    claimed = {r.get("experiment") for r in scorecard}
    for exp in experiments:
        if exp in claimed or exp not in figs:
            continue
        extra.insert(-2, {"anchor": f"exp-{exp}", "title": f"Experiment {exp} (no claim)",
                      "text": f"Runs of <code>{exp}</code>, which no claim judges.",
                      "figures": list(figs[exp].values())})

    env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                      autoescape=select_autoescape(["html", "j2"]))
    html = env.get_template("index.html.j2").render(
        root_name=root.name, built=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        n_runs=int(runs["status"].isin(results.FINISHED).sum()) if not runs.empty else 0,
        n_experiments=len(experiments), claims=_claim_rows(scorecard, figs, runs), extra=extra,
        seeds_s=",".join(map(str, SEEDS)), heldout_head=_heldout_head(scorecard), primary=spikes.PRIMARY,
        has_scorecard_md=(root / "scorecard.md").exists(), has_scorecard_json=card_path.exists())
    results.atomic_write(root / "report" / "index.html", html)
    entries = [f for v in figs.values() for f in v.values()] + [lb, tp]
    for f in entries:
        if f["png"]:
            print(f"wrote {root / 'report' / f['png']} and .svg ({f['cpu_s']:.1f} s CPU)")
    return [root / "report" / f["png"] for f in entries if f["png"]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results_dir", nargs="?", default="results")
    p.add_argument("--tables", action="store_true",
                   help="write scorecard.{json,md} and leaderboard.md too, beside the figures (make report)")
    args = p.parse_args(argv)
    results.require_runs(args.results_dir)
    build(args.results_dir, tables=args.tables)
    print(f"wrote {Path(args.results_dir) / 'report' / 'index.html'}")
    return 0
