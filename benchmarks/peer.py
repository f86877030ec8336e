"""Ours against the PyTorch nanoGPT-style peer (benchmarks/torch_nanogpt.py), in one invocation.

    .venv/bin/python benchmarks/peer.py [--shapes 64:1 128:2 256:4] [--batch 16 --seq 256] [--rounds 3]
                                        [--steps 24] [--pack 8]

Same shapes (scaling.family's width, depth, heads and d_ff), batch, sequence, fp32, AdamW with clipping,
and thread count. The two are timed alternately, `--rounds` windows each, and each side's best window is
kept: on a machine shared with other jobs the load changes by the minute, and alternating exposes both
to the same load. Ours is timed at one step per call and at the run's default steps_per_call; with
`--pack K`, also K runs packed into one step (tokens/s of the pack) at the shapes small enough that an
agent packs them (those with several steps per call). torch is not a dependency of the
project: this script needs it installed beside it (`pip install torch`).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

# Before torch starts its OpenMP threads: on cores shared with other jobs, spin-waiting threads (the
# default) made the peer 2x slower at d64 here; passive waiting is the peer's best setting.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_nanogpt import GPT  # noqa: E402

from scaling import hardware  # noqa: E402
from scaling.family import shape_for_width  # noqa: E402
from scaling.train.bench import StepTimer  # noqa: E402
from scaling.train.plan import default_steps_per_call  # noqa: E402


class TorchTimer:
    def __init__(self, shape, batch: int, seed: int = 0):
        torch.manual_seed(seed)
        self.model = GPT(shape.vocab_size, shape.d_model, shape.n_layers, shape.n_heads, shape.d_ff)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
        self.x = torch.randint(0, shape.vocab_size, (batch, shape.seq_len))
        self.tokens_per_step = batch * shape.seq_len
        self._step()

    def _step(self) -> None:
        loss = self.model(self.x, self.x)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()

    def seconds_per_step(self, steps: int) -> float:
        self._step()
        t0 = time.perf_counter()
        for _ in range(steps):
            self._step()
        return (time.perf_counter() - t0) / steps


def compare(width: int, layers: int, batch: int, seq: int, rounds: int, steps: int, pack: int,
            verbose: bool = False) -> dict:
    """Best tokens/s of each contender at one shape, timed in alternating windows."""
    shape = shape_for_width(width, n_layers=layers, seq_len=seq)
    k = default_steps_per_call(shape, batch)
    timers = {"peer": TorchTimer(shape, batch), "ours 1/call": StepTimer(shape, batch, 1)}
    if k > 1:
        timers[f"ours {k}/call"] = StepTimer(shape, batch, k)
    if pack > 1 and k > 1:  # packing is for steps small enough to scan (an agent packs only those)
        timers[f"ours pack {pack}"] = StepTimer(shape, batch, k, pack=pack)
    best = {name: 0.0 for name in timers}
    for i in range(rounds):
        for name, timer in timers.items():
            tok_s = timer.tokens_per_step / timer.seconds_per_step(steps)
            best[name] = max(best[name], tok_s)
            if verbose:
                print(f"  round {i + 1} {shape.describe()} {name}: {tok_s:,.0f} tokens/s", file=sys.stderr, flush=True)
    return {"shape": shape, "steps_per_call": k, "tokens_per_s": best}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="*", default=["64:1", "128:2", "256:4"], help="WIDTH:LAYERS")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=24, help="steps per timed window")
    ap.add_argument("--pack", type=int, default=1, help="also time K runs packed into one step")
    ap.add_argument("--verbose", action="store_true", help="every window's figure on stderr as it comes")
    a = ap.parse_args(argv)
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)  # XLA's CPU client uses every core as well
    # XLA flushes denormals to zero on CPU; torch does not by default, and its d128 matmuls then ran 38x
    # slower here (13.1 s against 0.34 s a step): without this the peer would be compared at its worst.
    torch.set_flush_denormal(True)
    ceiling, how = hardware.ceiling_flops()
    print(f"torch {torch.__version__} threads={torch.get_num_threads()}; {hardware.device_description()}; "
          f"ceiling {ceiling / 1e9:.1f} GFLOP/s ({how})")
    print(f"batch {a.batch} x seq {a.seq}, fp32; best of {a.rounds} alternating windows of {a.steps} steps; "
          f"load average {os.getloadavg()[0]:.1f} on {threads} cores")
    print(f"{'shape':>12} {'contender':>14} {'tokens/s':>10} {'vs peer':>8} {'MFU':>6}")
    for spec in a.shapes:
        width, layers = (int(v) for v in spec.split(":"))
        r = compare(width, layers, a.batch, a.seq, a.rounds, a.steps, a.pack, a.verbose)
        peer = r["tokens_per_s"]["peer"]
        for name, tok_s in r["tokens_per_s"].items():
            mfu = hardware.mfu(tok_s, r["shape"].flops_per_token(), ceiling)
            print(f"{r['shape'].describe():>12} {name:>14} {tok_s:>10,.0f} {tok_s / peer:>7.2f}x {100 * mfu:>5.1f}%")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
