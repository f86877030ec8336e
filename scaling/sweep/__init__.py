"""Sweep design: specs in W&B's sweep format, their points, the isoFLOP planner, registration in the run
home and status. Running a sweep's points is `scaling.agents`' job."""
from scaling.sweep.command import render_command, train_overrides
from scaling.sweep.points import enumerate_points
from scaling.sweep.register import create_sweep, duplicate_notes, find_or_create_sweep, plan_sweep_runs, require_sweep
from scaling.sweep.spec import SweepSpec, load_spec, parse_spec
from scaling.sweep.status import SweepStatus, sweep_status

__all__ = ["render_command", "train_overrides", "enumerate_points", "create_sweep", "duplicate_notes",
           "find_or_create_sweep", "plan_sweep_runs", "require_sweep", "SweepSpec", "load_spec", "parse_spec",
           "SweepStatus", "sweep_status"]
