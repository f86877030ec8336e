"""The training loop's hooks and pack loop on fakes (no model, no JAX): what a display is fed, how the clock
times steady steps, and what a member whose end fails leaves behind. Each test was written for mutants of
scaling/train/hooks.py that the training tests let through (tests/mutants.md)."""
import math
from types import SimpleNamespace

import pytest

from scaling import hardware
from scaling.train import hooks


class FakeClock:
    def __init__(self, tokens_per_s):
        self.speed = tokens_per_s

    def tokens_per_s(self, tokens_per_step):
        return self.speed


def _state(step=20, tokens_per_s=1000.0, ceiling=1e9):
    plan = SimpleNamespace(steps=100, tokens_per_step=50, flops_per_token=6e3)
    return hooks.LoopState(plan=plan, step=step, params=None, opt_state=None, clock=FakeClock(tokens_per_s),
                           ceiling=ceiling, train_loss=2.5, eval_loss=2.7)


def test_progress_feeds_the_display_the_speed_mfu_and_time_left_at_the_latest_log_point():
    seen = []
    hooks.progress(seen.append)(_state())
    [p] = seen
    assert (p.step, p.steps, p.loss, p.eval_loss) == (20, 100, 2.5, 2.7)
    assert p.tokens_per_s == 1000.0
    assert p.eta_s == pytest.approx(80 * 50 / 1000.0)  # the steps left, at the measured speed
    assert p.mfu == pytest.approx(1000.0 * 6e3 / 1e9) == hardware.mfu(1000.0, 6e3, 1e9)


def test_progress_before_any_timed_step_has_no_speed_mfu_or_time_left():
    seen = []
    hooks.progress(seen.append)(_state(tokens_per_s=None))
    [p] = seen
    assert p.tokens_per_s is None and p.mfu is None and math.isnan(p.eta_s)


class Loss:
    """A device value as the clock sees it: it waits for it once, at the first (compiling) call."""

    def __init__(self):
        self.waited = 0

    def block_until_ready(self):
        self.waited += 1
        return self


def test_the_clock_leaves_out_the_first_call_and_times_the_steps_after_it(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(hooks.time, "perf_counter", lambda: now[0])
    clock = hooks.Clock(wall_before=30.0)
    first = Loss()
    now[0] = 105.0  # compiling
    clock.tick(first, steps=4)
    assert first.waited == 1 and clock.tokens_per_s(10) is None  # the first call is not a measured speed
    later = Loss()
    clock.tick(later, steps=4)
    clock.tick(later, steps=2)
    assert later.waited == 0  # steady calls are not waited on: the loop keeps the device busy
    now[0] = 107.0
    assert clock.tokens_per_s(10) == pytest.approx((4 + 2) * 10 / 2.0)
    assert clock.wall_s == pytest.approx(30.0 + 7.0)  # the time before this session, plus this session's


def test_the_clock_has_no_speed_before_a_timed_step_or_with_no_time_elapsed(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(hooks.time, "perf_counter", lambda: now[0])
    clock = hooks.Clock()
    assert clock.tokens_per_s(10) is None  # nothing timed yet: no speed, not an error
    clock.tick(1.5)
    now[0] = 1.0
    assert clock.tokens_per_s(10) is None  # the first call only: time passed, but no step was timed
    clock = hooks.Clock()
    clock.tick(1.5)
    clock.tick(1.5)
    assert clock.tokens_per_s(10) is None  # a timed step but no time on the clock: no speed, not inf


def test_a_new_clock_starts_at_zero_and_counts_one_step_a_call_by_default(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(hooks.time, "perf_counter", lambda: now[0])
    clock = hooks.Clock()
    clock.tick(1.5)  # a host value (a pack's): nothing to wait for
    clock.tick(1.5)
    clock.tick(1.5)
    now[0] = 4.0
    assert clock.tokens_per_s(10) == pytest.approx(2 * 10 / 4.0) and clock.wall_s == pytest.approx(4.0)


class Member:
    def __init__(self, name, steps=3, end_error=None):
        self.name, self.end_error = name, end_error
        self.plan = SimpleNamespace(steps=steps)
        self.state = SimpleNamespace(step=0)
        self.hooks = []
        self.result = None
        self.failed = []

    def end(self, status):
        if self.end_error is not None and status == "complete":
            raise self.end_error
        return {"status": status}

    def abandon(self, err):  # a lost lease: not raised by these fakes
        raise AssertionError(f"abandon({err!r}) was not expected")

    def fail(self, err):
        self.failed.append(err)


class Driver:
    steps_per_call = 1

    def advance(self, live, n):
        for m in live:
            m.state.step += n

    def own(self, member):
        pass


def test_a_member_whose_end_fails_records_that_error_and_raises_it_and_its_pack_mate_ends_resumably():
    full = OSError(28, "No space left on device")
    short, longer = Member("a", steps=2, end_error=full), Member("b", steps=5)
    with pytest.raises(OSError) as raised:
        hooks.run_loop([short, longer], Driver())
    assert raised.value is full
    assert short.failed == [full] and short.result is None  # recorded by the member it came from
    assert longer.result == {"status": "interrupted"} and longer.failed == []


class Recording(Driver):
    def __init__(self, steps_per_call=1):
        self.steps_per_call, self.calls = steps_per_call, []

    def advance(self, live, n):
        self.calls.append((tuple(m.name for m in live), n))
        super().advance(live, n)


def test_a_member_restored_at_its_last_step_ends_complete_without_a_step_and_the_rest_train():
    done, fresh = Member("done", steps=3), Member("fresh", steps=2)
    done.state.step = 3
    driver = Recording()
    hooks.run_loop([done, fresh], driver)
    assert done.result == {"status": "complete"} and fresh.result == {"status": "complete"}
    assert driver.calls == [(("fresh",), 1), (("fresh",), 1)]


def test_several_steps_per_call_run_up_to_the_next_boundary_hook():
    m = Member("m", steps=5)
    m.hooks = [hooks.Hook(run=lambda state: None, when=lambda step: step == 3)]
    driver = Recording(steps_per_call=4)
    hooks.run_loop([m], driver)
    assert [n for _, n in driver.calls] == [3, 2] and m.result == {"status": "complete"}
    m, driver = Member("m", steps=5), Recording(steps_per_call=2)
    m.hooks = [hooks.Hook(run=lambda state: None, when=lambda step: step == 3)]
    hooks.run_loop([m], driver)
    assert [n for _, n in driver.calls] == [2, 1, 2]


def test_ctrl_c_during_a_call_ends_every_member_interrupted():
    class Interrupting(Recording):
        def advance(self, live, n):
            super().advance(live, n)
            if live[0].state.step == 2:
                raise KeyboardInterrupt

    a, b = Member("a", steps=5), Member("b", steps=5)
    hooks.run_loop([a, b], Interrupting())
    assert a.result == b.result == {"status": "interrupted"} and a.state.step == 2


def test_a_member_interrupted_without_a_stop_request_ends_alone_and_its_pack_mate_completes():
    def lease_check(state):  # an agent's lease check stopping its own run
        if state.step == 2:
            raise hooks.Interrupted("stop requested for this run")

    a, b = Member("a", steps=4), Member("b", steps=4)
    a.hooks = [hooks.Hook(run=lease_check, when=lambda step: True, boundary=False)]
    hooks.run_loop([a, b], Recording())
    assert a.result == {"status": "interrupted"} and b.result == {"status": "complete"} and b.state.step == 4


def test_a_stop_request_seen_by_one_member_ends_the_whole_pack_interrupted():
    def stop_at_2(state):
        if state.step == 2:
            hooks.preempt.request_stop()  # as SIGTERM's handler does, then the lease check raises
            raise hooks.Interrupted("SIGTERM")

    a, b = Member("a", steps=5), Member("b", steps=5)
    a.hooks = [hooks.Hook(run=stop_at_2, when=lambda step: True, boundary=False)]
    driver = Recording()
    try:
        hooks.run_loop([a, b], driver)
    finally:
        hooks.preempt._requested.clear()  # the flag outlives the loop; no later test may see it
    assert a.result == {"status": "interrupted"} and b.result == {"status": "interrupted"}
    assert b.state.step == 2 and len(driver.calls) == 2


def test_a_hook_that_fails_records_its_error_on_its_member_and_ends_the_pack():
    def broken(state):
        raise OSError(5, "Input/output error")

    a, b = Member("a", steps=5), Member("b", steps=5)
    a.hooks = [hooks.Hook(run=broken, when=lambda step: step == 2)]
    with pytest.raises(OSError):
        hooks.run_loop([a, b], Recording())
    assert [str(e) for e in a.failed] == ["[Errno 5] Input/output error"] and a.result is None
    assert b.result == {"status": "interrupted"}
