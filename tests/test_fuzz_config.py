"""Fuzzing the front door (issue 17): random command lines, built from every key of every config file
with wrong types, out-of-range numbers, unknown group options and keys, and odd strings (unicode,
spaces, '=', quotes, brackets), thrown at ``frontdoor.status`` (what ``python -m replicate`` does
before training: precheck, compose, key check, validate) and at the builders. Asserts: never an
exception other than the one-line error, exit 0 or 2, one line ``error: <key>: ...`` on 2, nothing
written; and a few that pass train for 2 steps, ending done or diverged, or with the one-line error.

``FUZZ_EXAMPLES`` (default 40) sets the examples per property, ``FUZZ_RUN_EXAMPLES`` (default 4) the
training ones: ``make fuzz`` runs 2000 and 200.
"""

from __future__ import annotations

import contextlib
import io
import os
import resource
import string
import tempfile
from pathlib import Path

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from conftest import CONF  # noqa: E402
from replicate import frontdoor, train  # noqa: E402
from replicate.config import ConfigError  # noqa: E402

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
RUN_EXAMPLES = int(os.environ.get("FUZZ_RUN_EXAMPLES", "4"))
# derandomized: the same examples every time (FUZZ_RANDOM=1: new ones); no shrinking in the long runs
# (a failing command line is short as drawn, and shrinking one that trains took over 5 minutes)
SETTINGS = dict(deadline=None, derandomize=not os.environ.get("FUZZ_RANDOM"), database=None,
                suppress_health_check=list(HealthCheck),
                phases=[p for p in Phase if p is not Phase.shrink or EXAMPLES <= 100])

# the options the fuzzer picks; the big GPTs and the GPU experiments build for seconds: left out
SLOW = {"model": {"gpt_small", "gpt_125m"}, "experiment": {"m3_gpu", "m7_gpu", "m8_gpu", "m9_gpu", "w1_gpu",
                                                           "mitigations", "mitigations_lr"}}
GROUPS = {g: sorted(p.relative_to(CONF / g).with_suffix("").as_posix() for p in (CONF / g).rglob("*.yaml")
                    if not p.name.startswith("_") and p.relative_to(CONF / g).with_suffix("").as_posix()
                    not in SLOW.get(g, ()))
          for g in ("model", "data", "optimizer", "schedule", "probe", "mitigation", "experiment")}


def _all_keys() -> list[str]:
    keys = set(frontdoor._file_keys(CONF / "config.yaml", ""))
    for group in GROUPS:
        if group == "experiment":
            continue
        for p in (CONF / group).rglob("*.yaml"):
            first = p.read_text().split("\n", 1)[0]
            package = first.split("@package", 1)[1].strip() if "@package" in first else group
            keys |= set(frontdoor._file_keys(p, "" if package == "_global_" else package))
    # results_dir: the fuzzer's own folder; hydra.*: Hydra's; a GPT's depth: a huge one builds block
    # after block until memory runs out (not fuzzed at absurd sizes, see SMALL)
    return sorted(k for k in keys if k != "results_dir" and not k.startswith("hydra"))


KEYS = _all_keys()
SMALL = {"model.depth", "probe.hessian_iters", "threads"}  # keys whose huge values loop or hog the machine
ODD = ["", " ", "a b", "=", "==", "a=b", "'", '"', "''", '""', "'quoted'", '"x y"', "[", "]", "[]", "[1,2]", "{}",
       "{a: 1}", "null", "None", "true", "True", "nan", "inf", "-inf", "1e400", "ü", "Ω≈ç√", "日本語", "🙂",
       "\\", "${seed}", "${nope}", "${oc.env:HOME}", "a,b", "choice(1,2)", "range(0,3)", "glob(*)", "-1", "0x10",
       "1_000", "١٢", "\t", "%", "$", "#", "a#b", ":", "a:b", "~", "+", "@"]
# numbers: small, edge and absurd (an absurd size fails fast in the allocator); no middling sizes that
# would build a large model for seconds
INTS = st.sampled_from([-(2 ** 63), -10 ** 12, -2, -1, 0, 1, 2, 3, 4, 7, 10 ** 12, 2 ** 63, 2 ** 64])
FLOATS = st.sampled_from([-1e308, -1.0, -1e-12, 0.0, 1e-12, 0.5, 0.999, 1.0, 1.5, 2.0, 1e12, 1e308])
TEXT = st.one_of(st.sampled_from(ODD), st.text(max_size=8),
                 st.text(alphabet=string.ascii_letters + string.digits + "_.-/ ", max_size=10))


def _render(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        return "[" + ",".join(_render(x) for x in v) + "]"
    return repr(v)


@st.composite
def value(draw, key: str):
    if key in SMALL:
        return draw(st.sampled_from(["-1", "0", "1", "2", "x", "1.5", "null"]))
    kind = draw(st.sampled_from(["int", "float", "bool", "null", "text", "quoted", "list"]))
    if kind == "int":
        return _render(draw(INTS))
    if kind == "float":
        return _render(draw(FLOATS))
    if kind == "bool":
        return _render(draw(st.booleans()))
    if kind == "null":
        return "null"
    if kind == "quoted":
        q = draw(st.sampled_from(["'", '"']))
        return q + draw(TEXT).replace(q, "").replace("\\", "") + q
    if kind == "list":
        return _render(draw(st.lists(st.one_of(INTS, FLOATS, st.sampled_from(["a", "b"])), max_size=3)))
    return draw(TEXT)


def _option_keys(group: str, option: str) -> list[str]:
    path = CONF / group / f"{option}.yaml"
    first = path.read_text().split("\n", 1)[0]
    package = first.split("@package", 1)[1].strip() if "@package" in first else group
    return [k for k in frontdoor._file_keys(path, "" if package == "_global_" else package)
            if not k.startswith("hydra")]


PRIMARY = [k for k in frontdoor._file_keys(CONF / "config.yaml", "") if k != "results_dir"]


@st.composite
def command(draw):
    """A command line: some group selections, then overrides mostly of keys those selections define
    (so that many reach the builders), with unknown keys and options, deletions and junk among them."""
    out, keys = [], list(PRIMARY)
    for group in ("model", "data", "optimizer", "schedule", "probe", "mitigation"):
        if not draw(st.integers(0, 2)):
            continue
        if group == "mitigation":
            chosen = draw(st.lists(st.sampled_from(GROUPS[group]), max_size=2, unique=True))
            out.append(f"mitigation=[{','.join(chosen)}]")
        else:
            chosen = [draw(st.sampled_from(GROUPS[group]))]
            out.append(f"{group}={chosen[0]}")
        for option in chosen:
            keys += _option_keys(group, option)
    if not draw(st.integers(0, 4)):
        out.append(f"experiment={draw(st.sampled_from(GROUPS['experiment']))}")
    for _ in range(draw(st.integers(1, 4))):
        out.append(draw(override(keys)))
    return draw(st.permutations(out))


@st.composite
def override(draw, keys: list[str]):
    kind = draw(st.sampled_from(["key"] * 6 + ["any_key", "group", "unknown_key", "unknown_group", "junk"]))
    prefix = draw(st.sampled_from([""] * 6 + ["+", "++", "~"]))
    if kind in ("key", "any_key"):
        key = draw(st.sampled_from(keys if kind == "key" else KEYS))
        return f"{prefix}{key}={draw(value(key))}" if prefix != "~" else f"~{key}"
    if kind == "group":
        group = draw(st.sampled_from(sorted(GROUPS)))
        options = GROUPS[group]
        if group == "mitigation":
            return f"{group}=[{','.join(draw(st.lists(st.sampled_from(options), max_size=3)))}]"
        return f"{group}={draw(st.sampled_from(options))}"
    if kind == "unknown_key":
        root = draw(st.sampled_from(["train", "model", "data", "optimizer", "probe", "mitigation.clip", "dist", ""]))
        name = draw(st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=8))
        return f"{prefix}{root + '.' if root else ''}{name}={draw(value(name))}"
    if kind == "unknown_group":
        group = draw(st.sampled_from(sorted(GROUPS) + ["hydra/launcher", "arm/h1_beta2_halflife_gpt"]))
        return f"{group}={draw(TEXT)}"
    return draw(TEXT)  # anything at all


COMMAND = st.tuples(st.integers(0, 4).map(lambda i: i == 0), command())


@contextlib.contextmanager
def sandbox():
    """A fresh folder as cwd and results_dir, torch's global settings restored, and an address-space
    limit so that a size that slips through fails in the allocator instead of filling the machine."""
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            resource.setrlimit(resource.RLIMIT_AS, (_vm_bytes() + (6 << 30), hard))
            yield Path(tmp)
        finally:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
            os.chdir(cwd)
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(det, warn_only=True)


def _vm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 64 << 30


def _status(argv: list[str], build: bool) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = frontdoor.status(argv, build=build)
    return rc, err.getvalue()


def _assert_door(rc: int, err: str, root: Path) -> None:
    assert rc in (0, 2), (rc, err)
    if rc == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
        assert lines[0][len("error: "):].split(":")[0].strip(), err  # names a key
        assert not (root / "runs").exists() and not (root / "sweeps").exists()


@settings(max_examples=EXAMPLES, **SETTINGS)
@given(COMMAND)
def test_the_front_door_answers_0_or_one_line_and_2(command):
    multirun, overrides = command
    with sandbox() as root:
        argv = (["-m"] if multirun else []) + overrides + [f"results_dir={root / 'results'}", "progress=false"]
        rc, err = _status(argv, build=not multirun)
        _assert_door(rc, err, root / "results")


@settings(max_examples=RUN_EXAMPLES, **SETTINGS)
@given(command())
def test_what_passes_the_front_door_trains_or_fails_in_one_line(overrides):
    with sandbox() as root:
        argv = [*overrides, "train.steps=2", "train.checkpoint_every=0", "probe.hessian_iters=2",
                f"results_dir={root / 'results'}", "progress=false", "threads=1"]
        rc, err = _status(argv, build=True)
        _assert_door(rc, err, root / "results")
        if rc != 0:
            return
        cfg = frontdoor.check(argv)
        try:
            manifest = train.run(cfg)
        except ConfigError as e:  # a refusal the loop makes at its start: one line, nothing trained
            assert "\n" not in str(e)
            return
        assert manifest["status"] in ("done", "diverged")


# bugs the fuzzer found (a traceback where one line was due), each kept as a regular test
@pytest.mark.parametrize("argv, key", [
    (["model=linear", "mitigation=[v_init]"], "data=regression"),  # AttributeError in the loss: a model and
    (["model=mlp", "data=markov"], "data=markov"),  # a stream that do not fit (models.TAKES)
    (["model=gpt", "data=markov", "data.vocab_size=-1"], "data.vocab_size"),  # RuntimeError: negative dimension
    (["model=gpt", "data=markov", "model.mlp_ratio=-1"], "model.mlp_ratio"),
    (["model.hidden=true"], "model.hidden"),  # TypeError: 'bool' object is not iterable, named "model"
    (["model.hidden=[8,1.5]"], "model.hidden[1]"),  # 1.5 silently truncated to a width of 1
    (["data="], "data"),  # "config: In 'config': Could not find 'data/'", the key unnamed
    (["seed=1000000000000"], "seed"),  # ValueError from numpy's seed (< 2**32) in _build
    (["~optimizer.name"], "optimizer.name"),  # KeyError: 'name' in _build (a key of the tree deleted)
    (["~"], "'~'"),  # "error: : Could not delete ''": no key named
    (["model.name=[a]"], "model"),  # TypeError: unhashable type: 'list' in _build's models.TAKES look-up
])
def test_found_by_the_fuzzer(argv, key, tmp_path):
    rc, err = _status([*argv, f"results_dir={tmp_path}"], build=True)
    assert rc == 2 and err.startswith(f"error: {key}") and err.count("\n") == 1, err


def test_found_by_the_fuzzer_in_training(cfg_factory):
    # Adafactor (b1 null: v but no m) under probe=full: TypeError in the curvature probe at step 0
    cfg = cfg_factory("model=quadratic", "data=regression", "optimizer=adafactor", "probe=full", "train.steps=2")
    assert train.run(cfg)["status"] == "done"
