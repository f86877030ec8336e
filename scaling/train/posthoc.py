"""Evaluating a finished run later (`scaling eval`): its final checkpoint on evaluation sets and
multiple-choice tasks, recorded in the run's evals.json beside the numbers of its training
(docs/contracts.md "The run directory"). Nothing the run wrote before is changed."""
from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass

import jax
import numpy as np

from scaling.config import RunConfig
from scaling.errors import UsageError
from scaling.family import ModelShape, Parametrization
from scaling.runs import RunDir, RunHome, write_atomic
from scaling.runs.files import jsonable
from scaling.train.checkpoints import Checkpoints, checkpoint_state
from scaling.train.distributed import to_float
from scaling.train.evalsets import EvalSet, corpus_tokenizer, load_eval_sets, set_metrics
from scaling.train.plan import RunPlan, plan_run
from scaling.train.step import LAYERS, Layout, attention_implementation, compiled_fns, compute_dtype, placement
from scaling.train.tasks import Task, TaskResult, score


@dataclass(frozen=True)
class RunEvaluation:
    run_id: str
    step: int
    sets: dict[str, dict]  # name -> {loss, bpb}
    tasks: dict[str, TaskResult]


class FinalModel:
    """A finished run's parameters at its last step, on one device, with its loss and log-probabilities."""

    def __init__(self, plan: RunPlan, files: RunDir):
        cfg, shape = plan.config, plan.shape
        dtype_name = np.dtype(compute_dtype(cfg.dtype)).name
        attention = attention_implementation(cfg.attention, dtype_name)
        self.parametrization = Parametrization.of_config(cfg)
        layout = Layout.single()
        self.fns = compiled_fns(shape, dtype_name, cfg.beta1, cfg.beta2, cfg.weight_decay, cfg.grad_clip, layout,
                                attention, self.parametrization)
        self.plan, self.dtype_name, self.attention = plan, dtype_name, attention
        params, opt_state = self.fns.init(np.uint32(cfg.seed))
        ckpt = Checkpoints(files.checkpoints)
        try:
            step = ckpt.latest_step()
            if step != plan.steps:
                raise UsageError(f"run {plan.run_id}: no checkpoint at its last step {plan.steps} "
                                 f"(latest: {step}); it cannot be evaluated")
            self.params = ckpt.restore(step, checkpoint_state(params, opt_state, 0.0,
                                                              placement(layout).replicated))["params"]
        finally:
            ckpt.close()
        self._logprobs = token_logprob_fn(shape, dtype_name, attention, self.parametrization)

    def mean_loss(self, corpus) -> float:
        from scaling import data as data_lib

        plan, total, n = self.plan, 0.0, 0
        for x, y in data_lib.eval_batches(corpus, plan.config.eval_tokens, plan.batch_size, plan.shape.seq_len):
            total += to_float(self.fns.eval_loss(self.params, x, y)) * len(x)
            n += len(x)
        return total / n

    def token_logprobs(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.asarray(self._logprobs(self.params, x, y))


@functools.lru_cache(maxsize=8)
def token_logprob_fn(shape: ModelShape, dtype_name: str, attention: str, parametrization: Parametrization):
    """jit (params, x, y) -> log p(y[b, t] | x[b, :t+1]), the model as the run trained it (train.step)."""
    import jax.numpy as jnp
    from flax import nnx

    from scaling.model import Transformer

    def model_of():
        return Transformer(shape, rngs=nnx.Rngs(0), dtype=jnp.dtype(dtype_name), attention=attention,
                           parametrization=parametrization, layers=LAYERS)

    graphdef, _ = nnx.split(nnx.eval_shape(model_of))

    def logprobs(params, x, y):
        logits = nnx.merge(graphdef, params)(x).astype(jnp.float32)
        return jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), y[..., None], axis=-1)[..., 0]

    return jax.jit(logprobs)


def finished_plan(files: RunDir) -> RunPlan:
    """The plan a complete run trained by (its own `eval=` sets left out: they were measured then)."""
    summary = files.read_summary() or {}
    if summary.get("status") != "complete":
        raise UsageError(f"run {files.run_id}: status {summary.get('status') or 'unknown'}; only a complete run's "
                         "final checkpoint is evaluated")
    record = files.read_record() or {}
    if not isinstance(record.get("config"), dict):
        raise UsageError(f"run {files.run_id}: its config.yaml is missing or unreadable")
    return plan_run(RunConfig.from_dict(record["config"]).replace(eval=None))


def evaluate_run(home: RunHome, run_id: str, eval_spec: str | None, tasks: list[Task]) -> RunEvaluation:
    """Evaluate run `run_id`'s final checkpoint on the sets of `eval_spec` (NAME:DIR,...) and on `tasks`,
    and record the numbers in its evals.json (merged with any recorded before)."""
    files = home.files(run_id)
    plan = finished_plan(files)
    sets = load_eval_sets(eval_spec, plan.corpus, plan.shape.seq_len, key="--eval")
    tokenizer = corpus_tokenizer(plan.corpus)
    if tasks and tokenizer is None:
        raise UsageError(f"run {run_id}: its corpus {plan.corpus.name!r} records no tokenizer; tasks need text")
    model = FinalModel(plan, files)
    metrics = set_metrics(sets, model.mean_loss)
    results = {t.name: score(t, tokenizer.encode, model.token_logprobs, plan.shape.seq_len) for t in tasks}
    for name, result in results.items():
        metrics.update(result.metrics(name))
    record(files, plan, sets, tasks, metrics)
    by_set = {s.name: {"loss": metrics[s.keys[0]], "bpb": metrics[s.keys[1]]} for s in sets}
    return RunEvaluation(run_id, plan.steps, by_set, results)


def record(files: RunDir, plan: RunPlan, sets: tuple[EvalSet, ...], tasks: list[Task], metrics: dict) -> None:
    """evals.json: {step, metrics: {eval/<name>/..., task/<name>/...}, sources: {eval/<name>: ..., task/<name>:
    ...}}, the keys measured now replacing the same keys measured before."""
    old = files.read_evals() or {}
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    sources = {f"eval/{s.name}": {"source": s.source, "fingerprint": s.corpus.fingerprint, "at": when} for s in sets}
    sources.update({f"task/{t.name}": {"source": t.source, "sha256": t.sha256, "items": len(t.items), "at": when}
                    for t in tasks})
    merged = {"run_id": plan.run_id, "step": plan.steps,
              "metrics": {**(old.get("metrics") or {}), **{k: jsonable(v) for k, v in metrics.items()}},
              "sources": {**(old.get("sources") or {}), **sources}}
    write_atomic(files.evals, json.dumps(merged, indent=2) + "\n")


def chance(task: Task) -> float:
    """The accuracy of guessing: the mean of 1 / choices over the items."""
    return float(np.mean([1.0 / len(i.choices) for i in task.items]))
