"""A run's plan: the config resolved by the recipe into a shape, a length, a schedule and the exact
accounting. Planning validates everything and writes nothing."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np

from scaling import data as data_lib
from scaling.config import RunConfig
from scaling.display import short
from scaling.errors import UsageError
from scaling.family import (
    ModelShape,
    Parametrization,
    default_batch_size,
    default_lr,
    shape_for_params,
    shape_for_width,
)
from scaling.mixture import corpus_for
from scaling.model import attention_fraction
from scaling.train.evalsets import EvalSet, load_eval_sets
from scaling.train.mesh import MeshShape, check_batch, run_devices
from scaling.train.step import CPU_ATTENTION, Layout


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
    steps_per_call: int = 1
    # The attention kernel and remat policy this machine runs (model.ATTENTION_KERNELS, REMAT_POLICIES),
    # set when a run opens (train.limits.resolve_plan); None while only planned (a sweep's queue).
    attention: str | None = None
    remat: str | None = None
    evals: tuple[EvalSet, ...] = ()  # `eval=`: the sets evaluated beside the corpus's own validation split
    recipe: tuple[dict, ...] = ()  # `recipe=`: each fitted law, where it was evaluated and what it set (describe)

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.shape.seq_len

    @property
    def attention_kernel(self) -> str:
        """The kernel that runs, or, before the run opens, the config's (auto: the CPU's)."""
        if self.attention is not None:
            return self.attention
        return CPU_ATTENTION if self.config.attention == "auto" else self.config.attention

    @property
    def flops_per_token(self) -> float:
        """Training FLOPs per token with the attention the kernel computes (model.attention_fraction):
        flops_model's and MFU's count."""
        return float(self.shape.flops_per_token(attention_fraction(self.attention_kernel, self.shape)))

    def accounting(self, step: int) -> dict:
        """D, C = 6ND, the model's exact FLOPs and epochs after `step` optimizer steps (docs/contracts.md
        "Accounting")."""
        tokens = step * self.tokens_per_step
        return {"tokens": tokens, "flops": 6.0 * self.shape.params * tokens,
                "flops_model": self.flops_per_token * tokens,
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
        return self.config.name or f"N{short(self.shape.params)}-D{short(self.tokens)}"

    @property
    def stable_end(self) -> int:
        """WSD: the last step of the stable phase (the decay takes the final decay_fraction of the steps).
        A cooldown branch of a longer run starts from that run's checkpoint at exactly this step."""
        n_decay = max(1, round(self.config.decay_fraction * self.steps))
        return max(self.warmup_steps, self.steps - n_decay)

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
            sched = optax.join_schedules(
                [optax.linear_schedule(0.0, peak, max(w, 1)), optax.constant_schedule(peak),
                 optax.linear_schedule(peak, end, n_decay)],
                [w, self.stable_end],
            )
        return np.asarray(sched(np.arange(1, self.steps + 1)), dtype=np.float32)

    def layout(self) -> Layout:
        """The run's mesh over the devices it may use, checked against them: an axis product that is not
        the device count, or a batch that does not split over the mesh, is refused."""
        devices = run_devices(self.config.devices)
        shape = MeshShape.parse(self.config.mesh, len(devices))
        check_batch(self.batch_size, self.config.microbatches, shape)
        return Layout(shape, tuple(d.id for d in devices), self.config.microbatches)

    def queue_row(self) -> dict:
        """What a sweep's queue keeps of a planned run (its `plan` column): N, D, C, steps, batch, lr, shape."""
        return {"params": self.shape.params, "tokens": self.tokens, "flops": self.flops,
                "flops_model": self.flops_model, "steps": self.steps, "batch_size": self.batch_size,
                "lr": self.lr, "shape": self.shape.describe()}

    def describe(self) -> dict:
        return {
            "run_id": self.run_id, "name": self.name, "shape": self.shape.to_dict(),
            "batch_size": self.batch_size, "steps": self.steps, "lr": self.lr,
            "warmup_steps": self.warmup_steps, "steps_per_call": self.steps_per_call, "tokens": self.tokens,
            "flops": self.flops,
            "flops_model": self.flops_model, "epochs": self.epochs, "eval_steps": self.eval_steps,
            **({"eval_sets": {s.name: {"source": s.source, "fingerprint": s.corpus.fingerprint} for s in self.evals}}
               if self.evals else {}),
            **({"recipe": [dict(r) for r in self.recipe]} if self.recipe else {}),
        }


def plan_run(cfg: RunConfig) -> RunPlan:
    """Resolve a config into a concrete run, writing nothing.

    Args:
        cfg: the run's config (size as params or d_model; length as tokens or flops_budget).
    Returns:
        The RunPlan: shape, batch size, steps, learning rate, warmup, corpus and run id.
    Raises:
        UsageError: for anything that cannot run (too short, corpus too small, bad shape).
    """
    corpus = corpus_for(cfg.corpus, cfg.mixture, cfg.domains, cfg.vocab_size)
    shape_kwargs = dict(vocab_size=corpus.vocab_size, seq_len=cfg.seq_len, mlp=cfg.mlp, tied=cfg.tied,
                        qk_norm=cfg.qk_norm, n_layers=cfg.n_layers, n_heads=cfg.n_heads, d_ff=cfg.d_ff)
    if cfg.d_model is not None:
        shape = shape_for_width(cfg.d_model, **shape_kwargs)
    else:
        shape = shape_for_params(cfg.params, **shape_kwargs)
    length = cfg.length
    wanted = length.tokens(shape.params)
    asked_flops = length.value if length.unit == "flops" else 6.0 * shape.params * wanted
    rules, recipe, recipe_sha256 = _recipe(cfg, shape.params, asked_flops)
    batch_size = cfg.batch_size or rules.get("batch_size") or default_batch_size(shape)
    tokens_per_step = batch_size * shape.seq_len
    # One rule for both units: a run is whole steps of batch x seq_len tokens, D rounded to the nearest
    # whole step, and at least one step (a shorter request is refused, not rounded up to a run it did not ask for).
    if wanted < tokens_per_step:
        what = str(length) if length.unit == "tokens" else (
            f"{length} gives D={wanted:.3g} tokens for N={shape.params:,}")
        raise UsageError(f"{what}: less than one batch of {tokens_per_step:,} tokens ({batch_size} x {shape.seq_len}); "
                         f"allowed: tokens>={tokens_per_step:,}, or for this model "
                         f"flops_budget>={6.0 * shape.params * tokens_per_step:.3g}")
    steps = int(round(wanted / tokens_per_step))
    if data_lib.windows_per_epoch(corpus, shape.seq_len) < 1:
        raise UsageError(f"corpus={cfg.corpus!r} is shorter than one sequence of {shape.seq_len + 1} tokens")
    check_batch(batch_size, cfg.microbatches, MeshShape.parse(cfg.mesh, None))
    lr = cfg.lr if cfg.lr is not None else rules.get("lr") or default_lr(
        shape, parametrization=Parametrization.of_config(cfg))
    warmup = _warmup_steps(cfg, steps, tokens_per_step)
    if cfg.cooldowns is not None and cfg.warmup_tokens is None:
        # Every branch must warm up exactly as its parent did: fix the warmup in tokens, sized for the
        # shortest branch, and record it so that the branches' configs (and a rerun) carry it.
        cfg = cfg.replace(warmup_tokens=float(warmup * tokens_per_step))
    run_id = cfg.run_id or f"{short(shape.params)}-{short(steps * tokens_per_step)}-s{cfg.seed}-{uuid.uuid4().hex[:6]}"
    cfg = cfg.replace(run_id=run_id)
    if recipe_sha256 is not None:  # the files' content is part of the config: resuming under an edited one is refused
        cfg = cfg.replace(recipe_sha256=recipe_sha256)
    steps_per_call = min(steps, cfg.steps_per_call or default_steps_per_call(shape, batch_size))
    evals = load_eval_sets(cfg.eval, corpus, shape.seq_len)
    return RunPlan(cfg, run_id, shape, batch_size, steps, lr, warmup, corpus, steps_per_call, evals=evals,
                   recipe=recipe)


def _recipe(cfg: RunConfig, params: int, flops: float) -> tuple[dict, tuple[dict, ...], str | None]:
    """`recipe=FIT.json,...`: what its fitted laws set where the config leaves lr / batch_size open (lr at
    the model's exact N, the batch at the run's asked compute C = 6ND), and each law's record for
    config.yaml. The files' sha256 must match recipe_sha256 when the config pins it (a sweep's queued run:
    what was planned is what trains)."""
    if cfg.recipe is None:
        return {}, (), None
    from scaling.rules import read_rules, split_paths

    paths = split_paths(cfg.recipe)
    if not paths:
        raise UsageError(f"recipe={cfg.recipe!r}: expected FIT.json[,FIT2.json] (scaling fit --law lr|batch --json)")
    rules = read_rules(paths, "recipe=")
    if cfg.recipe_sha256 is not None and cfg.recipe_sha256 != rules.sha256:
        raise UsageError(f"recipe={cfg.recipe}: the file's content changed since this run was planned (sha256 "
                         f"{short_hash(cfg.recipe_sha256)} then, {short_hash(rules.sha256)} now); plan it again")
    # an explicit key wins, so its law is not evaluated (a batch law against the loss is refused only when used)
    values = {"lr": rules.lr(params) if cfg.lr is None else None,
              "batch_size": rules.batch_size(flops) if cfg.batch_size is None else None}
    records = []
    for rule in rules.rules:
        key = "lr" if rule.law == "lr" else "batch_size"
        at = {"params": params} if rule.law == "lr" else {"flops": flops}
        records.append({**rule.record(), "at": at, key: values[key],
                        **({} if values[key] is not None else {"unused": f"{key} given"})})
    return {k: v for k, v in values.items() if v is not None}, tuple(records), rules.sha256


def short_hash(text: str | None) -> str:
    return ",".join(h[:12] for h in (text or "none").split(","))


def _warmup_steps(cfg: RunConfig, steps: int, tokens_per_step: int) -> int:
    """warmup_tokens when given, else warmup_fraction of the run (of its shortest cooldown branch)."""
    if steps <= 1:
        return 0
    if cfg.warmup_tokens is not None:
        wanted = cfg.warmup_tokens / tokens_per_step
    else:
        shortest = steps
        if cfg.cooldowns is not None:
            first = cfg.cooldown_lengths[0]
            shortest = max(1, round(steps * first / cfg.length.value))
        wanted = cfg.warmup_fraction * shortest
    return min(steps - 1, max(1, round(wanted)))


# Below this many model FLOPs per step, a step is short enough that launching it (Python, dispatch,
# transfers) is a sizeable part of its time; scanning several steps per call pays that once.
SCAN_BELOW_FLOPS_PER_STEP = 1e10
DEFAULT_STEPS_PER_CALL = 8


def default_steps_per_call(shape: ModelShape, batch_size: int) -> int:
    """Steps per compiled call when the config leaves it open: several for small steps, one for large."""
    flops = shape.flops_per_token() * batch_size * shape.seq_len
    return DEFAULT_STEPS_PER_CALL if flops < SCAN_BELOW_FLOPS_PER_STEP else 1
