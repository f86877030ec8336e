"""The one sweep display (commands/progress.SweepDisplay): a local agent's and a Ray driver's events,
the same typed records, become the same lines in a log file."""
import io

import pytest

from scaling.agents.events import Claimed, Finished, RunProgress, RunResult, Stopped, Waiting
from scaling.commands.progress import SweepDisplay
from scaling.runs import IndexedRun


def _events():
    run = IndexedRun(run_id="s-000", sweep_id="s", status="running", config={},
                     plan={"shape": "d16", "params": 1234, "tokens": 5678, "steps": 10}, resumed=True)
    result = RunResult("s-000", "complete", None, {"eval_loss": 2.5}, True, 3.25, 1.5)
    return [Claimed(run, 0, 2), RunProgress("s-000", 3, 10, 2.9, None, 1e4), Waiting(1),
            Finished(result, 1, 2), Stopped("2 runs in a row failed")]


def test_an_agents_events_become_one_line_per_run_claimed_and_ended_in_a_log():
    out = io.StringIO()
    display = SweepDisplay(out)
    for event in _events():
        display(event)
    display.close()
    assert out.getvalue().splitlines() == [
        "[0/2] s-000  d16 N=1,234 D=5,678  (resuming)",
        "[1/2] s-000 complete  eval 2.5  3.2 s (first step after 1.5 s)",
        "agent stopped: 2 runs in a row failed",
    ]


def test_a_ray_drivers_events_read_as_tasks_submitted():
    out = io.StringIO()
    display = SweepDisplay(out, engine="ray", claimed="submitted")
    for event in _events():
        display(event)
    lines = out.getvalue().splitlines()
    assert lines[0] == "[0/2] submitted s-000  d16 N=1,234 D=5,678  (resuming)"
    assert lines[-1] == "ray stopped: 2 runs in a row failed"


def test_an_event_the_display_does_not_know_is_refused_not_ignored():
    with pytest.raises(KeyError):
        SweepDisplay(io.StringIO())(object())


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_a_log_gets_a_heartbeat_after_30_s_without_a_line_and_not_before():
    out, clock = io.StringIO(), Clock()
    display = SweepDisplay(out, clock=clock)
    claimed, progress = _events()[:2]
    display(claimed)
    clock.t = 29
    display(progress)
    assert len(out.getvalue().splitlines()) == 1
    clock.t = 30
    display(progress)
    clock.t = 45
    display(progress)
    lines = out.getvalue().splitlines()
    assert lines[1:] == ["  s-000 step 3/10  loss 2.9"]


def test_the_total_counts_branches_to_come_from_the_first_line():
    out = io.StringIO()
    display = SweepDisplay(out, runnable=lambda: 6)  # 2 queued runs, 4 cooldown branches to come
    for event in _events():
        display(event)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[0/6] ") and lines[1].startswith("[1/6] ")
