"""The Ray driver (`scaling sweep ray`) without Ray: a stand-in for its three calls (wait, get, cancel)
shows that the driver keeps its claims alive with the one lease heartbeat while its tasks run, and reports
them with the agent's typed events, the run's logged step included."""
import json
import os
import time

from scaling.agents.events import Claimed, Finished, RunProgress
from scaling.agents.ray_engine import _drive
from scaling.runs import RunHome, queue


class FakeRay:
    """Each task 'runs' for `task_s`: `wait` hands it back as done only after that."""

    class exceptions:
        class RayError(Exception):
            pass

    def __init__(self, home: str, task_s: float):
        self.home, self.task_s, self.started, self.cancelled = home, task_s, {}, []

    def wait(self, refs, num_returns, timeout):
        done = [r for r in refs if time.monotonic() - self.started[r] >= self.task_s][:num_returns]
        if not done:
            time.sleep(min(timeout, 0.05))
        return done, [r for r in refs if r not in done]

    def get(self, ref):  # the task's end, written to its run directory as train_point does
        # A local agent comes by: it must find the run still claimed (the lease renewed all along).
        self.taken = queue.claim(RunHome(self.home), "s", "local-agent", lease_s=60)
        with open(os.path.join(self.home, ref, "summary.json"), "w") as fh:
            json.dump({"run_id": ref, "status": "complete", "step": 10, "eval_loss": 2.4}, fh)

    def cancel(self, ref, force):
        self.cancelled.append(ref)


def test_the_ray_driver_renews_its_claims_and_reports_progress_as_the_agent_does(home):
    store = RunHome(home)
    store.register_sweep("s", "s", {}, [{"run_id": "s-000", "status": "pending", "config": {},
                                         "plan": {"steps": 10}}])
    lease_s = 0.4
    ray = FakeRay(home, task_s=5 * lease_s)  # the task outlives its lease several times over

    def submit(run):
        # The task logs a step to its run directory, as train_point would on its node.
        os.makedirs(os.path.join(home, run.run_id), exist_ok=True)
        with open(os.path.join(home, run.run_id, "metrics.jsonl"), "w") as fh:
            fh.write(json.dumps({"step": 3, "loss": 2.5}) + "\n")
        ray.started[run.run_id] = time.monotonic()
        return run.run_id

    events = []
    results = _drive(ray, submit, store, "s", 1, lease_s, 3, events.append)

    assert [r.status for r in results] == ["complete"]  # recorded, not lost to a lapsed lease
    assert not ray.cancelled and ray.taken is None
    ends = [e for e in events if not isinstance(e, RunProgress)]
    assert [(type(e), e.done, e.total) for e in ends] == [(Claimed, 0, 1), (Finished, 1, 1)]
    progress = [e for e in events if isinstance(e, RunProgress)]
    assert progress and (progress[0].run_id, progress[0].step, progress[0].steps, progress[0].loss) == \
        ("s-000", 3, 10, 2.5)
    assert len(progress) == 1  # reported once, not at every beat
    row = store.sweep_runs("s")[0]
    assert (row.status, row.lease_until, row.attempts, row.summary["eval_loss"]) == ("complete", None, 1, 2.4)
