"""Data streams: determinism, random access, Markov structure and injections, Shakespeare text."""
import numpy as np
import pytest
import torch

from replicate.data import DATA, build_data


def _eq(a, b):
    if a is None or b is None:
        return a is b
    if isinstance(a, tuple):
        return all(torch.equal(x, y) for x, y in zip(a, b))
    return torch.equal(a, b)


CFGS = [
    {"name": "regression", "batch_size": 32},
    {"name": "markov", "vocab_size": 64, "context": 8, "batch_size": 16, "inject_every": 3},
    {"name": "shakespeare", "context": 16, "batch_size": 8},
]


@pytest.mark.parametrize("cfg", CFGS, ids=lambda c: c["name"])
def test_deterministic_and_seed_dependent(cfg):
    a, b, c = (build_data({**cfg, "seed": s}) for s in (0, 0, 1))
    for i in range(4):
        x, y, z = a.next(), b.next(), c.next()
        assert _eq(x, y)
        assert not _eq(x, z)
    assert not _eq(a.batch_at(0), a.batch_at(1))


@pytest.mark.parametrize("cfg", CFGS + [{"name": "none"}], ids=lambda c: c["name"])
def test_fast_forward_and_state_dict(cfg):
    s = build_data({**cfg, "seed": 5})
    s.skip(7)
    assert _eq(s.next(), s.batch_at(7))
    state = s.state_dict()
    assert state == {"pos": 8}
    expected = s.next()
    t = build_data({**cfg, "seed": 5})
    t.load_state_dict(state)
    assert _eq(t.next(), expected)


def test_none_stream():
    s = build_data({"name": "none", "seed": 0})
    assert s.next() is None and s.batch_at(10) is None


def test_regression_full_batch_identical_tensors():
    s = build_data({"name": "regression", "seed": 0})
    x, y = s.next()
    assert x.shape == (256, 1) and y.shape == (256, 1) and x.dtype == torch.float32
    for _ in range(3):
        x2, y2 = s.next()
        assert x2 is x and y2 is y
    torch.testing.assert_close(y, torch.sin(2.0 * x), rtol=0, atol=1e-5)
    assert x.min() >= -3.14159 and x.max() <= 3.14159
    x3, _ = build_data({"name": "regression", "seed": 1}).next()
    assert not torch.equal(x, x3)  # the data set comes from the seed


def test_regression_minibatch_subset_of_data_set():
    s = build_data({"name": "regression", "seed": 0, "batch_size": 16, "noise": 0.1})
    x, y = s.next()
    assert x.shape == (16, 1)
    full_x, full_y = s.val_batch()
    assert set(x.flatten().tolist()) <= set(full_x.flatten().tolist())
    assert not torch.allclose(full_y, torch.sin(2.0 * full_x))  # noise


def _markov_counts(s, steps):
    seqs = np.concatenate([s.batch_at(i).numpy() for i in range(steps)])
    return seqs


def test_markov_shape_and_successors_within_branching():
    s = build_data({"name": "markov", "seed": 0})
    b = s.next()
    assert b.shape == (64, 33) and b.dtype == torch.int64 and s.vocab_size == 256
    seqs = _markov_counts(s, 30)
    assert seqs.min() >= 0 and seqs.max() < 256
    succ = {}
    for a, c in zip(seqs[:, :-1].ravel(), seqs[:, 1:].ravel()):
        succ.setdefault(int(a), set()).add(int(c))
    assert max(len(v) for v in succ.values()) <= 8
    assert max(len(v) for v in succ.values()) >= 4  # it does branch
    for a, v in succ.items():
        assert v <= set(s.successors[a].tolist())


def test_markov_unigram_roughly_zipfian():
    s = build_data({"name": "markov", "seed": 0})
    counts = np.bincount(_markov_counts(s, 30).ravel(), minlength=256)
    assert counts[0] > 20 * max(counts[99], 1)  # rank 1 much more frequent than rank 100
    assert counts[:10].sum() > counts[10:100].sum() > counts[100:].sum()


def test_markov_injections_exactly_at_configured_steps():
    cfg = {"name": "markov", "seed": 2, "batch_size": 16, "inject_every": 5,
           "inject_at": [2, 11], "inject_frac": 0.25, "rare_tokens": 16}
    s = build_data(cfg)
    plain = build_data({**cfg, "inject_every": 0, "inject_at": []})
    rare = set(range(240, 256))
    expected = {2, 4, 9, 11, 14, 19}
    for i in range(20):
        b = s.batch_at(i).numpy()
        all_rare = np.array([set(row.tolist()) <= rare for row in b])
        changed = (b != plain.batch_at(i).numpy()).any(axis=1)
        if i in expected:
            assert all_rare.sum() == 4 and (changed == all_rare).all(), i
        else:
            assert all_rare.sum() == 0 and not changed.any(), i
    assert [i for i in range(20) if s.is_injected(i)] == sorted(expected)


def test_markov_val_batch_differs_from_training():
    s = build_data({"name": "markov", "seed": 0, "inject_every": 1})
    v = s.val_batch(0)
    assert v.shape == (64, 33) and not torch.equal(v, s.batch_at(0))
    assert v.max() < 256


def test_shakespeare_real_text_and_vocab():
    s = build_data({"name": "shakespeare", "seed": 0, "context": 32, "batch_size": 8,
                    "vocab_size": 256})
    assert s.vocab_size == 256
    b = s.next()
    assert b.shape == (8, 33) and b.dtype == torch.int64 and 0 <= b.min() and b.max() < 256
    corpus = np.concatenate([s.train_data, s.val_data]).tobytes()
    train = s.train_data.tobytes()
    for row in b.numpy().astype(np.uint8):
        assert row.tobytes() in train
    assert b"Hamlet" in corpus and len(corpus) > 1_000_000
    v = s.val_batch(0)
    for row in v.numpy().astype(np.uint8):
        assert row.tobytes() in s.val_data.tobytes()
    assert len(s.val_data) == pytest.approx(0.1 * len(corpus), abs=1)
    with pytest.raises(ValueError, match="256"):
        build_data({"name": "shakespeare", "seed": 0, "vocab_size": 65})


def test_shakespeare_path_train_val_disjoint(tmp_path):
    text = b"abcdefghij" * 90 + b"ABCDEFGHIJ" * 10  # the last 10% is upper case
    p = tmp_path / "t.txt"
    p.write_bytes(text)
    s = build_data({"name": "shakespeare", "seed": 0, "context": 7, "batch_size": 64,
                    "path": str(p), "val_frac": 0.1})
    assert s.split == 900
    for i in range(20):
        assert bytes(s.batch_at(i).numpy().astype(np.uint8).ravel()).islower()
        assert bytes(s.val_batch(i).numpy().astype(np.uint8).ravel()).isupper()


def test_bad_name_and_kwarg():
    with pytest.raises(ValueError, match="markov"):
        build_data({"name": "wikitext", "seed": 0})
    with pytest.raises(ValueError, match="batchsize"):
        build_data({"name": "markov", "seed": 0, "batchsize": 3})
    assert set(DATA) == {"none", "regression", "markov", "shakespeare", "gradients", "gradient_noise", "modular"}


@pytest.mark.parametrize("seed", [0, 1])
def test_markov_token_frequencies_follow_the_configured_zipf_exponent(seed):
    d = build_data({"name": "markov", "seed": seed, "zipf": 1.1})
    toks = np.concatenate([d.batch_at(i).numpy().ravel() for i in range(200)])
    freq = np.bincount(toks, minlength=256) / toks.size  # token id k has rank k + 1
    ranks = np.arange(1, 101)
    slope = np.polyfit(np.log(ranks), np.log(freq[:100] + 1e-12), 1)[0]
    assert abs(slope + 1.1) < 0.3, slope
    assert 0.1 < freq[0] < 0.35  # Zipf(1.1) over 256 tokens gives the top token about 19%
