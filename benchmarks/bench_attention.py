"""CPU train-step speed of the causal-attention kernels side by side: the block loop (`blocks`) against one
fused XLA call (`xla`), scanned layers, float32, in one process, alternating round by round so that both
see the same load. What `attention=auto` runs on CPU (scaling/train/step.py CPU_ATTENTION) follows from it.

    .venv/bin/python benchmarks/bench_attention.py [--rounds 5] [--seconds 1.5] [--json out.json]

Shapes: the demo's (seq 128, batch 16, d32 and d64), the config's default seq 256 (d128, batch 16), and
d256-L4 at seq 512 and 1024 (8,192 tokens a step).
"""
import argparse
import json
import statistics
import time

SHAPES = [  # (width, layers or None for the recipe's, seq_len, batch)
    (32, None, 128, 16),
    (64, None, 128, 16),
    (128, None, 256, 16),
    (256, 4, 512, 16),
    (256, 4, 1024, 8),
]
KERNELS = ("blocks", "xla")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.5, help="about this long per measurement")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from scaling.family import shape_for_width
    from scaling.model import attention_fraction
    from scaling.train.bench import StepTimer

    rows = []
    print(f"{'shape':>16} {'seq':>5} {'batch':>5} {'blocks ms':>10} {'xla ms':>9} {'xla/blocks':>10} "
          f"{'attn share blocks/xla':>22}", flush=True)
    for width, layers, seq, batch in SHAPES:
        shape = shape_for_width(width, n_layers=layers, seq_len=seq)
        timers = {k: StepTimer(shape, batch, attention=k) for k in KERNELS}
        probe = timers["blocks"].seconds_per_step(2)
        steps = max(2, round(args.seconds / probe))
        times = {k: [] for k in KERNELS}
        for r in range(args.rounds):
            for k in (KERNELS if r % 2 == 0 else KERNELS[::-1]):
                times[k].append(timers[k].seconds_per_step(steps))
        med = {k: statistics.median(v) for k, v in times.items()}
        attn = {k: shape.flops_per_token(attention_fraction(k, shape)) - shape.flops_per_token(0.0) for k in KERNELS}
        share = "/".join(f"{attn[k] / shape.flops_per_token(attention_fraction(k, shape)):.0%}" for k in KERNELS)
        row = {"shape": shape.describe(), "seq_len": seq, "batch": batch, "steps": steps, "rounds": args.rounds,
               **{f"{k}_ms": 1e3 * med[k] for k in KERNELS}, **{f"{k}_all_ms": [1e3 * t for t in times[k]]
                                                                for k in KERNELS},
               "xla_over_blocks": med["xla"] / med["blocks"]}
        rows.append(row)
        print(f"{row['shape']:>16} {seq:>5} {batch:>5} {row['blocks_ms']:>10.1f} {row['xla_ms']:>9.1f} "
              f"{row['xla_over_blocks']:>10.2f} {share:>22}", flush=True)
    print(f"(float32, scanned layers, median of {args.rounds} alternating rounds; {time.strftime('%Y-%m-%d %H:%M')})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
