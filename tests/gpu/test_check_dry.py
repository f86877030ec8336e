"""tests/gpu/check.sh can only be run for real where a GPU is lent: here it is checked as bash, and its
--dry mode runs every part of the issue-22 check on tiny shapes on the CPU."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECK = os.path.join(ROOT, "tests", "gpu", "check.sh")


def test_gpu_check_is_valid_bash():
    out = subprocess.run(["bash", "-n", CHECK], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.slow
@pytest.mark.timeout(1200)  # about 70 CPU seconds; minutes of wall time on a busy machine
def test_gpu_check_dry_runs_every_part_on_tiny_shapes_and_writes_its_summary(tmp_path):
    env = {**os.environ, "PY": sys.executable, "OUT": str(tmp_path), "JAX_PLATFORMS": "cpu", "BUDGET_S": "1100"}
    proc = subprocess.run(["bash", CHECK, "--dry"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1150)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [summary] = [p for p in os.listdir(tmp_path) if p.endswith("-gpu-check-dry.txt")]
    text = (tmp_path / summary).read_text()
    assert "within the seed noise" in text  # attention: xla against auto (the same kernel on CPU)
    assert "d32-L1-H2" in text and "d64-L1-H4" in text and "FAILED" not in text  # scale: both tiny sizes
    assert "full keeps" in text  # remat: each policy's compiled memory compared
    assert "skipped" not in text and "time limit" not in text
