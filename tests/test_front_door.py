"""The front door (replicate/frontdoor.py, issue 17): an unknown key, on the command line or in an
experiment's or arm's file, is one line naming it and the closest known keys, exit code 2, nothing
written; every documented key is in the config tree with its default; a builder's refusal at startup
(a missing text, a model that does not fit in memory) is one line too; the new keys change no run_id."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from conftest import CONF, cli
from replicate import frontdoor, results, train
from replicate.config import ConfigError, validate

ROOT = CONF.parent
FAST = ["model=quadratic", "data=none", "train.steps=2", "progress=false"]


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.parametrize("args, key, hint", [
    (["train.val_evry=10"], "train.val_evry", "did you mean train.val_every"),
    (["+train.val_evry=10"], "train.val_evry", "did you mean train.val_every"),
    (["+trian.steps=3"], "trian.steps", "did you mean train.steps"),
    (["model.width=32"], "model.width", "model=gpt"),  # a key of another option of the group
    (["+mitigation.clip.max_norm=2"], "mitigation.clip.max_norm", "mitigation=clip"),  # clip not selected
    (["mitigation=[layer_lr]", "+mitigation.layer_lr.scale.block0=0.5"], "mitigation.layer_lr.scale.block0",
     "did you mean"),
    (["+train.steps=3"], "train.steps", "without the +"),
    (["seed=0,1"], "seed", "-m"),
    (["optimizer.lr='1e-3"], "optimizer.lr", "cannot read"),
    (["-m", "optimizer=sgd,adam", "optimizer.momentum=0.5"], "optimizer.momentum", "optimizer=sgd"),
    (["-m", "seed=0,-1"], "seed=-1", "integer in [0, 2**32 - 1]"),
    (["train.val_batches=0"], "train.val_batches", "integer >= 1"),
    (["train.val_every=-1"], "train.val_every", "integer >= 0"),
    (["probe.model_every=x"], "probe.model_every", "integer"),
])
def test_a_bad_key_or_value_is_one_line_naming_it_and_exit_2(args, key, hint, capsys, tmp_path):
    assert frontdoor.status([*FAST, f"results_dir={tmp_path}", *args]) == 2
    line = one_line(capsys)
    assert line.startswith(f"error: {key}") and hint in line, line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args", [
    ["train.val_every=100"],  # the README's
    ["train.val_every=10", "train.val_batches=5"],
    ["probe.model_every=1"],
    ["model=gpt", "data=markov", "model.width=32", "model.compile=false"],
    ["mitigation=[layer_lr]", "+mitigation.layer_lr.scales.block0=0.5"],  # docs/mitigations.md: an open mapping
    ["mitigation=[clip]", "mitigation.clip.max_norm=2"],
    ["optimizer=sgd", "optimizer.momentum=0.5"],
    ["-m", "seed=0,1,2", "optimizer.b2=0.9,0.99"],
])
def test_known_keys_pass(args, capsys, tmp_path):
    assert frontdoor.status([*FAST, f"results_dir={tmp_path}", *args]) == 0, capsys.readouterr().err


EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def test_every_experiment_and_every_arm_of_its_sweep_sets_only_keys_of_the_tree(capsys, tmp_path):
    # under -m the front door checks each value of each sweep (each arm's files) and validates each point
    bad = {exp: capsys.readouterr().err for exp in EXPERIMENTS
           if frontdoor.status(["-m", f"experiment={exp}", f"results_dir={tmp_path}"]) != 0}
    assert not bad


@pytest.fixture
def conf_copy(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    return conf


def _set_in(path: Path, group: str, key: str, value) -> None:
    body = yaml.safe_load(path.read_text())
    body.setdefault(group, {})[key] = value
    path.write_text("# @package _global_\n" + yaml.safe_dump(body, sort_keys=False))


def test_an_experiment_file_with_an_unknown_key_fails(conf_copy, capsys, tmp_path):
    exp = conf_copy / "experiment" / "m8_beta2_mlp.yaml"
    _set_in(exp, "train", "val_evry", 5)
    assert frontdoor.status(["experiment=m8_beta2_mlp", f"results_dir={tmp_path}"], conf=conf_copy) == 2
    line = one_line(capsys)
    assert "train.val_evry" in line and "conf/experiment/m8_beta2_mlp.yaml" in line and "train.val_every" in line


def test_an_arm_file_with_an_unknown_key_fails_its_sweep(conf_copy, capsys, tmp_path):
    arm = conf_copy / "arm" / "h1_beta2_halflife_gpt" / "fixed_b16.yaml"  # not the sweep's first arm
    _set_in(arm, "optimizer", "beta2", 0.9)
    assert frontdoor.status(["-m", "experiment=h1_beta2_halflife_gpt", f"results_dir={tmp_path}"], conf=conf_copy) == 2
    line = one_line(capsys)
    assert "optimizer.beta2" in line and "fixed_b16" in line and "optimizer.b2" in line


def _documented_keys() -> dict[str, str]:
    """Dotted keys (`train.val_every`, `mitigation.clip.max_norm`) the README and docs/*.md name."""
    roots = "model|data|optimizer|schedule|probe|mitigation|train|dist"
    found = {}
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        for m in re.finditer(rf"(?<![\w./+-])\+{{0,2}}((?:{roots})(?:\.[A-Za-z_]\w*)+)(?![\w(/-])", text):
            quoted_error = text[max(0, m.start() - 7):m.start()] == "error: "  # an example of the error itself
            if not re.search(r"\.(py|md|yaml|json|parquet)$", m.group(1)) and not quoted_error:
                found.setdefault(m.group(1), path.name)
    return found


def test_every_documented_key_is_in_the_tree_with_its_default():
    keys = _documented_keys()
    assert {"train.val_every", "train.steps", "probe.model_every", "mitigation.clip.max_norm"} <= set(keys)
    primary = frontdoor._file_keys(CONF / "config.yaml", "")
    missing = {}
    for key, doc in keys.items():
        group = key.split(".")[0]
        opened = any(key.startswith(p + ".") for p in frontdoor.OPEN)
        if key not in primary and not opened and not frontdoor._options_defining(CONF, group, key):
            missing[key] = doc
    assert not missing, f"documented but not in conf/: {missing}"
    assert primary["train.val_every"] == 0 and primary["train.val_batches"] == 20


def test_every_experiment_and_arm_key_is_defined_by_the_tree():
    """No file of conf/experiment or conf/arm needs a +: each key it sets is the primary config's or a group
    option's (the front door checks the selected ones; this, that some option defines it at all)."""
    primary = frontdoor._file_keys(CONF / "config.yaml", "")
    missing = []
    for path in [*(CONF / "experiment").glob("*.yaml"), *(CONF / "arm").rglob("*.yaml")]:
        for key in frontdoor._file_keys(path, ""):
            group = key.split(".")[0]
            if key in primary or key.startswith("hydra") or any(key.startswith(p + ".") for p in frontdoor.OPEN):
                continue
            if not ((CONF / group).is_dir() and frontdoor._options_defining(CONF, group, key)):
                missing.append(f"{path.relative_to(CONF)}: {key}")
    assert not missing


def test_the_new_keys_at_their_defaults_leave_every_run_id_as_it_was(cfg_factory):
    cfg = cfg_factory(*FAST)
    assert cfg["train"]["val_every"] == 0 and cfg["train"]["val_batches"] == 20 and cfg["probe"]["model_every"] is None
    before = copy.deepcopy(cfg)  # the config as the tree gave it before these keys were in it
    for key in ("train.val_every", "train.val_batches", "probe.model_every"):
        group, name = key.split(".")
        del before[group][name]
    assert results.run_id(cfg) == results.run_id(before)
    # val_batches counts (and is hashed) once val_every is on, except at the one batch of old
    on, one = (cfg_factory(*FAST, "train.val_every=5", *more) for more in ([], ["train.val_batches=1"]))
    with_one = copy.deepcopy(on)
    del with_one["train"]["val_batches"]
    assert results.run_id(one) == results.run_id(with_one) != results.run_id(on)


# ------------------------------------------------------------------------------- startup failures
def _run_fails(cfg, key: str) -> str:
    with pytest.raises(ConfigError) as err:
        train.run(cfg)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(key), msg
    assert not (Path(cfg["results_dir"]) / "runs").exists()
    return msg


SHAKESPEARE = ["model=gpt", "data=shakespeare", "model.width=16", "model.heads=2", "model.depth=1", "train.steps=2",
               "data.batch_size=2", "data.context=8"]


def test_a_missing_or_unreadable_text_is_one_line(cfg_factory, tmp_path):
    assert "No such file" in _run_fails(cfg_factory(*SHAKESPEARE, f"data.path={tmp_path}/nope.txt"), "data.path")
    assert "directory" in _run_fails(cfg_factory(*SHAKESPEARE, f"data.path={tmp_path}"), "data.path")
    short = tmp_path / "short.txt"
    short.write_text("to be or not")
    msg = _run_fails(cfg_factory(*SHAKESPEARE, f"data.path={short}", "data.context=32"), "data.context")
    assert "shorter than context+1" in msg and "data.path" in msg
    assert "val_frac" in _run_fails(cfg_factory(*SHAKESPEARE, f"data.path={short}", "data.val_frac=1.5"), "data.val_frac")


def test_a_missing_text_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    out = cli(*SHAKESPEARE, f"data.path={tmp_path}/nope.txt", f"results_dir={tmp_path}", "progress=false")
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("error: data.path=") and "Traceback" not in out.stderr
    assert not (tmp_path / "runs").exists()


def test_a_model_that_does_not_fit_in_memory_is_one_line(cfg_factory):
    # 400k wide: one weight matrix alone is ~1.9 TB, refused by the allocator at once
    cfg = cfg_factory("model=gpt", "data=markov", "model.width=400000", "model.heads=4", "train.steps=2")
    assert "does not fit in memory" in _run_fails(cfg, "model")


@pytest.mark.parametrize("exc, kind", [
    (MemoryError(), "does not fit in memory"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried to "
                  "allocate 120000000000 bytes. Error code 12"), "120.0 GB"),
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), "does not fit in memory"),
    (FileNotFoundError(2, "No such file or directory", "/x/y"), "cannot read '/x/y'"),
    (PermissionError(13, "Permission denied", "/x/y"), "Permission denied"),
    (ValueError("data.batch_size: too big\nsecond line"), "data.batch_size: too big"),
])
def test_checked_turns_what_a_builder_raises_at_startup_into_one_line(exc, kind):
    def build(_):
        raise exc
    with pytest.raises(ConfigError) as err:
        train._checked("data", build, {})
    assert kind in str(err.value) and "\n" not in str(err.value) and str(err.value).startswith("data")


def test_checked_lets_other_runtime_errors_through():
    def build(_):
        raise RuntimeError("a bug, not the user's config")
    with pytest.raises(RuntimeError, match="a bug"):
        train._checked("model", build, {})


def test_val_every_on_a_stream_without_held_out_batches_is_refused(cfg_factory):
    cfg = cfg_factory("model=linear", "data=gradients", "train.steps=3", "train.val_every=2")
    assert "no held-out batches" in _run_fails(cfg, "train.val_every=2")


# ------------------------------------------------------------------------------------ val_batches
def test_val_loss_is_the_mean_over_val_batches_fixed_held_out_batches(cfg_factory):
    cfg = cfg_factory("model=gpt", "data=markov", "model.width=16", "model.heads=2", "model.depth=1",
                      "data.batch_size=4", "data.context=8", "train.steps=6", "train.val_every=2",
                      "train.val_batches=3", "threads=1")
    validate(cfg)
    model, data, _, _ = train._build(cfg)
    from replicate.precision import Precision

    prec = Precision("fp32", "dynamic", torch.device("cpu"))
    with torch.no_grad():
        per = [float(model.loss(data.val_batch(i))) for i in range(3)]
    assert train._val_loss(model, data, prec, torch.device("cpu"), 3) == pytest.approx(sum(per) / 3, rel=1e-6)
    assert len(set(per)) == 3  # three different batches
    m = train.run(cfg)
    df = results.load(cfg["results_dir"], metrics=["val_loss"])
    assert m["status"] == "done" and sorted(df["step"]) == [0, 2, 4, 5]
