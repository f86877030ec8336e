"""One training run: plan (shape, length, schedule), steps, evaluation, checkpoints, resume, tracking.

`plan_run` does all validation and writes nothing; `train_run` executes a plan. The jit-compiled step
takes the learning rate as an argument, so runs of the same shape and batch share compiled code.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable

import numpy as np

from scaling import data as data_lib
from scaling.config import RunConfig
from scaling.errors import UsageError
from scaling.family import ModelShape, default_batch_size, default_lr, shape_for_params, shape_for_width

# Keys that may change between attempts of the same run without changing what it computes.
_VOLATILE_KEYS = {"wandb", "wandb_project", "name", "checkpoint_every", "run_id", "sweep"}


@dataclass(frozen=True)
class RunPlan:
    config: RunConfig
    run_id: str
    shape: ModelShape
    batch_size: int
    steps: int
    lr: float
    warmup_steps: int
    corpus: data_lib.Corpus

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.shape.seq_len

    def accounting(self, step: int) -> dict:
        """D, C = 6ND, the model's exact FLOPs and epochs after `step` optimizer steps (DESIGN.md)."""
        tokens = step * self.tokens_per_step
        return {"tokens": tokens, "flops": 6.0 * self.shape.params * tokens,
                "flops_model": float(self.shape.flops_per_token()) * tokens,
                "epochs": tokens / len(self.corpus.train)}

    @property
    def tokens(self) -> int:
        return self.steps * self.tokens_per_step

    @property
    def flops(self) -> float:
        return self.accounting(self.steps)["flops"]

    @property
    def flops_model(self) -> float:
        return self.accounting(self.steps)["flops_model"]

    @property
    def epochs(self) -> float:
        return self.accounting(self.steps)["epochs"]

    @property
    def eval_steps(self) -> list[int]:
        """Log-spaced evaluation points (after that many optimizer steps), always ending at the last."""
        n = max(1, self.config.n_evals)
        points = np.unique(np.round(np.geomspace(1, self.steps, n)).astype(int)) if n > 1 else []
        return sorted(set(int(p) for p in points) | {self.steps})

    @property
    def name(self) -> str:
        return self.config.name or f"N{_short(self.shape.params)}-D{_short(self.tokens)}"

    def lr_schedule(self) -> np.ndarray:
        """Learning rate of each optimizer step 1..steps: linear warmup, then cosine (or WSD) to
        min_lr_ratio x peak, reached exactly at the last step."""
        import optax

        cfg, peak = self.config, self.lr
        end = cfg.min_lr_ratio * peak
        w = self.warmup_steps
        if cfg.schedule == "cosine":
            sched = optax.warmup_cosine_decay_schedule(0.0, peak, w, max(self.steps, w + 1), end)
        else:
            n_decay = max(1, round(cfg.decay_fraction * self.steps))
            stable_end = max(w, self.steps - n_decay)
            sched = optax.join_schedules(
                [optax.linear_schedule(0.0, peak, max(w, 1)), optax.constant_schedule(peak),
                 optax.linear_schedule(peak, end, n_decay)],
                [w, stable_end],
            )
        return np.asarray(sched(np.arange(1, self.steps + 1)), dtype=np.float32)

    def describe(self) -> dict:
        return {
            "run_id": self.run_id, "name": self.name, "shape": self.shape.to_dict(),
            "batch_size": self.batch_size, "steps": self.steps, "lr": self.lr,
            "warmup_steps": self.warmup_steps, "tokens": self.tokens, "flops": self.flops,
            "flops_model": self.flops_model, "epochs": self.epochs, "eval_steps": self.eval_steps,
        }


def _short(x: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def plan_run(cfg: RunConfig) -> RunPlan:
    """Resolve a config into a concrete run; raises UsageError for anything that cannot run."""
    corpus = data_lib.load_corpus(cfg.corpus, cfg.vocab_size)
    shape_kwargs = dict(vocab_size=corpus.vocab_size, seq_len=cfg.seq_len, mlp=cfg.mlp, tied=cfg.tied,
                        qk_norm=cfg.qk_norm, n_layers=cfg.n_layers, n_heads=cfg.n_heads, d_ff=cfg.d_ff)
    if cfg.d_model is not None:
        shape = shape_for_width(cfg.d_model, **shape_kwargs)
    else:
        shape = shape_for_params(cfg.params, **shape_kwargs)
    batch_size = cfg.batch_size or default_batch_size(shape)
    tokens_per_step = batch_size * shape.seq_len
    wanted = cfg.tokens if cfg.tokens is not None else cfg.flops_budget / (6.0 * shape.params)
    steps = int(round(wanted / tokens_per_step))
    if steps < 1:
        what = f"tokens={cfg.tokens:g}" if cfg.tokens is not None else (
            f"flops_budget={cfg.flops_budget:g} gives D={wanted:.3g} tokens for N={shape.params}, which")
        raise UsageError(f"{what} is less than one batch ({tokens_per_step} tokens = "
                         f"{batch_size} x {shape.seq_len}); allowed: at least {tokens_per_step / 2:g} tokens")
    if data_lib.windows_per_epoch(corpus, shape.seq_len) < 1:
        raise UsageError(f"corpus={cfg.corpus!r} is shorter than one sequence of {shape.seq_len + 1} tokens")
    lr = cfg.lr if cfg.lr is not None else default_lr(shape)
    warmup = min(steps - 1, max(1, round(cfg.warmup_fraction * steps))) if steps > 1 else 0
    run_id = cfg.run_id or f"{_short(shape.params)}-{_short(steps * tokens_per_step)}-s{cfg.seed}-{uuid.uuid4().hex[:6]}"
    cfg = cfg.replace(run_id=run_id)
    return RunPlan(cfg, run_id, shape, batch_size, steps, lr, warmup, corpus)


# ---- the compiled step ------------------------------------------------------------------------
def compute_dtype(setting: str):
    import jax
    import jax.numpy as jnp

    if setting == "auto":
        return jnp.float32 if jax.devices()[0].platform == "cpu" else jnp.bfloat16
    return jnp.dtype(setting)


@functools.lru_cache(maxsize=16)
def compiled_fns(shape: ModelShape, dtype_name: str, beta1: float, beta2: float, weight_decay: float,
                 grad_clip: float):
    """(init, train_step, eval_loss) for one shape and optimizer; cached so a sweep's runs of the same
    shape reuse XLA's compiled code instead of tracing and compiling again."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from scaling.model import Transformer

    dtype = jnp.dtype(dtype_name)
    abstract = nnx.eval_shape(lambda: Transformer(shape, rngs=nnx.Rngs(0), dtype=dtype))
    graphdef, _ = nnx.split(abstract)

    # AdamW with the learning rate left out: it is applied in the step from an argument, so the
    # schedule (which depends on the run's length) does not force a recompilation.
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)  # no decay on norm scales
    tx = optax.chain(
        optax.clip_by_global_norm(grad_clip) if grad_clip > 0 else optax.identity(),
        optax.scale_by_adam(b1=beta1, b2=beta2, eps=1e-8),
        optax.add_decayed_weights(weight_decay, mask=decay_mask),
    )

    def init(seed):
        # The seed is traced (not static), so runs that differ only in seed share one compilation.
        model = Transformer(shape, rngs=nnx.Rngs(jax.random.key(seed)), dtype=dtype)
        params = nnx.state(model, nnx.Param)
        return params, tx.init(params)

    def loss_fn(params, x, y):
        logits = nnx.merge(graphdef, params)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def train_step(params, opt_state, x, y, lr):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
        return params, opt_state, loss, optax.global_norm(grads)

    @jax.jit
    def eval_loss(params, x, y):
        return loss_fn(params, x, y)

    return jax.jit(init), train_step, eval_loss


# ---- checkpoints ------------------------------------------------------------------------------
class _Checkpoints:
    """orbax CheckpointManager over {params, opt_state, meta}; keeps the latest two."""

    def __init__(self, directory: str):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.manager = ocp.CheckpointManager(
            os.path.abspath(directory),
            options=ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False, create=True),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: dict) -> None:
        if self.manager.latest_step() == step:
            return
        self.manager.save(step, args=self._ocp.args.StandardSave(state))
        self.manager.wait_until_finished()

    def restore(self, step: int, template: dict) -> dict:
        import jax

        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), template)
        return self.manager.restore(step, args=self._ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        self.manager.close()


# ---- the run ----------------------------------------------------------------------------------
class Interrupted(Exception):
    """SIGTERM (preemption) or SIGINT: the run checkpoints, records `interrupted`, and can resume."""


@dataclass
class Progress:
    step: int
    steps: int
    loss: float
    tokens_per_s: float
    mfu: float
    eta_s: float
    eval_loss: float | None = None


def git_sha() -> str | None:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run_record(plan: RunPlan) -> dict:
    """What config.yaml holds: the config as given, what the recipe resolved, the corpus, the code."""
    import jax

    return {
        "config": plan.config.to_dict(),
        "resolved": plan.describe(),
        "corpus": plan.corpus.describe(),
        "git_sha": git_sha(),
        "jax": jax.__version__,
        "device": str(jax.devices()[0].device_kind),
    }


def _same_run(old: dict, new: dict) -> list[str]:
    a, b = old.get("config", {}), new["config"]
    return sorted(k for k in set(a) | set(b) if k not in _VOLATILE_KEYS and a.get(k) != b.get(k))


def train_run(
    plan: RunPlan,
    home=None,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    stop_at_step: int | None = None,
    trackers: list | None = None,
) -> dict:
    """Train (or resume, or return the finished summary of) one run; returns the summary dict.

    `stop_at_step` ends the session after that step as a preemption would (checkpoint, `interrupted`).
    """
    import jax
    import jax.numpy as jnp
    import yaml

    from scaling import hardware, track
    from scaling.store import RunHome

    home = home if isinstance(home, RunHome) else RunHome(home)
    cfg, shape = plan.config, plan.shape
    run_dir = home.run_dir(plan.run_id)
    record = run_record(plan)

    existing_cfg = os.path.join(run_dir, "config.yaml")
    if os.path.exists(existing_cfg):
        try:
            with open(existing_cfg) as fh:
                old = yaml.safe_load(fh) or {}
        except (OSError, yaml.YAMLError):
            old = {}
        diff = _same_run(old, record)
        if diff:
            raise UsageError(f"run_id={plan.run_id!r} exists with a different config ({', '.join(diff)}); "
                             "use another run_id")
        done = track.read_json(os.path.join(run_dir, "summary.json"))
        if done and done.get("status") == "complete":
            return done

    os.makedirs(run_dir, exist_ok=True)
    if trackers is None:
        trackers = default_trackers(plan, run_dir)
    tracker = track.Trackers(*trackers)
    tracker.start(record)
    home.index_run(plan.run_id, "running", record["config"], sweep_id=cfg.sweep)

    dtype = compute_dtype(cfg.dtype)
    init, train_step, eval_loss_fn = compiled_fns(shape, jnp.dtype(dtype).name, cfg.beta1, cfg.beta2,
                                                  cfg.weight_decay, cfg.grad_clip)
    ceiling, _ = hardware.ceiling_flops()
    lrs = plan.lr_schedule()
    eval_steps = set(plan.eval_steps)
    ckpt = _Checkpoints(os.path.join(run_dir, "checkpoints"))

    params, opt_state = init(np.uint32(cfg.seed))
    start_step, wall_before = 0, 0.0
    latest = ckpt.latest_step()
    if latest is not None:
        state = ckpt.restore(latest, {"params": params, "opt_state": opt_state, "wall_s": jnp.zeros(())})
        params, opt_state = state["params"], state["opt_state"]
        start_step, wall_before = latest, float(state["wall_s"])

    def evaluate(p) -> float:
        total, n = 0.0, 0
        for x, y in data_lib.eval_batches(plan.corpus, cfg.eval_tokens, plan.batch_size, shape.seq_len):
            total += float(eval_loss_fn(p, x, y)) * len(x)
            n += len(x)
        return total / n

    log_every = max(1, plan.steps // 100)
    flops_per_step = float(shape.flops_per_token()) * plan.tokens_per_step
    status, last_eval, window, train_loss = "running", None, [], math.nan
    t_start = time.perf_counter()
    t_steady, steady_steps = None, 0
    step = start_step
    previous = _install_sigterm()
    try:
        while step < plan.steps:
            x, y = data_lib.batch(plan.corpus, cfg.seed, step, plan.batch_size, shape.seq_len)
            params, opt_state, loss, gnorm = train_step(params, opt_state, x, y, lrs[step])
            step += 1
            window.append(loss)
            if t_steady is None:  # the first step includes compilation: keep it out of tokens/s
                loss.block_until_ready()
                t_steady = time.perf_counter()
            else:
                steady_steps += 1
            is_eval = step in eval_steps
            if step % log_every and not is_eval and step != plan.steps and step != stop_at_step:
                continue
            train_loss = float(np.mean(jax.device_get(window)))
            window = []
            elapsed = time.perf_counter() - t_steady
            tok_s = steady_steps * plan.tokens_per_step / elapsed if steady_steps and elapsed > 0 else 0.0
            mfu = tok_s / plan.tokens_per_step * flops_per_step / ceiling if ceiling else 0.0
            done = plan.accounting(step)
            row = {"step": step, "tokens": done["tokens"], "flops": done["flops"], "loss": train_loss, "grad_norm": float(gnorm), "lr": float(lrs[step - 1]),
                   "tokens_per_s": tok_s, "wall_s": wall_before + time.perf_counter() - t_start}
            if not math.isfinite(train_loss):
                status = "diverged"
                tracker.log(row)
                break
            if is_eval:
                last_eval = evaluate(params)
                row["eval_loss"] = last_eval
                if not math.isfinite(last_eval):
                    status = "diverged"
                    tracker.log(row)
                    break
            tracker.log(row)
            if on_progress:
                eta = (plan.steps - step) * plan.tokens_per_step / tok_s if tok_s else math.nan
                on_progress(Progress(step, plan.steps, train_loss, tok_s, mfu, eta, last_eval))
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < plan.steps:
                ckpt.save(step, _ckpt_state(params, opt_state, wall_before + time.perf_counter() - t_start))
            if stop_at_step is not None and step >= stop_at_step and step < plan.steps:
                raise Interrupted(f"stopped at step {step}")
        else:
            status = "complete"
    except (Interrupted, KeyboardInterrupt):
        status = "interrupted"
        ckpt.save(step, _ckpt_state(params, opt_state, wall_before + time.perf_counter() - t_start))
    finally:
        _restore_sigterm(previous)

    wall = wall_before + time.perf_counter() - t_start
    steady = time.perf_counter() - t_steady if t_steady else 0.0
    tok_s = steady_steps * plan.tokens_per_step / steady if steady_steps and steady > 0 else 0.0
    if status == "complete":
        ckpt.save(step, _ckpt_state(params, opt_state, wall))
    ckpt.close()
    summary = {
        "run_id": plan.run_id, "name": plan.name, "status": status, "sweep_id": cfg.sweep,
        "params": shape.params, "params_nonembed": shape.params_nonembed,
        **plan.accounting(step),
        "step": step, "steps": plan.steps, "eval_loss": last_eval if step == plan.steps else None,
        "train_loss": train_loss, "tokens_per_s": tok_s,
        "mfu": tok_s / plan.tokens_per_step * flops_per_step / ceiling if ceiling else None,
        "ceiling_flops": ceiling, "wall_s": wall,
        "lr": plan.lr, "batch_size": plan.batch_size, "seq_len": shape.seq_len, "seed": cfg.seed,
        "d_model": shape.d_model, "n_layers": shape.n_layers, "n_heads": shape.n_heads,
        "corpus": plan.corpus.name, "corpus_fingerprint": plan.corpus.fingerprint,
        "unigram_entropy": plan.corpus.unigram_entropy,
    }
    tracker.finish(summary)
    home.index_run(plan.run_id, status, record["config"], summary, sweep_id=cfg.sweep)
    return summary


def _ckpt_state(params, opt_state, wall: float) -> dict:
    import jax.numpy as jnp

    return {"params": params, "opt_state": opt_state, "wall_s": jnp.asarray(wall, jnp.float32)}


def _install_sigterm():
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise Interrupted("SIGTERM")

    return signal.signal(signal.SIGTERM, handler)


def _restore_sigterm(previous) -> None:
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)


def default_trackers(plan: RunPlan, run_dir: str) -> list:
    from scaling import track

    trackers = [track.LocalTracker(run_dir)]
    mode = track.wandb_mode(plan.config.wandb)
    if mode is not None:
        trackers.append(track.WandbTracker(
            run_dir, mode=mode, project=plan.config.wandb_project, run_id=plan.run_id, name=plan.name,
            group=plan.config.sweep, tags=[plan.corpus.name, plan.shape.describe()],
        ))
    return trackers
