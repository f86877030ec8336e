"""Issue #11 item 5: checkpoint_every is honoured at every multiple, not only at logged steps. A run
killed with SIGKILL after step k loses at most checkpoint_every steps (all of them only when the kill
lands while step k's own checkpoint is being written, after its metrics row), and resumes from there."""
import os
import signal

import pytest
from faultlib import checkpoint_steps, kill, last_step, run, start, summary, wait_for

from scaling.runs import read_metrics


@pytest.mark.slow
def test_kill_9_after_step_k_with_checkpoint_every_10_loses_at_most_10_steps(home, tiny):
    # 700 steps: a metrics row every 7th step, so the logged steps are rarely multiples of 10.
    args = [*tiny, "tokens=89600", "checkpoint_every=10", "wandb=off", "run_id=k9", "--quiet"]
    proc = start(home, "train", *args)
    wait_for(lambda: last_step(home, "k9") >= 200, 300, "step 200", alive=proc)
    kill(proc, signal.SIGKILL)
    proc.wait()
    k = last_step(home, "k9")  # it had finished at least k steps when it died
    assert summary(home, "k9") is None and k < 700
    saved = checkpoint_steps(home, "k9")[-1]
    assert k - saved <= 10 and saved % 10 == 0, (k, saved)

    again = run(home, "train", *args)
    assert again.returncode == 0, again.stderr[-3000:]
    steps = [m["step"] for m in read_metrics(os.path.join(home, "k9", "metrics.jsonl"))]
    resumed = steps[steps.index(k) + 1]
    assert saved < resumed <= saved + 7 and steps[-1] == 700
    assert not [n for n in os.listdir(os.path.join(home, "k9", "checkpoints")) if "tmp" in n]
