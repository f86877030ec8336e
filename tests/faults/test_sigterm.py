"""Issue #11 item 3 (and the README's claim about SIGTERM): a `scaling train` process that receives
SIGTERM at any moment, a checkpoint save included (checkpoint_every=1 makes saves most of its time),
records `interrupted` with a summary, exits 130, and resumes to the loss of an uninterrupted run."""
import os
import random
import time

import pytest
from faultlib import checkpoint_steps, run, start, summary, wait_for

from scaling.runs import read_metrics


@pytest.mark.slow
def test_sigterm_at_random_moments_interrupts_with_a_summary_and_exit_130_and_resumes_to_the_same_loss(home, tiny):
    args = [*tiny, "tokens=7680", "wandb=off", "checkpoint_every=1"]  # 60 steps, 60 saves
    straight = run(home, "train", *args, "run_id=straight", "--quiet")
    assert straight.returncode == 0, straight.stderr[-3000:]
    reference = summary(home, "straight")
    rows = read_metrics(os.path.join(home, "straight", "metrics.jsonl"))
    stepping_s = rows[-1]["wall_s"] - rows[0]["wall_s"]  # the time spent stepping and saving
    rng = random.Random(11)
    outcomes = []
    for trial in range(3):
        run_id = f"t{trial}"
        proc = start(home, "train", *args, f"run_id={run_id}", "--quiet")
        if trial == 0:  # while it imports, loads the corpus and compiles: before its first step
            wait_for(lambda p=proc: p.stderr.readline().strip(), 120, "the plan line")
        else:  # while it steps and saves
            wait_for(lambda r=run_id: checkpoint_steps(home, r), 120, "the first checkpoint", alive=proc)
            time.sleep(rng.uniform(0, 0.7 * stepping_s))
        proc.terminate()
        out, err = proc.communicate(timeout=120)
        s = summary(home, run_id)
        assert s is not None, f"trial {trial}: no summary; exit {proc.returncode}: {err[-2000:]}"
        assert "Traceback" not in err, err[-3000:]
        assert (s["status"], proc.returncode) in (("interrupted", 130), ("complete", 0)), (trial, s, err[-2000:])
        outcomes.append((s["status"], s["step"]))
        again = run(home, "train", *args, f"run_id={run_id}", "--quiet")
        assert again.returncode == 0, again.stderr[-3000:]
        s = summary(home, run_id)
        assert s["status"] == "complete"
        assert s["eval_loss"] == pytest.approx(reference["eval_loss"], abs=1e-6)
        assert s["train_loss"] == pytest.approx(reference["train_loss"], abs=1e-6)
    assert outcomes[0] == ("interrupted", 1), outcomes  # the stop flag set before the loop ends it at step 1
    assert sum(status == "interrupted" for status, _ in outcomes) >= 2, outcomes
