"""`scaling`: argument parsing and pretty printing over the library. Heavy imports stay inside commands
so that `--help` answers at once."""
from __future__ import annotations

import argparse
import os
import sys
import time

from scaling.display import duration, number
from scaling.errors import UsageError

TRAIN_EPILOG = """\
keys (key=value, or the same keys in CONFIG.yaml; later wins, W&B sweep values win over all):
  size      params=N (target count) | d_model=W   [n_layers n_heads d_ff mlp=swiglu|gelu tied qk_norm seq_len]
  length    tokens=D | flops_budget=C (D = C/6N, rounded to whole steps)   [batch_size]
  optimizer lr beta1 beta2 weight_decay grad_clip  schedule=cosine|wsd warmup_fraction min_lr_ratio decay_fraction
  data      corpus=stdlib|DIR|GLOB|FILE.bin|synthetic[:V[:SEED]]  seed eval_tokens n_evals
  tracking  run_id name sweep checkpoint_every wandb=auto|off|offline|online wandb_project dtype=auto|float32|bfloat16
examples:
  scaling train params=1e5 tokens=3e5 wandb=off
  scaling train d_model=128 flops_budget=1e13 run_id=my-run checkpoint_every=50
Running the same run_id again resumes it from its latest checkpoint (or prints its summary if done).
"""


class ProgressLine:
    """One live line on a terminal; a line per ~10% of the run when output is a log file."""

    def __init__(self, stream=sys.stderr):
        self.stream, self.tty, self.last_decile = stream, stream.isatty(), -1

    def __call__(self, p) -> None:
        text = (f"step {p.step}/{p.steps}  loss {p.loss:.4f}"
                + (f"  eval {p.eval_loss:.4f}" if p.eval_loss is not None else "")
                + f"  {p.tokens_per_s / 1e3:.1f}k tok/s  MFU {100 * p.mfu:.1f}%  ETA {duration(p.eta_s)}")
        if self.tty:
            self.stream.write("\r\x1b[2K" + text + ("\n" if p.step == p.steps else ""))
            self.stream.flush()
        else:
            decile = 10 * p.step // p.steps
            if decile != self.last_decile:
                self.last_decile = decile
                print(text, file=self.stream, flush=True)


def print_summary(s: dict) -> None:
    rows = [
        ("run", f"{s['run_id']}  ({s['status']})"),
        ("N params", f"{s['params']:,}  (non-embedding {s['params_nonembed']:,})"),
        ("D tokens", f"{s['tokens']:,}  ({s['epochs']:.3g} epochs of {s['corpus']})"),
        ("C flops", f"6ND = {s['flops']:.4g}   model = {s['flops_model']:.4g}"),
        ("eval loss", f"{number(s['eval_loss'])} nats/token   (train {number(s['train_loss'])})"),
        ("unigram H", f"{s['unigram_entropy']:.4f} nats/token  (the loss of a model that ignores context)"),
        ("speed", f"{s['tokens_per_s']:,.0f} tokens/s   MFU {100 * (s['mfu'] or 0):.1f}% of "
                  f"{s['ceiling_flops'] / 1e9:.0f} GFLOP/s"),
        ("wall", f"{s['wall_s']:.1f} s"),
    ]
    for key, value in rows:
        print(f"  {key:<10} {value}")


# ---- commands ---------------------------------------------------------------------------------
def cmd_train(args) -> int:
    from scaling.config import resolve_config
    from scaling.train import plan_run, train_run

    config_file, overrides = None, list(args.items)
    if overrides and "=" not in overrides[0] and (
            overrides[0].endswith((".yaml", ".yml")) or os.path.exists(overrides[0])):
        config_file = overrides.pop(0)
    plan = plan_run(resolve_config(config_file, overrides))
    print(f"{plan.run_id}: {plan.shape.describe()} N={plan.shape.params:,} D={plan.tokens:,} "
          f"C={plan.flops:.3g} ({plan.steps} steps x {plan.batch_size}x{plan.shape.seq_len}, lr {plan.lr:.2g})",
          file=sys.stderr)
    summary = train_run(plan, args.home, on_progress=None if args.quiet else ProgressLine())
    print_summary(summary)
    return {"complete": 0, "interrupted": 130}.get(summary["status"], 1)


def cmd_family(args) -> int:
    from scaling.family import shape_for_params

    try:
        targets = [float(t) for t in args.sizes]
    except ValueError:
        raise UsageError(f"sizes must be numbers, got {' '.join(args.sizes)}") from None
    kw = dict(vocab_size=args.vocab_size, seq_len=args.seq_len, mlp=args.mlp, tied=not args.untied,
              qk_norm=args.qk_norm)
    head = f"{'target':>8} {'shape':>15} {'d_ff':>6} {'params':>15} {'non-embed':>15} {'FLOPs/token':>12}"
    print(head)
    print("-" * len(head))
    for t in targets:
        s = shape_for_params(t, **kw)
        print(f"{t:>8.0e} {s.describe():>15} {s.d_ff:>6} {s.params:>15,} {s.params_nonembed:>15,} "
              f"{s.flops_per_token():>12.4g}")
    print(f"(vocab {args.vocab_size}, seq {args.seq_len}, {args.mlp}, {'untied' if args.untied else 'tied'};"
          " FLOPs/token = training, 3 x forward, executed causal-attention blocks: see scaling/family.py)")
    return 0


def cmd_bench(args) -> int:
    from scaling import bench

    bench.run(args)
    return 0


def cmd_report(args) -> int:
    from scaling import report

    spec_path, csv = None, None
    for item in args.inputs:
        if item.endswith((".yaml", ".yml")):
            spec_path = item
        elif item.endswith((".csv", ".parquet")):
            csv = item
        else:
            raise UsageError(f"{item!r}: expected a report spec (.yaml) or a runs table (.csv, .parquet)")
    spec = report.ReportSpec.load(spec_path, sweep=args.sweep, bootstrap=args.bootstrap)
    csv = csv or spec.runs
    if csv is None and spec.sweep is None:
        raise UsageError("give --sweep SWEEP, a RUNS.csv, or a spec that names one")
    data = report.gather(args.home, spec.sweep if csv is None else None, csv)
    fits = report.fit_all(data, spec, progress=lambda m: print(m, file=sys.stderr))
    written = report.write_report(data, fits, spec, args.out)
    print("\n".join(written["headline"]))
    print(f"report: {written['html']}  ({len(written['figures'])} figures; {written['markdown']}, {written['fit_json']})")
    from scaling.track import wandb_mode

    mode = wandb_mode(args.wandb)
    if mode is not None:
        path = report.log_to_wandb(written, spec, spec.sweep, args.out, mode)
        print(f"W&B analysis run ({mode}): {path}" + ("  (push later: wandb sync " + os.path.dirname(path) + ")"
                                                     if mode == "offline" else ""))
    return 0


def cmd_dashboard(args) -> int:
    from scaling.dashboard import dashboard

    out = dashboard(args.sweep, args.out, project=args.project)
    if out["saved"]:
        print(f"saved W&B workspace: {out['url']}")
    else:
        print(f"W&B is offline: wrote the workspace definition to {out['definition']}\n"
              f"to push it: set WANDB_API_KEY and WANDB_ENTITY, sync the runs "
              f"(wandb sync runs/*/wandb/offline-run-*), then run `scaling dashboard --sweep {args.sweep}` again")
    return 0


def cmd_demo(args) -> int:
    from scaling import demo

    return demo.run(args)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scaling",
        description="Scaling-law workbench: train transformer families, track runs, fit laws, report.",
    )
    parser.add_argument("--home", help="run home (default ./runs or $SCALING_HOME)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("train", help="one training run", description="Train one model (or resume it).",
                       epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("items", nargs="*", metavar="[CONFIG.yaml] key=value",
                   help="optional YAML config, then key=value overrides")
    p.add_argument("--home", default=argparse.SUPPRESS, help="run home (default ./runs or $SCALING_HOME)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("family", help="shapes the size recipe picks, with exact params and FLOPs",
                       description="Print the recipe's shape for each target parameter count.")
    p.add_argument("sizes", nargs="+", metavar="SIZE", help="target parameter counts, e.g. 1e5 1e6")
    p.add_argument("--vocab-size", type=int, default=256)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--mlp", choices=("swiglu", "gelu"), default="swiglu")
    p.add_argument("--untied", action="store_true", help="separate output matrix")
    p.add_argument("--qk-norm", action="store_true")
    p.set_defaults(func=cmd_family)

    p = sub.add_parser("bench", help="matmul ceiling, train-step tokens/s and MFU for a few sizes",
                       description="Measure this machine's matmul FLOP/s and the family's training speed.")
    p.add_argument("--d-model", type=int, nargs="*", default=[64, 128, 256], help="widths to time")
    p.add_argument("--layers", type=int, default=None, help="override depth (default: recipe)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--steps", type=int, default=10)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("report", help="figures, tables and the compute-optimal answer as HTML and Markdown",
                       description="Fit the runs of a sweep (or a runs table) and write the report.")
    p.add_argument("inputs", nargs="*", metavar="[SPEC.yaml] [RUNS.csv]",
                   help="a report spec from analysis/ and/or a runs table")
    p.add_argument("--sweep", help="the sweep whose finished runs to use")
    p.add_argument("--out", required=True, help="output directory (index.html, report.md, fit.json, figures/)")
    p.add_argument("--bootstrap", type=int, help="bootstrap resamples (default: the spec's, 1000)")
    p.add_argument("--wandb", default="auto", choices=("auto", "off", "offline", "online"),
                   help="log figures and tables to a W&B analysis run (default: offline without an API key)")
    p.add_argument("--home", default=argparse.SUPPRESS)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("dashboard", help="a saved W&B workspace for a sweep (definition only when offline)",
                       description="Build the sweep's W&B workspace: loss vs FLOPs by size, isoFLOP, parallel coordinates.")
    p.add_argument("--sweep", required=True)
    p.add_argument("--project", default="scaling")
    p.add_argument("--out", default="reports", help="where the offline definition goes (default ./reports)")
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("demo", help="the main job on the built-in corpus",
                       description="Run the demo isoFLOP sweep (sweeps/demo.yaml) on the stdlib corpus, fit "
                                   "Chinchilla's three approaches, and write reports/demo/. Rerunning continues it.")
    p.add_argument("--home", default=argparse.SUPPRESS)
    p.add_argument("--out", help="report directory (default reports/demo)")
    p.add_argument("--agents", type=int, default=2, help="agent processes taking runs from the sweep (default 2)")
    p.set_defaults(func=cmd_demo)

    from scaling import fitcmd, sweepcmd

    fitcmd.add_parser(sub)
    sweepcmd.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "home"):
        args.home = None
    try:
        return int(args.func(args) or 0)
    except UsageError as err:
        print(f"scaling {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
