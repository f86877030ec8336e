"""`scaling train`: one run (or its resumption), with a progress line and the summary."""
from __future__ import annotations

import argparse
import os
import sys

from scaling.commands.common import add_home

EPILOG = """\
keys (key=value, or the same keys in CONFIG.yaml; later wins, W&B sweep values win over all):
  size      params=N (target count) | d_model=W   [n_layers n_heads d_ff mlp=swiglu|gelu tied qk_norm seq_len]
  length    tokens=D | flops_budget=C (D = C/6N, rounded to whole steps)   [batch_size]
  optimizer lr beta1 beta2 weight_decay grad_clip  schedule=cosine|wsd warmup_fraction|warmup_tokens min_lr_ratio
            decay_fraction  cooldowns=D1,D2,... (wsd: branches that reuse this run's stable phase; see README)
            parametrization=standard|mup  base_width output_mult (mup: the width whose lr and readout
            multiplier transfer to every width; 64 and 4)
            recipe=FIT.json[,FIT2.json] (fitted lr / batch laws from `scaling fit --law lr|batch --json`: they set
            lr and batch_size where not given, instead of the family's rules; recorded in config.yaml)
  data      corpus=stdlib|DIR|GLOB|FILE.bin|synthetic[:V[:SEED]]  seed eval_tokens n_evals
  tracking  run_id name sweep checkpoint_every wandb=auto|off|offline|online wandb_project dtype=auto|float32|bfloat16
            validates=SWEEP (a ladder run: the sweep whose law it checks; fit and report keep it out of the fit)
examples:
  scaling train params=1e5 tokens=3e5 wandb=off
  scaling train d_model=128 flops_budget=1e13 run_id=my-run checkpoint_every=50
  scaling train d_model=64 tokens=4e6 schedule=wsd cooldowns=1e6,2e6 run_id=ladder
      (three runs, D = 1e6, 2e6 and 4e6, for 4.6e6 tokens of training instead of 7e6)
Running the same run_id again resumes it from its latest checkpoint (or prints its summary if done).
SIGTERM (preemption) checkpoints and exits 130; the run resumes when started again.
"""
# Exit status of a trainer whose claim another agent took over (it wrote nothing after noticing).
EXIT_LEASE_LOST = 3


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="one training run", description="Train one model (or resume it).",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("items", nargs="*", metavar="[CONFIG.yaml] key=value",
                   help="optional YAML config, then key=value overrides")
    add_home(p)
    p.add_argument("--quiet", action="store_true", help="no progress line")
    # Set by an isolating agent for its child trainer: the claim to check before every write, and the
    # agent whose death must end this process too.
    p.add_argument("--claimed-by", help=argparse.SUPPRESS)
    p.add_argument("--token", type=int, help=argparse.SUPPRESS)
    p.add_argument("--die-with-parent", type=int, metavar="PID", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args) -> int:
    from scaling import preempt

    # From here on SIGTERM only asks the run to stop at its next step (then it checkpoints and exits
    # 130), wherever it lands: during imports, compilation, a checkpoint save or the summary.
    with preempt.sigterm_requests_stop():
        return _train(args)


def _train(args) -> int:
    if args.die_with_parent:
        from scaling.agents.isolated import die_with_parent

        die_with_parent(args.die_with_parent)
    from scaling import hardware
    from scaling.commands.progress import ProgressLine, print_summary
    from scaling.config import resolve_config
    from scaling.display import number
    from scaling.runs import Fence, LeaseLost, RunHome
    from scaling.train import distributed, plan_run, train_run
    from scaling.train.branches import Branching, train_branches
    from scaling.train.limits import check_plan

    config_file, overrides = None, list(args.items)
    if overrides and "=" not in overrides[0] and (
            overrides[0].endswith((".yaml", ".yml")) or os.path.exists(overrides[0])):
        config_file = overrides.pop(0)
    plan = plan_run(resolve_config(config_file, overrides))
    distributed.initialize(plan.config)
    plan.layout()  # a mesh or batch these devices cannot take is refused before the plan is announced
    check_plan(plan)  # and a model, batch or length this machine cannot hold
    RunHome(args.home).check_writable()  # and a home that is a file, or read-only
    fence = Fence(args.claimed_by, args.token) if args.claimed_by and args.token is not None else None
    print(f"{plan.run_id}: {plan.shape.describe()} N={plan.shape.params:,} D={plan.tokens:,} "
          f"C={number(plan.flops, 3)} ({plan.steps} steps x {plan.batch_size}x{plan.shape.seq_len}, "
          f"lr {number(plan.lr, 2)})", file=sys.stderr)
    for law in plan.recipe:  # which of the run's settings a fitted law chose
        key = "lr" if law["law"] == "lr" else "batch_size"
        if law.get(key) is not None:
            print(f"  {key} {number(law[key], 3)} from recipe {law['path']} (law {law['law']})", file=sys.stderr)
    asked = plan.config.length.tokens(plan.shape.params)
    if abs(plan.tokens - asked) > 0.01 * asked:  # a run is whole steps: say when that moved D noticeably
        steps = f"{plan.steps} whole step" + ("s" if plan.steps != 1 else "")
        print(f"  {plan.config.length} asks D={number(asked, 3)}; rounded to {steps} of {plan.tokens_per_step:,} "
              "tokens", file=sys.stderr)
    # Under an agent (a claim passed in), the sweep's agents train the cooldown branches: each is queued
    # for them once seeded. Alone, this process trains them after the run.
    branching = Branching(queue=fence is not None)
    try:
        summary = train_run(plan, args.home, on_progress=None if args.quiet else ProgressLine(), fence=fence,
                            on_checkpoint=branching)
    except LeaseLost as err:
        print(f"scaling train: {err}; stopped without writing", file=sys.stderr)
        return EXIT_LEASE_LOST
    ceiling = hardware.ceiling_flops()[1]  # cached by the run's start: what its MFU divides by, and since when
    print_summary(summary, ceiling)
    if summary["status"] == "complete" and fence is None:
        # No agent shares this run's cooldown branches: train them here, each from its seed.
        def branch(branch_plan):
            print(f"{branch_plan.run_id}: cooldown branch of {plan.run_id} from step {branch_plan.stable_end} "
                  f"to {branch_plan.steps} (D={branch_plan.tokens:,})", file=sys.stderr)
            done = train_run(branch_plan, args.home, on_progress=None if args.quiet else ProgressLine())
            print_summary(done, ceiling)
            return done

        summary = next((s for s in train_branches(plan, args.home, branch) if s["status"] != "complete"), summary)
    return {"complete": 0, "interrupted": 130}.get(summary["status"], 1)
