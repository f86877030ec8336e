"""Time to first step of a new process, with JAX's persistent compilation cache cold and then warm.

    .venv/bin/python benchmarks/startup.py [--d-model 64 --layers 1 --batch 16 --seq 256 --steps-per-call 8]

Each measurement is a fresh `python` process: it imports the trainer, builds the compiled step for the
shape, initializes the model and runs one call; the time is from the interpreter's start to that call's
result. The first process compiles into an empty cache folder, the second finds its step there.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import sys, time, json
t0 = float(sys.argv[1])
import numpy as np
from scaling.family import shape_for_width
from scaling.train.step import compiled_fns, use_compilation_cache
use_compilation_cache()
d, layers, batch, seq, k = (int(a) for a in sys.argv[2:7])
shape = shape_for_width(d, n_layers=layers or None, seq_len=seq)
fns = compiled_fns(shape, "float32", 0.9, 0.95, 0.1, 1.0)
params, opt = fns.init(np.uint32(0))
x = np.zeros((k, batch, seq), np.int32)
params, opt, losses, _ = fns.train_steps(params, opt, x, x, np.full(k, 1e-3, np.float32), np.ones(k, bool))
losses.block_until_ready()
print(json.dumps({"first_step_s": time.time() - t0}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps-per-call", type=int, default=8)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "SCALING_COMPILATION_CACHE": cache}
        for label in ("cold cache", "warm cache"):
            args = [str(v) for v in (a.d_model, a.layers, a.batch, a.seq, a.steps_per_call)]
            out = subprocess.run([sys.executable, "-c", CHILD, repr(time.time()), *args], env=env, check=True,
                                 capture_output=True, text=True).stdout
            depth = f"L{a.layers}" if a.layers else "recipe depth"
            print(f"d{a.d_model} {depth} seq {a.seq} {label}: first step {json.loads(out)['first_step_s']:.2f} s "
                  "after the process started")


if __name__ == "__main__":
    main()
