"""Sweeps through submitit: a local sweep runs; the SLURM launcher config composes with its keys;
a preempted job is resubmitted with the same overrides (hence the same run folder, resumed from
its checkpoint)."""

from __future__ import annotations

import pytest
from conftest import CONF, cli
from hydra import compose, initialize_config_dir

from replicate import results

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="hydra-submitit-launcher not installed")


def test_a_submitit_local_sweep_runs_two_runs_and_summarizes(tmp_path):
    out = cli("-m", "hydra/launcher=local", "model=mlp", "data=regression", "train.steps=5", "seed=0,1",
              "threads=1", "progress=false", f"results_dir={tmp_path}")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "sweep finished: 2 runs: 2 done" in out.stdout
    r = results.runs(tmp_path)
    assert sorted(r["seed"]) == [0, 1] and set(r["status"]) == {"done"}


def test_the_slurm_launcher_composes_with_its_documented_keys():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", "experiment=m8_beta2_mlp",
                                           "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=120"],
                      return_hydra_config=True)
    la = cfg.hydra.launcher
    assert la._target_.endswith("SlurmLauncher")
    assert la.partition == "gpu" and la.timeout_min == 120
    assert la.gpus_per_node == 1 and la.tasks_per_node == 1 and la.max_num_timeout == 3
    for key in ("account", "qos", "cpus_per_task", "mem_gb", "array_parallelism", "additional_parameters", "setup"):
        assert key in la


def test_make_sweep_with_the_slurm_launcher_composes(tmp_path):
    # the command `make sweep EXP=m8_beta2_mlp LAUNCHER=slurm DRY=1` runs (Hydra takes --cfg or -m, not both)
    out = cli("--cfg", "hydra", "experiment=m8_beta2_mlp", "hydra/launcher=slurm", f"results_dir={tmp_path}")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "SlurmLauncher" in out.stdout and "max_num_timeout: 3" in out.stdout
    assert "optimizer.b2: 0.9,0.95,0.99,0.999" in out.stdout
    assert not (tmp_path / "runs").exists()  # composed, nothing submitted or trained


def test_a_preempted_job_is_resubmitted_with_the_same_arguments():
    import submitit
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

    launcher = SlurmLauncher(partition=None)
    again = launcher.checkpoint("sweep overrides", "job dir")  # what submitit calls on preemption/timeout
    assert isinstance(again, submitit.helpers.DelayedSubmission)
    assert again.function is launcher and again.args == ("sweep overrides", "job dir")
