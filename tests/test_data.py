import os

import numpy as np
import pytest

from scaling import data
from scaling.errors import UsageError


def test_stdlib_corpus_has_no_tests_and_a_stable_fingerprint():
    root, paths = data.stdlib_files()
    assert paths and all(p.endswith(".py") for p in paths)
    rel = [os.path.relpath(p, root).split(os.sep) for p in paths]
    assert not any(set(parts) & {"test", "tests", "site-packages"} for parts in rel)
    assert not any(parts[-1].startswith("test_") for parts in rel)
    c = data.load_corpus("stdlib")
    assert c.vocab_size == 256 and len(c.train) > 5e6 and len(c.val) > 5e4
    assert c.fingerprint == data._byte_corpus("stdlib", root, paths, data.VAL_FRACTION).fingerprint


def test_validation_split_is_by_file_hash():
    assert data._is_val("a/b.py", 0.02) == data._is_val("a/b.py", 0.02)
    flags = [data._is_val(f"f{i}.py", 0.1) for i in range(5000)]
    assert 0.07 < np.mean(flags) < 0.13


def test_batch_is_a_pure_function_of_seed_and_step():
    c = data.load_corpus("synthetic")
    a = data.batch(c, 3, 17, 8, 32)
    b = data.batch(c, 3, 17, 8, 32)
    other = data.batch(c, 4, 17, 8, 32)
    assert all((u == v).all() for u, v in zip(a, b))
    assert not (a[0] == other[0]).all()
    x, y = a
    assert x.shape == y.shape == (8, 32) and (x[:, 1:] == y[:, :-1]).all()


def test_one_epoch_visits_every_window_once_before_repeating(tmp_path):
    path = tmp_path / "tokens.bin"
    np.arange(33 * 50 + 40, dtype=np.uint16).tofile(path)
    c = data.load_corpus(str(path), val_fraction=0.01)
    n = data.windows_per_epoch(c, 32)
    firsts = [int(data.batch(c, 0, s, 1, 32)[0][0, 0]) for s in range(n)]
    assert len(set(firsts)) == n  # no window twice within the epoch
    assert len(set(int(data.batch(c, 0, s, 1, 32)[0][0, 0]) for s in range(n, 2 * n))) == n


def test_synthetic_corpus_knows_its_entropy_rate():
    c = data.load_corpus("synthetic:8:1")
    assert 0 < c.entropy_rate < np.log(8)
    # an order-1 chain: the empirical conditional entropy matches the stated rate
    t = np.asarray(c.train, dtype=np.int64)
    joint = np.bincount(t[:-1] * 8 + t[1:], minlength=64).reshape(8, 8).astype(float)
    p = joint / joint.sum()
    cond = -(p[p > 0] * np.log((p / p.sum(1, keepdims=True))[p > 0])).sum()
    assert cond == pytest.approx(c.entropy_rate, abs=0.01)


def test_text_directory_and_glob_corpora(tmp_path):
    for i in range(30):
        (tmp_path / f"f{i}.txt").write_text(f"document {i}\n" * 50)
    by_dir = data.load_corpus(str(tmp_path))
    by_glob = data.load_corpus(str(tmp_path / "*.txt"))
    assert by_dir.n_files == by_glob.n_files == 30
    assert len(by_dir.train) + len(by_dir.val) == sum(len((tmp_path / f"f{i}.txt").read_bytes()) for i in range(30))


def test_missing_corpus_path_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no such"):
        data.load_corpus(str(tmp_path / "nope"))
    with pytest.raises(UsageError, match="no such file"):
        data.load_corpus(str(tmp_path / "nope.bin"))
