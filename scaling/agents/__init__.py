"""Sweep execution: the local agent that claims a sweep's runs and trains them (alone, packed or in an
isolated child), its events, the supervised fleet of agents on one machine, SLURM arrays (of agents, or a
task per point) and Ray tasks (`slurm`, `pointwise`, `ray_engine`)."""
from scaling.agents.agent import Agent
from scaling.agents.events import Claimed, Finished, RunProgress, RunResult, Stopped, Waiting

__all__ = ["Agent", "Claimed", "Finished", "RunProgress", "RunResult", "Stopped", "Waiting"]
