import os
import sys

import pytest

from scaling.cli import main

BENCHMARKS = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks")


def test_bench_times_single_and_packed_runs_of_each_width(capsys, tmp_path, monkeypatch):
    from scaling import hardware
    from scaling.train.step import compilation_cache_dir

    # compiled steps still load from the user's cache (else both compile afresh); only the ceiling moves
    monkeypatch.setenv("SCALING_COMPILATION_CACHE", compilation_cache_dir() or "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # bench re-measures the ceiling: keep the user's cache

    measure = hardware.measure_matmul_flops  # a small matmul for a moment: the ceiling's value is not checked here
    monkeypatch.setattr(hardware, "measure_matmul_flops", lambda: measure(n=256, seconds=0.05))
    assert main(["bench", "--d-model", "16", "--seq-len", "16", "--batch-size", "2", "--steps", "2",
                 "--pack", "2", "--steps-per-call", "2"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.strip().startswith("d16")]
    assert [(r[2], r[3]) for r in rows] == [("1", "2"), ("2", "2")]  # runs, steps per call
    assert all(float(r[5].replace(",", "")) > 0 for r in rows)


def test_peer_benchmark_compares_with_torch_on_a_tiny_shape(capsys):
    pytest.importorskip("torch")
    sys.path.insert(0, os.path.abspath(BENCHMARKS))
    try:
        import peer
    finally:
        sys.path.pop(0)
    assert peer.main(["--shapes", "16:1", "--batch", "2", "--seq", "16", "--rounds", "1", "--steps", "2",
                      "--pack", "2"]) == 0
    out = capsys.readouterr().out
    for contender in ("peer", "ours 1/call", "ours pack 2"):
        assert contender in out
    assert "1.00x" in out  # the peer against itself; every other row is a ratio to it
