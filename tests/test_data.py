import hashlib
import os
import shutil
import subprocess
import sys

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
    assert x.dtype == y.dtype == np.int32


SEQ = 32


@pytest.fixture
def counting_corpus(tmp_path):
    """A token file whose token at position i is i: a window's first token is its start offset."""
    path = tmp_path / "tokens.bin"
    np.arange((SEQ + 1) * 50 + 40, dtype=np.uint16).tofile(path)
    return data.load_corpus(str(path), val_fraction=0.01)


def _epoch_starts(corpus, seed, epoch):
    """Start offsets of the windows epoch `epoch` visits, in visiting order, one step (batch 1) each."""
    n = data.windows_per_epoch(corpus, SEQ)
    xs = np.concatenate([data.batch(corpus, seed, step, 1, SEQ)[0] for step in range(epoch * n, (epoch + 1) * n)])
    assert (xs == xs[:, :1] + np.arange(SEQ)).all()  # every window is a contiguous stretch of the corpus
    return xs[:, 0].astype(np.int64)


def test_each_epoch_tiles_the_corpus_with_disjoint_windows_in_a_new_order(counting_corpus):
    width = SEQ + 1
    n = data.windows_per_epoch(counting_corpus, SEQ)
    assert n == 49  # 1,690 train tokens hold 51 windows of 33; one is left for the shift, one for targets
    orders, shifts = [], []
    for epoch in range(3):
        starts = _epoch_starts(counting_corpus, 0, epoch)
        shift = int(starts.min())
        assert 0 <= shift < width
        # Windows sit on one grid of stride seq_len + 1 from the epoch's shift: no two share a token ...
        assert ((starts - shift) % width == 0).all()
        index = (starts - shift) // width
        # ... and each of the epoch's windows is visited exactly once.
        assert sorted(index.tolist()) == list(range(n))
        assert starts.max() + width <= len(counting_corpus.train)
        orders.append(index.tolist())
        shifts.append(shift)
    # A new permutation and new window boundaries every epoch, not a replay of the first.
    # (Shifts are drawn from 33 values, so two epochs may share one by chance: seed 0 gives 17, 27, 27.)
    assert orders[0] != orders[1] != orders[2] != orders[0]
    assert shifts[0] != shifts[1], shifts


def test_a_batch_is_the_next_batch_size_windows_across_epoch_ends(counting_corpus):
    n = data.windows_per_epoch(counting_corpus, SEQ)
    singles = np.concatenate([_epoch_starts(counting_corpus, 5, e) for e in range(2)])
    batch_size = 8  # 49 windows: step 6 holds the last window of epoch 0 and the first 7 of epoch 1
    for step in range(2 * n // batch_size):
        x, y = data.batch(counting_corpus, 5, step, batch_size, SEQ)
        assert (x[:, 0] == singles[step * batch_size:(step + 1) * batch_size]).all()
        assert (y == x + 1).all()  # targets are the inputs shifted by one token


@pytest.mark.parametrize("train_tokens,windows", [(33 * 40, 38), (33 * 40 + 1, 39), (33 * 40 + 32, 39)])
def test_windows_per_epoch_keeps_room_for_the_shift(tmp_path, train_tokens, windows):
    """(L - 1) // (T + 1) - 1 windows of T + 1 tokens in L: the count is part of what fixes batch(step), so a
    change to it reorders every resumed run's data. Whatever the shift, every window lies inside the split."""
    path = tmp_path / "t.bin"
    np.arange(train_tokens + 20, dtype=np.uint16).tofile(path)
    c = data.load_corpus(str(path), val_fraction=20 / (train_tokens + 20))
    assert len(c.train) == train_tokens
    assert data.windows_per_epoch(c, SEQ) == windows
    for epoch in range(4):
        starts = _epoch_starts(c, 3, epoch)
        assert starts.max() + SEQ + 1 <= train_tokens


def test_a_corpus_of_one_window_trains_and_one_too_short_is_refused(tmp_path):
    path = tmp_path / "t.bin"
    np.arange(1024, dtype=np.uint16).tofile(path)
    c = data.load_corpus(str(path), val_fraction=0.01)  # 1,013 train tokens
    assert data.windows_per_epoch(c, 400) == 1
    assert data.batch(c, 0, 5, 2, 400)[0].shape == (2, 400)
    with pytest.raises(UsageError, match=r"corpus '.*t.bin' is shorter than one sequence of 601 tokens"):
        data.batch(c, 0, 0, 2, 600)


def test_a_slice_of_rows_is_those_rows_of_the_whole_batch(counting_corpus):
    """A process (or device) that builds only its rows gets the rows the whole batch has there."""
    for step in (0, 6, 11):
        whole = data.batch(counting_corpus, 5, step, 8, SEQ)
        for rows in (slice(0, 3), slice(3, 8), slice(6, None), slice(None)):
            part = data.batch(counting_corpus, 5, step, 8, SEQ, rows=rows)
            assert all((p == w[rows]).all() for p, w in zip(part, whole))
    assert data.batch_windows(counting_corpus, 5, 6, 8, SEQ).shape == (8, SEQ + 1)


def test_batch_is_the_same_in_a_fresh_process(counting_corpus, tmp_path):
    """The resumed run is a new process: its batches must not depend on anything but (seed, step)."""
    script = (
        "import hashlib, sys\n"
        "from scaling import data\n"
        "c = data.load_corpus(sys.argv[1], val_fraction=0.01)\n"
        "h = hashlib.sha256()\n"
        "for step in (0, 7, 60, 123):\n"
        "    x, y = data.batch(c, 11, step, 4, 32)\n"
        "    h.update(x.tobytes() + y.tobytes())\n"
        "print(h.hexdigest())\n"
    )
    here = hashlib.sha256()
    for step in (0, 7, 60, 123):
        x, y = data.batch(counting_corpus, 11, step, 4, SEQ)
        here.update(x.tobytes() + y.tobytes())
    assert _in_fresh_process(script, counting_corpus.name) == here.hexdigest()


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


def _in_fresh_process(script: str, *args: str) -> str:
    """stdout of `script` run by a new interpreter on this checkout's `scaling` (hash seed differs)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(data.__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _text_tree(root, files: dict[str, bytes]):
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return str(root)


def test_fingerprint_follows_file_contents_and_names_not_location(tmp_path):
    files = {f"pkg/m{i}.py": f"def f{i}():\n    return {i}\n".encode() * 20 for i in range(12)}
    original = data.load_corpus(_text_tree(tmp_path / "a", files)).fingerprint
    # one byte of one file (same length, same names, same split)
    edited = dict(files, **{"pkg/m3.py": files["pkg/m3.py"].replace(b"return 3", b"return 4", 1)})
    assert data.load_corpus(_text_tree(tmp_path / "b", edited)).fingerprint != original
    # one file renamed, contents and their order untouched
    renamed = {("pkg/m3x.py" if k == "pkg/m3.py" else k): v for k, v in files.items()}
    assert sorted(renamed) == [("pkg/m3x.py" if k == "pkg/m3.py" else k) for k in sorted(files)]
    assert data.load_corpus(_text_tree(tmp_path / "c", renamed)).fingerprint != original
    # the same files elsewhere: the fingerprint names the data, not where it lies
    shutil.copytree(tmp_path / "a", tmp_path / "d")
    assert data.load_corpus(str(tmp_path / "d")).fingerprint == original
    # and another process computes the same one
    script = "import sys\nfrom scaling import data\nprint(data.load_corpus(sys.argv[1]).fingerprint)"
    assert _in_fresh_process(script, str(tmp_path / "a")) == original


def test_token_file_fingerprint_follows_one_changed_token(tmp_path):
    tokens = np.arange(5000, dtype=np.uint16) % 300
    tokens.tofile(tmp_path / "a.bin")
    tokens[2500] += 1
    tokens.tofile(tmp_path / "b.bin")
    a, b = data.load_corpus(str(tmp_path / "a.bin")), data.load_corpus(str(tmp_path / "b.bin"))
    assert a.fingerprint != b.fingerprint
    script = "import sys\nfrom scaling import data\nprint(data.load_corpus(sys.argv[1]).fingerprint)"
    assert _in_fresh_process(script, str(tmp_path / "a.bin")) == a.fingerprint
    # past the first 2^20 tokens too (an earlier version hashed only those: an edited tail passed as the same data)
    long = np.arange((1 << 20) + 5000, dtype=np.uint16) % 300
    long.tofile(tmp_path / "c.bin")
    long[-10] += 1
    long.tofile(tmp_path / "d.bin")
    c, d = (data.load_corpus(str(tmp_path / f)) for f in ("c.bin", "d.bin"))
    assert c.fingerprint != d.fingerprint


def test_evaluation_windows_spread_evenly_over_the_validation_split(tmp_path):
    path = tmp_path / "tokens.bin"
    np.arange(5000, dtype=np.uint16).tofile(path)
    c = data.load_corpus(str(path), val_fraction=0.2)
    assert int(c.val[0]) == 4000 and len(c.val) == 1000  # validation is the file's last fifth
    batches = list(data.eval_batches(c, 5 * SEQ, 2, SEQ))
    assert [len(x) for x, _ in batches] == [2, 2, 1]
    starts = np.concatenate([x[:, 0] for x, _ in batches]) - 4000
    # five windows from the split's first token to its last: start = linspace(0, 1000 - 33, 5), floored
    assert starts.tolist() == [0, 241, 483, 725, 967]
    for x, y in batches:
        assert (x == x[:, :1] + np.arange(SEQ)).all() and (y == x + 1).all() and x.dtype == np.int32
    again = list(data.eval_batches(c, 5 * SEQ, 2, SEQ))
    assert all((a[0] == b[0]).all() for a, b in zip(batches, again))
    assert [len(x) for x, _ in data.eval_batches(c, 10, 4, SEQ)] == [1]  # less than a sequence: one window
    exact = tmp_path / "exact.bin"  # a validation split of exactly one window (33 of 3,300 tokens)
    np.arange(3300, dtype=np.uint16).tofile(exact)
    (x, y), = data.eval_batches(data.load_corpus(str(exact), val_fraction=0.01), SEQ, 8, SEQ)
    assert x.shape == (1, SEQ) and int(x[0, 0]) == 3267 and int(y[0, -1]) == 3299
    short = data.load_corpus(str(path), val_fraction=0.005)  # 25 validation tokens
    with pytest.raises(UsageError, match="validation split of .* is shorter than one sequence"):
        next(data.eval_batches(short, 5 * SEQ, 2, SEQ))


def test_token_file_rules(tmp_path):
    tokens = (np.arange(3000) % 300).astype(np.uint16)
    tokens.tofile(tmp_path / "t.bin")
    c = data.load_corpus(str(tmp_path / "t.bin"), val_fraction=0.1)
    assert c.name == str(tmp_path / "t.bin")
    assert c.vocab_size == 320  # ids up to 299, rounded up to a multiple of 64
    assert not c.train.flags.writeable  # mapped read-only: training can never write into the corpus
    assert len(c.fingerprint) == 16 and int(c.fingerprint, 16) >= 0
    np.append(tokens, 320).astype(np.uint16).tofile(tmp_path / "u.bin")
    assert data.load_corpus(str(tmp_path / "u.bin")).vocab_size == 384  # id 320 needs 321 -> 384
    np.arange(1024, dtype=np.uint16).tofile(tmp_path / "least.bin")
    assert len(data.load_corpus(str(tmp_path / "least.bin")).train) > 1000  # 1,024 tokens is enough
    (tmp_path / "odd.bin").write_bytes(b"\x01" * 4097)
    with pytest.raises(UsageError, match=r"odd.bin'.*cannot read as uint16 tokens"):
        data.load_corpus(str(tmp_path / "odd.bin"))
    assert len(c.train) == 2700 and len(c.val) == 300 and int(c.val[0]) == 2700 % 300
    assert data.load_corpus(str(tmp_path / "t.bin"), vocab_size=300, val_fraction=0.1).vocab_size == 300
    with pytest.raises(UsageError, match=r"holds token id 299 >= vocab_size=299"):
        data.load_corpus(str(tmp_path / "t.bin"), vocab_size=299)
    # the split is part of what the fingerprint names
    assert data.load_corpus(str(tmp_path / "t.bin"), val_fraction=0.2).fingerprint != c.fingerprint
    tokens[:1000].tofile(tmp_path / "short.bin")
    with pytest.raises(UsageError, match=r"only 1000 tokens"):
        data.load_corpus(str(tmp_path / "short.bin"))


def test_text_files_split_by_path_hash_and_end_with_a_newline(tmp_path):
    files = {f"f{i:02d}.txt": f"doc {i}".encode() for i in range(40)}  # no trailing newlines
    _text_tree(tmp_path / "a", {"weights.npy": b"\x93NUMPY\x00\x01"})  # binary: left out of a directory corpus
    c = data.load_corpus(_text_tree(tmp_path / "a", files), val_fraction=0.25)
    assert c.name == str(tmp_path / "a") and c.vocab_size == 256
    # The recipe, so that a corpus keeps its fingerprint across versions (runs are matched by it):
    # sha256 of "bytes-v1", then per file in path order its path, a NUL and its bytes' sha256, then the split.
    h = hashlib.sha256(b"bytes-v1")
    for k in sorted(files):
        h.update(k.encode() + b"\0" + hashlib.sha256(files[k] + b"\n").digest())
    h.update(b"val=0.25")
    assert c.fingerprint == h.hexdigest()[:16]
    # the rule, recomputed here: a file is validation when the first 8 bytes of sha256(relative path),
    # read little-endian, fall below val_fraction * 2^64
    is_val = {k: int.from_bytes(hashlib.sha256(k.encode()).digest()[:8], "little") < 0.25 * 2**64 for k in files}
    assert 0 < sum(is_val.values()) < 40
    val = b"".join(files[k] + b"\n" for k in sorted(files) if is_val[k])
    train = b"".join(files[k] + b"\n" for k in sorted(files) if not is_val[k])
    assert c.val.tobytes() == val and c.train.tobytes() == train and c.n_files == 40
    assert all(data._is_val(k, 0.25) == v for k, v in is_val.items())
    assert data.load_corpus(str(tmp_path / "a"), val_fraction=0.5).fingerprint != c.fingerprint
    # a single file cannot be split by file: its bytes are cut instead
    one = data.load_corpus(_text_tree(tmp_path / "b", {"only.txt": b"x" * 999}), val_fraction=0.1)
    assert len(one.train) == 900 and len(one.val) == 100 and one.val.tobytes() == b"x" * 99 + b"\n"
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no text files found"):
        data.load_corpus(str(tmp_path / "empty"))
