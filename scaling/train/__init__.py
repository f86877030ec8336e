"""Training: the plan (shape, length, schedule, accounting), the compiled step, checkpoints, and the
step loop with hooks."""
from scaling.train.hooks import Diverged, Hook, Interrupted, LoopState, Progress, run_loop
from scaling.train.loop import train_run
from scaling.train.plan import RunPlan, plan_run
from scaling.train.step import compiled_fns, compute_dtype

__all__ = ["Diverged", "Hook", "Interrupted", "LoopState", "Progress", "run_loop", "train_run", "RunPlan",
           "plan_run", "compiled_fns", "compute_dtype"]
