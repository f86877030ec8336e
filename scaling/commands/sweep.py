"""`scaling sweep`: the subcommands' wiring. Designing and watching a sweep (create, plan, status) is in
sweep_design.py, running it (agent, agents, slurm, ray) in sweep_run.py."""
from __future__ import annotations

import argparse

from scaling.commands import sweep_design, sweep_run
from scaling.commands.common import add_home

SWEEP_EPILOG = """\
examples:
  scaling sweep create sweeps/demo.yaml          # prints the sweep id
  scaling sweep plan --budgets 2.5e11,5e11,1e12 --per-budget 5 --span 3 --base sweeps/demo-grid.yaml --out plan.yaml
  scaling sweep plan --budgets 2.5e11,5e11,1e12 --per-budget 5 --span 3 --branches --out plan.yaml  (cooldown branches)
  scaling sweep agent SWEEP                      # run it here; start more agents to share the work
  scaling sweep status SWEEP                     # counts, runs in flight, ETA
  scaling sweep retry SWEEP                      # requeue its failed runs (a full disk, now freed)
  scaling sweep slurm SWEEP --parallel 8 --partition gpu --gpus 1 --time 120
  scaling sweep slurm SWEEP --per-point --array-parallelism 16 --gpus 1   # no SQLite locks on the nodes
  scaling sweep ray SWEEP --address auto --gpus-per-run 1                 # on a Ray cluster
  scaling runs --sweep SWEEP --csv runs.csv      # the table `scaling fit` reads
Online instead (W&B's server chooses the points, same file):
  wandb sweep sweeps/demo.yaml && wandb agent ENTITY/PROJECT/ID
"""


def add_parser(sub) -> None:
    p = sub.add_parser("sweep", help="sweeps: create from a W&B sweep spec, run agents, status, SLURM, Ray",
                       description="Sweeps in W&B's sweep YAML format, run offline by local agents.",
                       epilog=SWEEP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_home(p)
    ssub = p.add_subparsers(dest="sweep_command", metavar="SUBCOMMAND", required=True)
    for subcommand in (sweep_design.CREATE, sweep_design.PLAN, sweep_run.AGENT, sweep_run.AGENTS, sweep_design.STATUS,
                       sweep_run.SLURM, sweep_run.RAY, sweep_run.RETRY):
        subcommand.add_to(ssub)
