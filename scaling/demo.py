"""`scaling demo`: the main job on the built-in default corpus.

Until the sweep and report land this trains one small model on the stdlib corpus and prints its
summary beside the corpus's byte-unigram entropy (the loss of a model that ignores context)."""
from __future__ import annotations

import time

DEMO_RUN = {"params": 1e5, "tokens": 1.2e6, "run_id": "demo-single", "corpus": "stdlib"}


def run(args) -> int:
    from scaling.cli import ProgressLine, print_summary
    from scaling.config import RunConfig
    from scaling.train import plan_run, train_run

    t0 = time.perf_counter()
    plan = plan_run(RunConfig.from_dict(DEMO_RUN))
    print(f"demo: {plan.shape.describe()} N={plan.shape.params:,} on {plan.tokens:,} tokens of the stdlib corpus")
    s = train_run(plan, args.home, on_progress=ProgressLine())
    print_summary(s)
    gap = s["unigram_entropy"] - (s["eval_loss"] or float("nan"))
    print(f"\neval loss {s['eval_loss']:.4f} vs byte-unigram entropy {s['unigram_entropy']:.4f} nats/token "
          f"({gap:.3f} nats/token learned from context); demo wall {time.perf_counter() - t0:.1f} s")
    return 0 if s["status"] == "complete" else 1
