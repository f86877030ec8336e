"""`scaling family`: the shapes the size recipe picks, with exact parameter and FLOP counts."""
from __future__ import annotations

from scaling.errors import UsageError


def add_parser(sub) -> None:
    p = sub.add_parser("family", help="shapes the size recipe picks, with exact params and FLOPs",
                       description="Print the recipe's shape for each target parameter count (and, with "
                                   "--recipe, every size-dependent constant of the recipe).")
    p.add_argument("sizes", nargs="*", metavar="SIZE", help="target parameter counts, e.g. 1e5 1e6")
    p.add_argument("--vocab", "--vocab-size", dest="vocab", default="256", metavar="V|CORPUS",
                   help="vocabulary size, or a corpus (a `scaling data prepare` folder, FILE.bin, stdlib, "
                        "synthetic:V) whose vocabulary a run on it has (default 256, byte tokens)")
    p.add_argument("--seq-len", type=int, default=256, help="sequence length (sets the attention FLOPs)")
    p.add_argument("--mlp", choices=("swiglu", "gelu"), default="swiglu")
    p.add_argument("--untied", action="store_true", help="separate output matrix")
    p.add_argument("--qk-norm", action="store_true")
    p.add_argument("--recipe", action="store_true", help="print the recipe's constants, each with its meaning")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from scaling.family import RECIPE, shape_for_params, smallest_size

    if not args.sizes and not args.recipe:
        raise UsageError("give target sizes (e.g. 1e5 1e6) or --recipe")
    if args.recipe:
        for name, value, doc in RECIPE.fields():
            print(f"{name:<22} {value!s:<10} {doc}")
        if not args.sizes:
            return 0
        print()
    try:
        targets = [float(t) for t in args.sizes]
    except ValueError:
        raise UsageError(f"sizes must be numbers, got {' '.join(args.sizes)}") from None
    vocab, source = vocab_of(args.vocab)
    if args.seq_len < 1:
        raise UsageError(f"--seq-len {args.seq_len}: must be at least 1")
    kw = dict(vocab_size=vocab, seq_len=args.seq_len, mlp=args.mlp, tied=not args.untied, qk_norm=args.qk_norm)
    head = f"{'target':>8} {'shape':>15} {'d_ff':>6} {'params':>15} {'non-embed':>15} {'FLOPs/token':>12}"
    print(head)
    print("-" * len(head))
    least = smallest_size(**kw)
    for t in targets:
        if t < least:
            print(f"warning: {t:.3g} is below the smallest model the recipe builds at vocab {vocab:,}, "
                  f"seq {args.seq_len} ({least:,} params): shown is that one", file=sys.stderr)
        s = shape_for_params(t, **kw)
        print(f"{t:>8.3g} {s.describe():>15} {s.d_ff:>6} {s.params:>15,} {s.params_nonembed:>15,} "
              f"{s.flops_per_token():>12.4g}")
    print(f"(vocab {vocab:,}{source}, seq {args.seq_len}, {args.mlp}, {'untied' if args.untied else 'tied'};"
          " FLOPs/token = training, 3 x forward, executed causal-attention blocks: see scaling/family.py)")
    return 0


def vocab_of(text: str) -> tuple[int, str]:
    """(vocabulary size, where it came from) for --vocab: a positive integer, or a corpus spec whose
    vocabulary is read as a run on it reads it (a prepared folder's meta.json, without reading its tokens)."""
    import os

    try:
        vocab = int(text)
    except ValueError:
        pass
    else:
        if vocab < 1:
            raise UsageError(f"--vocab {text}: must be a positive integer or a corpus")
        return vocab, ""
    if os.path.isfile(os.path.join(text, "meta.json")):
        from scaling.corpus_check import read_meta

        return read_meta(text).vocab_size, f" from {text}"
    from scaling.data import load_corpus

    try:
        return load_corpus(text).vocab_size, f" from {text}"
    except UsageError as err:
        raise UsageError(f"--vocab {text}: neither a positive integer nor a corpus ({err})") from None
