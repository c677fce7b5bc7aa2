"""The report builds every figure and index.html from results/ alone, and never fails on missing data."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from replicate import report, results
from replicate.report import figures

from conftest import write_run as _write_run

LAYERS = ("layer0", "layer1", "layer2")
SPIKES_AT = (150, 260, 340)  # steps where the synthetic loss jumps 20x


def _spiky_metrics(seed: int, steps: int = 400, lr: float = 1e-3) -> pd.DataFrame:
    """A loss that jumps 20x at SPIKES_AT (shifted by the seed), with precursors: RMS_t of layer0
    above 1 and lambda_grad above 2/eta from 3 steps before each jump."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    loss = 1e-3 * (1 + 0.05 * rng.standard_normal(steps))
    rms = {layer: np.full(steps, 0.05 * (k + 1)) for k, layer in enumerate(LAYERS)}
    lam_grad = np.full(steps, 0.5 * 2 / lr)
    for s in SPIKES_AT:
        s += seed
        loss[s:s + 4] *= [20, 12, 5, 2]
        rms["layer0"][s - 3:s + 2] = 3.0
        lam_grad[s - 3:s + 1] = 4 / lr
    df = pd.DataFrame({"step": t, "loss": loss, "lr": lr, "lambda_max_Hhat": 19 * 2 / lr,
                       "lambda_grad_Hhat": lam_grad, "threshold_2_over_lr": 2 / lr, "threshold_momentum": 38 / lr})
    for k, layer in enumerate(LAYERS):
        df[f"rms_g2_over_v/{layer}"] = rms[layer]
        df[f"grad_rms/{layer}"] = 1e-3 * (k + 1) * np.exp(-t / 200)
        df[f"frac_sqrtv_below_eps/{layer}"] = np.clip(t / steps - 0.3 * k, 0, 1)
        df[f"u_over_r/{layer}"] = 1 - df[f"frac_sqrtv_below_eps/{layer}"] * 0.9
    return df


def _hist(steps: int = 400, every: int = 10) -> pd.DataFrame:
    rows = []
    for step in range(0, steps, every):
        for layer in LAYERS:
            for q in ("r", "u"):
                counts = np.exp(-np.linspace(-3, 3, 64) ** 2) * 1000
                counts[[0, -1]] = 50 * (step > 200)
                rows.append({"step": step, "layer": layer, "quantity": q, "lo": -1.25, "hi": 1.25,
                             "counts": counts.astype(np.int64)})
    return pd.DataFrame(rows)


def _scorecard(root: Path, rows: list[dict]) -> None:
    base = {"source": "Paper et al.", "metric": "a metric", "value": None, "ci_low": None, "ci_high": None,
            "threshold": "x < 0.1", "verdict": "not run", "seeds": [], "runtime_s": 0.0, "experiment": None,
            "statement": "a statement", "detail": "", "runs": []}
    (root / "scorecard.json").write_text(json.dumps([{**base, **r} for r in rows]))
    (root / "scorecard.md").write_text("# scorecard\n")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A small results folder: a spiking sweep (b2 x batch size, 3 seeds) with every probe,
    a scorecard with a judged, an unrun and a gpu claim, a benchmark JSON; no mitigation runs."""
    root = tmp_path_factory.mktemp("report") / "results"
    ids = []
    for b2 in (0.9, 0.999):
        for batch in (16, None):
            for seed in (0, 1, 2):
                cfg = {"optimizer": {"name": "adam", "b2": b2, "eps": 1e-3, "lr": 1e-3},
                       "data": {"batch_size": batch}}
                ids.append(_write_run(root, "synth", seed, cfg, _spiky_metrics(seed), _hist()))
    _scorecard(root, [
        {"claim": "W1", "verdict": "replicated", "value": 0.9, "ci_low": 0.8, "ci_high": 1.0, "seeds": [0, 1, 2],
         "experiment": "synth", "runs": ids, "detail": "a < b & c > d"},
        {"claim": "M3", "verdict": "not run (no experiment yet)"},
        {"claim": "M8", "verdict": "not run", "experiment": "never_ran"},
    ])
    bench = {"benchmarks": [
        {"name": f"step[{v}-{m}]", "stats": {"rounds": 5},
         "extra_info": {"kind": "optimizer_step", "variant": v, "mode": m, "device": "CPU X", "dtype": "fp32",
                        "params": 1_000_000, "gbps": g, "bandwidth_fraction": g / 30, "copy_gbps": 30.0}}
        for v, m, g in [("adam", "eager", 8.0), ("adam", "compiled", 25.0), ("torch_adamw", "fused", 35.0)]]}
    (root / "bench").mkdir()
    (root / "bench" / "cpu-x.json").write_text(json.dumps(bench))
    written = report.build(root)
    return root, written


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        for key in ("src", "href"):
            if a.get(key):
                self.refs.append(a[key])


def test_every_figure_and_every_link_of_the_report_exists(synthetic):
    root, written = synthetic
    out = root / "report" / "figures"
    names = {p.name for p in written}
    for kind in ("loss", "spike_rates", "update_histograms", "grad_rms", "curvature", "rms_lead"):
        assert f"synth_{kind}.png" in names
        assert (out / f"synth_{kind}.svg").stat().st_size > 5_000
    assert "throughput.png" in names
    html = (root / "report" / "index.html").read_text()
    parser = _Links()
    parser.feed(html)
    assert len(parser.refs) > 15
    for ref in parser.refs:
        assert "://" not in ref and not ref.startswith("/"), f"not a relative link: {ref}"
        if ref.startswith("#"):
            assert ref[1:] in parser.ids, f"dangling anchor {ref}"
        else:
            assert (root / "report" / ref).exists(), f"broken link {ref}"
    # the scorecard table comes first and links every claim to its section
    assert html.index('id="scorecard"') < html.index('id="claim-W1"')
    for cid in ("W1", "M3", "M8"):
        assert f'href="#claim-{cid}"' in html and f'id="claim-{cid}"' in html
    assert "a &lt; b &amp; c &gt; d" in html  # scorecard text is escaped, not injected


def test_figures_without_data_show_the_placeholder_and_claims_without_runs_say_not_run(synthetic):
    root, _ = synthetic
    html = (root / "report" / "index.html").read_text()
    assert "No data for this figure (Mitigation leaderboard)" in html
    assert not (root / "report" / "figures" / "leaderboard.png").exists()
    section = html[html.index('id="claim-M8"'):]
    assert "Not run" in section[:600]


def test_every_figure_has_labelled_axes_a_legend_and_the_seed_count(synthetic):
    root, _ = synthetic
    runs, metrics = results.runs(root), results.load(root)
    hist = results.load_histograms(root)
    drawn = {
        "loss": figures.fig_loss_curves(metrics, runs, "synth"),
        "rates": figures.fig_spike_rates(metrics, runs, "synth"),
        "hist": figures.fig_update_histograms(hist, "synth", metrics=metrics, runs=runs),
        "grad_rms": figures.fig_grad_rms(metrics, runs, "synth"),
        "curvature": figures.fig_curvature(metrics, runs, "synth"),
        "rms": figures.fig_rms_lead(metrics, runs, "synth"),
        "throughput": figures.fig_throughput(figures.bench_table(root)),
    }
    for name, fig in drawn.items():
        assert fig is not None, name
        axes = [ax for ax in fig.axes if ax.get_visible() and ax.axison and ax.get_label() != "<colorbar>"]
        assert axes, name
        for ax in axes:
            assert ax.get_xlabel() or ax.get_xticklabels() == [] or not ax.get_xaxis().get_visible() \
                or _shares_labelled_column(fig, ax), f"{name}: unlabelled x axis"
        assert any(ax.get_ylabel() for ax in axes), f"{name}: no y label"
        texts = " ".join([fig._suptitle.get_text() if fig._suptitle else ""] + [ax.get_title() for ax in fig.axes])
        assert "seed" in texts, f"{name}: no seed count in the titles"
        has_legend = bool(fig.legends) or any(ax.get_legend() for ax in fig.axes) or \
            any(ax.get_label() == "<colorbar>" for ax in fig.axes)
        assert has_legend, f"{name}: no legend"
    # the heatmap branch: two swept keys give a heatmap with a colour bar
    assert any(ax.get_label() == "<colorbar>" for ax in drawn["rates"].axes)
    assert "3 seeds" in drawn["loss"]._suptitle.get_text()


def _shares_labelled_column(fig, ax) -> bool:
    """A panel above another in the same column (shared x) may leave the label to the one below."""
    x0 = ax.get_position().x0
    return any(o is not ax and abs(o.get_position().x0 - x0) < 0.05 and o.get_xlabel() and
               o.get_position().y0 < ax.get_position().y0 for o in fig.axes)


def test_spike_rates_and_event_alignment_measure_the_synthetic_spikes(synthetic):
    root, _ = synthetic
    table = figures.spike_table(results.load(root, metrics=["loss"]), results.runs(root), "synth")
    assert len(table) == 12
    assert np.allclose(table["spikes_R3"], 3 / 400 * 1000)  # 3 spikes in 400 steps in every run
    assert {"spikes_R10", "spikes_R100", "spikes_Z6"} <= set(table.columns)
    assert np.allclose(table["spikes_R10"], 3 / 400 * 1000) and (table["spikes_R100"] == 0).all()  # 20x jumps
    eps = figures.episodes(results.load(root, metrics=["loss"]))
    assert len(eps) == 36 and set(eps["height"].round(-1)) == {20.0}
    wide = figures._per_run(results.load(root), ["rms_g2_over_v/layer0"])
    al = figures._aligned(wide, eps, ["rms_g2_over_v/layer0"], before=5, after=2)
    med = al.groupby("offset")["value"].median()
    assert med.loc[-3] == 3.0 and med.loc[-4] == 0.05  # the precursor is 3 steps before every rise


def test_the_spike_heatmap_draws_one_panel_per_other_arm_never_an_average_over_them():
    runs, frames = [], []
    for i, (b2, batch, opt, seed) in enumerate((b2, batch, opt, seed) for b2 in (0.9, 0.999) for batch in (16, 64)
                                               for opt in ("adam", "lion") for seed in (0, 1)):
        rid = f"r{i}"
        runs.append({"run_id": rid, "experiment": "x", "seed": seed, "status": "done", "optimizer.name": opt,
                     "optimizer.b2": b2, "data.batch_size": batch})
        m = _spiky_metrics(seed)[["step", "loss"]]
        if opt == "lion":  # no spikes at all for lion
            m["loss"] = 1e-3
        frames.append(m.melt(id_vars="step", var_name="metric").assign(run_id=rid, experiment="x", seed=seed,
                                                                          status="done"))
    fig = figures.fig_spike_rates(pd.concat(frames), pd.DataFrame(runs), "x")
    heatmaps = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert sorted(ax.get_title() for ax in heatmaps) == ["optimizer=adam", "optimizer=lion"]
    lion = next(ax for ax in heatmaps if ax.get_title() == "optimizer=lion")
    assert {t.get_text().split("\n")[0] for t in lion.texts} == {"0.0"}


def test_a_figure_that_fails_becomes_a_placeholder_not_a_failed_report(tmp_path, monkeypatch):
    root = tmp_path / "results"
    _write_run(root, "tiny", 0, {"optimizer": {"b2": 0.9}}, _spiky_metrics(0))

    def broken(d):
        raise RuntimeError("boom")
    loss = next(k for k in report.FIGURES if k.name == "loss")
    monkeypatch.setattr(report, "FIGURES", [report.Kind("loss", loss.title, loss.applies, broken, "", "")])
    assert report.build(root) == []
    html = (root / "report" / "index.html").read_text()
    assert "No data for this figure (Loss curves): drawing it failed (RuntimeError: boom)" in html


def test_every_figure_family_declares_its_kinds_and_the_report_collects_each_once_in_page_order():
    """A figure kind is one function and its ``Kind`` in its family module (``KINDS``);
    ``report.FIGURES`` holds every module's kinds, once each, in the page's fixed order."""
    import importlib
    import pkgutil

    declared = []
    for m in pkgutil.iter_modules(figures.__path__):
        declared += list(getattr(importlib.import_module(f"{figures.__name__}.{m.name}"), "KINDS", ()))
    assert declared and all(isinstance(k, report.Kind) for k in declared)
    assert all(k.title and k.caption and k.needs and callable(k.applies) and callable(k.draw) for k in declared)
    names = [k.name for k in report.FIGURES]
    assert len(set(names)) == len(names)
    assert sorted(map(id, report.FIGURES)) == sorted(map(id, declared))  # collected: all of them, nothing else
    assert names == ["loss", "slingshot", "spike_rates", "halflife", "update_histograms", "grad_rms", "curvature",
                     "rms_lead"]


def test_report_draws_loss_curves_per_arm_from_real_runs(cfg_factory, tmp_path):
    from replicate import train

    root = tmp_path / "results"
    for b2 in ("0.9", "0.999"):
        for seed in (0, 1):
            train.run(cfg_factory("model=quadratic", "data=none", "train.steps=30", "name=demo",
                                  "model.x0_spread=0.5", f"optimizer.b2={b2}", f"seed={seed}", results_dir=root))
    written = report.build(root)
    assert "demo_loss.png" in [p.name for p in written]
    assert (root / "report/figures/demo_loss.svg").exists() and (root / "report/figures/demo_loss.png").stat().st_size > 10_000
    assert sorted(set(figures.arm_labels(results.runs(root)))) == ["b2=0.9", "b2=0.999"]
    assert "demo" in (root / "report" / "index.html").read_text()


def test_report_on_an_empty_folder_writes_the_page_and_does_not_fail(tmp_path):
    assert report.build(tmp_path) == []
    html = (tmp_path / "report" / "index.html").read_text()
    assert "No scorecard yet" in html and "No data for this figure" in html


@pytest.mark.parametrize("cli", ["report", "scorecard", "leaderboard"])
def test_without_raw_runs_the_clis_keep_the_committed_outputs_and_say_why(tmp_path, capsys, cli):
    """A fresh clone has the committed scorecard and report but no results/runs (not in git):
    rebuilding would overwrite every verdict with "not run"; each CLI refuses in one line instead."""
    import importlib

    kept = {tmp_path / "scorecard.json": "[1]", tmp_path / "leaderboard.md": "# board",
            tmp_path / "report" / "index.html": "<html>"}
    for path, text in kept.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    main = importlib.import_module(f"replicate.{cli}").main
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path), *(["--tables"] if cli == "report" else [])])
    msg = str(e.value.code)
    assert msg.startswith("error: no runs under") and "make replicate" in msg and "\n" not in msg
    assert {p: p.read_text() for p in kept} == kept
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["index.html", "leaderboard.md", "scorecard.json"]


def test_make_reports_tables_are_those_of_the_scorecard_and_leaderboard_clis(cfg_factory, tmp_path):
    """``build(tables=True)`` (what ``make report`` runs) writes the same scorecard and leaderboard
    as ``python -m replicate.scorecard`` / ``.leaderboard`` on the same runs."""
    from replicate import leaderboard, scorecard, train

    root = tmp_path / "results"
    train.run(cfg_factory("model=quadratic", "data=none", "train.steps=30", "name=demo", results_dir=root))
    assert scorecard.main([str(root)]) == 0 and leaderboard.main([str(root)]) == 0
    by_cli = {n: (root / n).read_text() for n in ("scorecard.json", "scorecard.md", "leaderboard.md")}
    for n in by_cli:
        (root / n).unlink()
    assert report.main([str(root), "--tables"]) == 0
    assert {n: (root / n).read_text() for n in by_cli} == by_cli


def test_saved_figures_are_cut_to_their_ink_and_keep_what_sticks_out(tmp_path):
    """``_save`` cuts PNG and SVG to the drawn ink (plus the pad): a legend beside the figure is
    kept, blank figure area is not, and ink beyond the drawing margin falls back to matplotlib's
    measured tight box instead of being cut off."""
    import matplotlib.pyplot as plt
    from PIL import Image

    def fig_with(text_x: float, on_axes: bool = False):
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.plot([0, 1], [0, 1], label="a line")
        fig.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))  # beside the figure, outside it
        # a figure text is checked by its extent, an axes' text only by its ink
        (ax.text(text_x, 0.5, "far text", transform=fig.transFigure, clip_on=False) if on_axes else fig.text(text_x, 0.5, "far text"))
        return fig

    report._save(fig_with(0.5), tmp_path, "inside")
    w, h = Image.open(tmp_path / "inside.png").size
    assert 4 * report.DPI < w < 6 * report.DPI  # the legend beside the figure is in
    assert h <= 3 * report.DPI + 2 * 0.1 * report.DPI + 2

    for name, inches, on_axes in (("straddles", report.MARGIN - 0.2, False), ("far", report.MARGIN + 1, False),
                                  ("axes_text_straddles", report.MARGIN - 0.2, True)):
        report._save(fig_with(1 + inches / 4, on_axes), tmp_path, name)  # text starting that far right of the figure
        w, _ = Image.open(tmp_path / f"{name}.png").size
        assert w > (4 + inches + 0.3) * report.DPI, name
        svg = (tmp_path / f"{name}.svg").read_text()
        assert float(svg.split('width="', 1)[1].split("pt", 1)[0]) > (4 + inches + 0.3) * 72, name


def test_a_figure_saved_twice_gives_the_same_bytes(tmp_path):
    """No date and no random ids in the SVG (nor anything varying in the PNG): regenerating the
    report changes only the figures whose data changed."""
    import matplotlib.pyplot as plt

    for run in ("a", "b"):
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.plot([0, 1], [1, 0], label="a line", clip_on=True)
        ax.legend()
        (tmp_path / run).mkdir()
        report._save(fig, tmp_path / run, "fig")
    for ext in ("png", "svg"):
        assert (tmp_path / "a" / f"fig.{ext}").read_bytes() == (tmp_path / "b" / f"fig.{ext}").read_bytes(), ext


def test_every_image_tag_carries_its_png_size(synthetic):
    """The page reserves each figure's box before the (lazily loaded) image arrives: without it,
    images loading above a section move it away from the scorecard link that jumped to it."""
    from PIL import Image

    root, _ = synthetic
    html = (root / "report" / "index.html").read_text()
    tags = re.findall(r"<img [^>]*>", html)
    assert len(tags) >= 6
    for tag in tags:
        src, w, h = (re.search(f'{k}="([^"]+)"', tag).group(1) for k in ("src", "width", "height"))
        assert Image.open(root / "report" / src).size == (int(w), int(h))


def test_the_page_opens_in_a_real_browser_with_every_image_loaded(synthetic):
    """Headless Chromium (selenium + chromedriver; skipped where either is missing, e.g. CI): a
    fragment link lands on its section, and every image loads."""
    import shutil
    import time

    webdriver = pytest.importorskip("selenium.webdriver")
    driver_path = shutil.which("chromedriver")
    if driver_path is None:
        pytest.skip("no chromedriver (Debian: apt-get install chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,900"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        d.get((synthetic[0] / "report" / "index.html").resolve().as_uri() + "#claim-M8")
        time.sleep(0.5)
        assert abs(d.execute_script("return document.getElementById('claim-M8').getBoundingClientRect().top")) < 2
        y = 0
        while y < d.execute_script("return document.body.scrollHeight"):  # let every lazy image load
            d.execute_script(f"window.scrollTo(0, {y})")
            time.sleep(0.05)
            y += 600
        time.sleep(0.5)
        images = d.execute_script("return Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
        assert len(images) >= 6 and all(done and w > 0 for done, w in images)
    finally:
        d.quit()


def test_spike_figures_draw_r3_first_and_name_the_other_definitions(synthetic):
    """The loss curves mark R3's episodes (the primary) at their peaks and the other definitions'
    episode starts, each with its own legend entry; the spike rates are drawn under all four
    definitions (the heatmap: R3's); the captions say which definition is drawn."""
    import matplotlib.pyplot as plt

    from replicate.report.figures import loss as loss_fig, spike_rates

    root, _ = synthetic
    runs, metrics = results.runs(root), results.load(root, metrics=["loss"])
    fig = figures.fig_loss_curves(metrics, runs, "synth")
    labels = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert labels.count(figures.style.SPIKE_LABEL) == 1 and "R3" in figures.style.SPIKE_LABEL
    for d in ("R10", "Z6"):  # the synthetic 20x jumps: R10 and Z6 episodes, none for R100
        assert any(lab.startswith(f"{d} episode start") for lab in labels), (d, labels)
    assert not any(lab.startswith("R100") for lab in labels)
    assert all("R3 spikes" in ax.get_title() for ax in fig.axes if ax.get_visible())
    plt.close(fig)
    fig = figures.fig_spike_rates(metrics, runs, "synth")  # two swept keys: R3's heatmap
    assert "R3 spike rate" in fig._suptitle.get_text()
    plt.close(fig)
    for kinds in (loss_fig.KINDS, spike_rates.KINDS):
        caption = kinds[0].caption
        assert all(d in caption for d in ("R3", "R10", "R100", "Z6")) and "primary" in caption
    eps = figures.episodes(metrics)  # R3's episodes unless told
    assert eps.equals(figures.episodes(metrics, definition="R3"))


def _slingshot_runs(n: int = 3000):
    """Slingshot-shaped runs: fp32 Adam's loss falls to 1e-7 and jumps at step 2500 while its
    zero-gradient fraction rises and its mean-row norm grows; fp64's loss keeps falling."""
    rows, runs = [], []
    steps = np.arange(n)
    for arm in ("sgd", "adam fp64", "adam fp32"):
        for seed in (0, 1):
            rid = f"{arm}-{seed}"
            loss = np.exp(-steps / 150) * 4 + 1e-7
            zero = np.clip((steps - 500) / 1000, 0, 0.95) if arm == "adam fp32" else np.zeros(n)
            row = 0.2 * np.exp(np.where(arm == "adam fp32", steps / 1200, 0.0))
            if arm == "adam fp32":
                loss[2500:2520] = 3.0
            for metric, v in (("loss", loss), ("zero_grad_frac", zero), ("mean_row_norm", row),
                              ("head_norm", 5 + row)):
                rows.append(pd.DataFrame({"run_id": rid, "experiment": "sl", "seed": seed, "status": "done",
                                          "step": steps, "metric": metric, "value": v}))
            runs.append({"run_id": rid, "experiment": "sl", "seed": seed, "status": "done", "label": arm})
    return pd.concat(rows, ignore_index=True), pd.DataFrame(runs)


def test_the_slingshot_figure_puts_fp32_beside_fp64_with_its_second_axis():
    import matplotlib.pyplot as plt

    from replicate.report.figures.selection import episodes
    from replicate.report.figures.slingshot import KINDS, fig_slingshot

    metrics, runs = _slingshot_runs()
    eps = episodes(metrics[metrics["metric"] == "loss"])
    fig = fig_slingshot(metrics, runs, "sl", eps=eps)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[0].startswith("adam fp32\n") and "fp64" in titles[1] and titles[2].startswith("sgd")
    twins = [ax for ax in fig.axes if ax.get_ylim() == (-0.02, 1.02)]
    assert len(twins) == 3 and "exactly 0" in twins[-1].get_ylabel()
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("zero-gradient fraction" in s for s in labels) and any("mean row" in s for s in labels)
    assert any("R3 spike" in s for s in labels)  # the fp32 jump is marked
    assert "2 seeds" in fig.texts[0].get_text() if fig.texts else "2 seeds" in fig._suptitle.get_text()
    plt.close(fig)
    assert fig_slingshot(metrics[metrics["metric"] == "loss"], runs, "sl") is None  # no probes: placeholder
    assert KINDS[0].name == "slingshot" and "exactly 0" in KINDS[0].caption


def test_the_halflife_figure_draws_both_arms_over_the_batch_size():
    """H1's figure: final held-out loss per seed and the arms' means, and Z6 episodes per run with a
    Poisson interval that never goes below 0; the largest batch's run belongs to both arms."""
    import matplotlib.pyplot as plt

    from replicate.report.figures.halflife import KINDS, fig_halflife

    rows, runs = [], []
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        for arm, b, b2 in (("fixed", 4, 0.95), ("scaled", 4, 0.95 ** (4 / 64)), ("both", 64, 0.95)):
            rid = f"{arm}-{seed}"
            n = 2048 if b == 4 else 128
            loss = 3 * np.exp(-np.arange(n) / 300) + 1 + 0.01 * rng.standard_normal(n)
            if arm == "fixed":
                loss[600] *= 50  # a tall jump: a Z6 episode in the fixed arm only
            rows.append(pd.DataFrame({"run_id": rid, "experiment": "h", "seed": seed, "status": "done",
                                      "step": np.arange(n), "metric": "loss", "value": loss}))
            rows.append(pd.DataFrame({"run_id": rid, "experiment": "h", "seed": seed, "status": "done",
                                      "step": np.linspace(0, n - 1, 33).astype(int), "metric": "val_loss",
                                      "value": 2.3 + (0.05 if arm == "fixed" else 0.0) + 0.2 * (b == 64)}))
            runs.append({"run_id": rid, "experiment": "h", "seed": seed, "status": "done", "label": arm,
                         "data.batch_size": b, "optimizer.b2": b2, "train.steps": n})
    metrics, runs = pd.concat(rows, ignore_index=True), pd.DataFrame(runs)
    fig = fig_halflife(metrics, runs, "h")
    left, right = fig.axes[:2]
    means = {ln.get_label(): ln.get_ydata() for ln in left.get_lines()}
    fixed, scaled = means["β2 fixed: mean"], means["β2 scaled by its half-life in tokens: mean"]
    assert len(fixed) == len(scaled) == 2  # batch 4 and the shared batch 64
    assert fixed[0] == pytest.approx(2.35) and scaled[0] == pytest.approx(2.30) and fixed[1] == scaled[1]
    assert right.get_ylim()[0] == 0 and "Z6" in right.get_ylabel() and "2 seeds" in fig._suptitle.get_text()
    plt.close(fig)
    assert KINDS[0].name == "halflife" and "Z6" in KINDS[0].caption
    assert fig_halflife(metrics[metrics["metric"] == "loss"], runs, "h") is None
