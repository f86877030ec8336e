"""Sweeps: specs in W&B's sweep format, their points, registration in the run home, status, the local
agent, SLURM arrays (of agents, or a task per point) and Ray tasks (`slurm`, `pointwise`, `ray_engine`)."""
from scaling.sweep.agent import Agent
from scaling.sweep.command import render_command, train_overrides
from scaling.sweep.events import Claimed, Finished, RunProgress, RunResult, Stopped, Waiting
from scaling.sweep.points import enumerate_points
from scaling.sweep.register import create_sweep, duplicate_notes, find_or_create_sweep, plan_sweep_runs, require_sweep
from scaling.sweep.spec import SweepSpec, load_spec, parse_spec
from scaling.sweep.status import SweepStatus, sweep_status

__all__ = ["Agent", "render_command", "train_overrides", "Claimed", "Finished", "RunProgress", "RunResult",
           "Stopped", "Waiting", "enumerate_points", "create_sweep", "duplicate_notes", "find_or_create_sweep",
           "plan_sweep_runs", "require_sweep", "SweepSpec", "load_spec", "parse_spec", "SweepStatus",
           "sweep_status"]
