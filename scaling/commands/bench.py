"""`scaling bench`: this machine's matmul ceiling, and the family's train-step speed and MFU against it;
with --compile-only, the train step's compile seconds and compiled memory for any shape."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="matmul ceiling, train-step tokens/s and MFU for a few sizes",
                       description="Measure this machine's matmul FLOP/s and the family's training speed.")
    p.add_argument("--d-model", type=int, nargs="*", default=[64, 128, 256], help="widths to time")
    p.add_argument("--layers", type=int, nargs="*", default=None, metavar="L",
                   help="override depth (default: recipe); several depths time each")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="compute dtype (bfloat16 on accelerators; weights stay float32)")
    p.add_argument("--steps-per-call", type=int, default=None, metavar="S",
                   help="optimizer steps per compiled call (default: what a run of that size uses)")
    p.add_argument("--pack", type=int, default=1, metavar="K",
                   help="also time K runs of each shape packed into one step (tokens/s of the pack)")
    p.add_argument("--remeasure", action="store_true",
                   help="measure the matmul ceiling again (default: this machine's cached one, as train uses)")
    p.add_argument("--compile-only", action="store_true",
                   help="lower and compile the train step (no data, no steps): compile seconds and memory")
    p.add_argument("--layout", choices=("scanned", "unrolled"), default="scanned",
                   help="the blocks' layout (runs train scanned; unrolled is the layout before the scan)")
    p.add_argument("--attention", choices=("auto", "xla", "cudnn", "blocks"), default="auto",
                   help="the causal-attention kernel (auto: what a run on this machine gets)")
    p.add_argument("--remat", nargs="*", choices=("none", "dots", "full"), default=["none"],
                   help="what backward recomputes (model.REMAT_POLICIES); several compile each (--compile-only)")
    p.set_defaults(func=run)


def run(args) -> int:
    from scaling.errors import UsageError

    if args.pack < 1 or (args.steps_per_call is not None and args.steps_per_call < 1):
        raise UsageError(f"--pack {args.pack} --steps-per-call {args.steps_per_call}: each must be at least 1")
    if any(n < 1 for n in args.layers or ()) or args.batch_size < 1 or args.seq_len < 1:
        raise UsageError(f"--layers {args.layers} --batch-size {args.batch_size} --seq-len {args.seq_len}: "
                         "each must be at least 1")
    return compile_only(args) if args.compile_only else timed(args)


def _shapes(args):
    from scaling.family import shape_for_width

    for width in args.d_model:
        for depth in args.layers or [None]:
            yield shape_for_width(width, n_layers=depth, seq_len=args.seq_len)


def _kernel(args, shape) -> str:
    from scaling.train.step import attention_implementation

    return attention_implementation(args.attention, args.dtype, shape.head_dim)


def compile_only(args) -> int:
    import jax

    from scaling.train.bench import compile_train_step

    cache = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)  # a compilation's seconds, not a cache read's
    try:
        print(f"{'shape':>14} {'params':>14} {'layout':>9} {'lower':>7} {'compile':>8} {'cpu':>7} {'args MiB':>9} "
              f"{'temp MiB':>9} {'attention':>9} {'remat':>5}")
        for shape in _shapes(args):
            for remat in args.remat:
                r = compile_train_step(shape, args.batch_size, args.dtype, args.layout, _kernel(args, shape), remat)
                print(f"{r['shape']:>14} {r['params']:>14,} {r['layers']:>9} {r['lower_s']:>6.1f}s "
                      f"{r['compile_s']:>7.1f}s {r['compile_cpu_s']:>6.1f}s {r['argument_bytes'] / 2**20:>9.1f} "
                      f"{r['temp_bytes'] / 2**20:>9.1f} {r['attention']:>9} {remat:>5}", flush=True)
        print(f"({args.dtype}, batch {args.batch_size} x seq {args.seq_len}; one train step, compiled ahead of time "
              f"on {jax.devices()[0].platform})")
    finally:
        jax.config.update("jax_enable_compilation_cache", cache)
    return 0


def timed(args) -> int:
    from scaling import hardware
    from scaling.train.bench import time_train_step
    from scaling.train.plan import default_steps_per_call

    ceiling, how = hardware.ceiling_flops(refresh=args.remeasure)
    print(f"device   {hardware.device_description()}")
    print(f"ceiling  {ceiling / 1e9:,.1f} GFLOP/s  ({how})")
    print(f"{'shape':>14} {'params':>12} {'runs':>5} {'steps/call':>10} {'ms/step':>9} {'tokens/s':>10} "
          f"{'GFLOP/s':>9} {'MFU':>6} {'compile':>8}")
    for shape in _shapes(args):
        k = args.steps_per_call or default_steps_per_call(shape, args.batch_size)
        for pack in sorted({1, args.pack}):
            r = time_train_step(shape, args.batch_size, args.steps, args.dtype, k, pack, args.layout,
                                _kernel(args, shape))
            mfu = hardware.mfu(r["tokens_per_s"], r["flops_per_token"], ceiling)
            print(f"{r['shape']:>14} {r['params']:>12,} {pack:>5} {k:>10} {r['step_ms']:>9.1f} "
                  f"{r['tokens_per_s']:>10,.0f} {r['model_flops_per_s'] / 1e9:>9.1f} {100 * mfu:>5.1f}% "
                  f"{r['compile_s']:>7.1f}s")
    print(f"({args.dtype}, batch {args.batch_size} x seq {args.seq_len}, {args.layout} layers, attention "
          f"{args.attention}; FLOPs from scaling.family, 3 x forward, the attention the kernel computes: "
          "model.attention_fraction)")
    return 0
