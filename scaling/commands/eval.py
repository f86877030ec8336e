"""`scaling eval`: evaluate finished runs' final checkpoints on evaluation sets and multiple-choice tasks
(thin over scaling.train.posthoc); or write a task's items as JSONL."""
from __future__ import annotations

import sys

from scaling.commands.common import add_home, check_output_file
from scaling.errors import UsageError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "eval", help="evaluate finished runs on evaluation sets and multiple-choice tasks",
        description="Evaluate each run's final checkpoint and record the numbers in its evals.json, beside "
                    "those of its training (the runs table, `scaling fit` and `scaling report` read them).")
    p.add_argument("runs", nargs="*", metavar="RUN", help="run ids in the run home")
    p.add_argument("--sweep", help="every complete run of this sweep")
    p.add_argument("--eval", metavar="NAME:DIR,...",
                   help="evaluation sets: prepared corpora (their validation split) or folders of text, tokenized "
                        "with the run's corpus's tokenizer; recorded as eval/NAME/loss and eval/NAME/bpb")
    p.add_argument("--task", action="append", default=[], metavar="FILE.jsonl",
                   help="a multiple-choice task, one {context, choices, gold} object a line, or "
                        "builtin:nextline[:ITEMS[:SEED]] (default 400 items, seed 0); repeat for several; "
                        "recorded as task/NAME/acc, acc_norm, nll, n")
    p.add_argument("--write", metavar="FILE.jsonl",
                   help="write the (single) --task's items to this file instead of evaluating")
    add_home(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from scaling.train.tasks import load_task

    if args.write:
        if len(args.task) != 1 or args.runs or args.sweep or args.eval:
            raise UsageError("--write FILE takes exactly one --task and no runs, --sweep or --eval")
        check_output_file(args.write, "--write")
        from scaling.runs import write_atomic

        task = load_task(args.task[0])
        write_atomic(args.write, task.to_jsonl())
        print(f"wrote {args.write}: {len(task.items)} items of {task.source}")
        return 0
    if not args.eval and not args.task:
        raise UsageError("nothing to evaluate: give --eval NAME:DIR and/or --task FILE.jsonl")
    tasks = [load_task(spec) for spec in args.task]
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise UsageError(f"--task: two tasks are named {next(n for n in names if names.count(n) > 1)!r} "
                         "(a task is named by its file's stem)")
    from scaling.runs import RunHome

    home = RunHome(args.home)
    run_ids = list(args.runs) + _sweep_runs(home, args.sweep)
    if not run_ids:
        raise UsageError("give run ids, or --sweep SWEEP" + (f" (sweep {args.sweep} has no complete run)"
                                                              if args.sweep else ""))
    for run_id in run_ids:
        if not home.files(run_id).read_record():
            raise UsageError(f"run {run_id}: not in the run home {home.root}")
    from scaling.train.posthoc import chance, evaluate_run

    for run_id in run_ids:
        done = evaluate_run(home, run_id, args.eval, tasks)
        parts = [f"{name} loss {v['loss']:.4f}" + (f" ({v['bpb']:.4f} bits/byte)" if v["bpb"] is not None else "")
                 for name, v in done.sets.items()]
        parts += [f"{t.name} acc {r.acc:.3f} acc_norm {r.acc_norm:.3f} nll {r.nll:.3f} "
                  f"({r.n} items{f', {r.skipped} too long' if r.skipped else ''}; chance {chance(t):.3f})"
                  for t, r in zip(tasks, done.tasks.values())]
        print(f"{run_id} (step {done.step}): " + "; ".join(parts))
    print(f"recorded in each run's evals.json ({len(run_ids)} run{'s' if len(run_ids) != 1 else ''})",
          file=sys.stderr)
    return 0


def _sweep_runs(home, sweep: str | None) -> list[str]:
    if sweep is None:
        return []
    from scaling.sweep import require_sweep

    require_sweep(home, sweep)
    return [r["run_id"] for r in home.read("SELECT run_id FROM runs WHERE sweep_id=? AND status='complete' "
                                           "ORDER BY run_id", (sweep,))]
