"""replicate.suite: what `make replicate` runs, experiments side by side, failures reported, order by cost."""
from __future__ import annotations

from replicate import results, suite


def test_experiments_run_side_by_side_and_a_failing_one_does_not_stop_the_others(tmp_path, capsys):
    failed = suite.run(["m1_iid_gradients", "no_such_experiment"], jobs=2, results_dir=str(tmp_path),
                       overrides=["train.steps=3"])
    assert failed == 1
    out = capsys.readouterr()
    assert "no_such_experiment" in out.err and "FAILED" in out.out
    assert "sweep finished: 3 runs: 3 done" in out.out
    assert (tmp_path / "logs" / "m1_iid_gradients.log").exists()
    r = results.runs(tmp_path, experiment="m1_iid_gradients")
    assert len(r) == 3 and set(r["status"]) == {"done"}
    # started again: nothing trains, the runs are found finished
    assert suite.run(["m1_iid_gradients"], jobs=1, results_dir=str(tmp_path), overrides=["train.steps=3"]) == 0
    assert "already finished" in capsys.readouterr().out


def test_the_most_expensive_experiments_start_first():
    assert suite.cost("m8_beta2_mlp") > suite.cost("m1_iid_gradients") > 0
    assert suite.cost("no_such_experiment") == 0.0
