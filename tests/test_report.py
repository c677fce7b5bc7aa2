"""The report builds figures from results/ alone."""

from __future__ import annotations

from replicate import report, train


def test_report_draws_loss_curves_per_arm_from_a_results_folder(cfg_factory, tmp_path):
    root = tmp_path / "results"
    for b2 in ("0.9", "0.999"):
        for seed in (0, 1):
            train.run(cfg_factory("model=quadratic", "data=none", "train.steps=30", "name=demo",
                                  "model.x0_spread=0.5", f"optimizer.b2={b2}", f"seed={seed}", results_dir=root))
    written = report.build(root)
    assert [p.name for p in written] == ["demo_loss.png"]
    assert (root / "report/figures/demo_loss.svg").exists() and written[0].stat().st_size > 10_000
    runs = report.results.runs(root)
    assert sorted(set(report.arm_labels(runs))) == ["b2=0.9", "b2=0.999"]


def test_report_on_an_empty_folder_writes_nothing_and_does_not_fail(tmp_path):
    assert report.build(tmp_path) == []
    assert report.main([str(tmp_path)]) == 0
