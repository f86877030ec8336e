"""What a run records about itself: config.yaml's content (config, resolved plan, corpus, code) and the
summary at its end."""
from __future__ import annotations

import os
import subprocess

import jax
import numpy as np

from scaling import hardware
from scaling.config import config_defaults
from scaling.family import Parametrization
from scaling.mixture import tokens_drawn
from scaling.model import attention_convention
from scaling.train.plan import RunPlan
from scaling.train.step import LAYERS, Layout, compute_dtype

# Keys that may change between attempts of the same run without changing what it computes.
VOLATILE_KEYS = {"wandb", "wandb_project", "name", "checkpoint_every", "run_id", "sweep",
                 # where the arrays live: a run preempted on 8 devices may resume on 4 or 1
                 "mesh", "devices", "microbatches", "coordinator", "num_processes", "process_id",
                 # how many steps one compiled call takes: the same steps either way
                 "steps_per_call",
                 # what backward recomputes: the same arithmetic, memory traded for time
                 "remat",
                 # where the recipe's fit JSONs lie: their content (recipe_sha256) is what the run depends on
                 "recipe"}


def git_sha() -> str | None:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run_record(plan: RunPlan, layout: Layout | None = None) -> dict:
    """What config.yaml holds: the config as given, what the recipe resolved, where it runs, the corpus,
    the code."""
    resolved = plan.describe()
    parametrization = Parametrization.of_config(plan.config)
    if parametrization.mup:  # the base width the recipe chose when the config left it open
        resolved.update(base_width=parametrization.base_width, output_mult=parametrization.output_mult,
                        width_multiplier=parametrization.width_multiplier(plan.shape.d_model))
    if layout is not None:
        dtype = np.dtype(compute_dtype(plan.config.dtype)).name
        resolved.update(mesh=layout.mesh.describe(), n_devices=layout.mesh.devices, microbatches=layout.microbatches,
                        processes=jax.process_count(), dtype=dtype,
                        attention=plan.attention_kernel, remat=plan.remat or "none",
                        attention_flops=attention_convention(plan.attention_kernel), layers=LAYERS)
    return {
        "config": plan.config.to_dict(),
        "resolved": resolved,
        "corpus": plan.corpus.describe(),
        "git_sha": git_sha(),
        "jax": jax.__version__,
        "device": str(jax.devices()[0].device_kind),
    }


def changed_keys(old: dict, new: dict) -> list[str]:
    """Config keys whose values differ between two records, ignoring those that do not change the run. A
    key missing from a record (written before the key existed) holds its default there."""
    defaults = config_defaults()
    a, b = old.get("config", {}), new["config"]
    changed = {k for k in set(a) | set(b) if k not in VOLATILE_KEYS and k != "output_mult"
               and a.get(k, defaults.get(k)) != b.get(k, defaults.get(k))}
    # muP's readout multiplier by the value the run trained with, given or the recipe's (a muP run recorded
    # before the key existed trained with 1), so a change of the recipe's default cannot slip into a resume.
    was, now = old.get("resolved", {}), new.get("resolved", {})
    if "width_multiplier" in was and "width_multiplier" in now and was.get("output_mult", 1.0) != now["output_mult"]:
        changed.add("output_mult")
    return sorted(changed)


def summary(plan: RunPlan, *, status: str, step: int, eval_loss: float | None, train_loss: float,
            tokens_per_s: float | None, ceiling: float | None, wall_s: float, evals: dict | None = None) -> dict:
    """summary.json: status, N/D/C accounting at `step`, final losses, speed and context; `evals`, the
    evaluation sets' eval/<name>/{loss,bpb} at the final step (train.evalsets)."""
    shape = plan.shape
    return {
        "run_id": plan.run_id, "name": plan.name, "status": status, "sweep_id": plan.config.sweep,
        "params": shape.params, "params_nonembed": shape.params_nonembed,
        **plan.accounting(step),
        "step": step, "steps": plan.steps, "eval_loss": eval_loss if step == plan.steps else None,
        "eval_bpb": plan.corpus.bits_per_byte(eval_loss) if step == plan.steps else None,
        # null when no step after the first (which compiles) was timed: 0.0 would read as a measured speed
        "train_loss": train_loss, "tokens_per_s": tokens_per_s or None,
        "mfu": hardware.mfu(tokens_per_s, plan.flops_per_token, ceiling),
        # the kernel flops_model and mfu count the attention of (docs/contracts.md "Accounting")
        "attention": plan.attention_kernel, "attention_flops": attention_convention(plan.attention_kernel),
        "remat": plan.remat or "none",
        "ceiling_flops": ceiling, "wall_s": wall_s,
        "lr": plan.lr, "batch_size": plan.batch_size, "seq_len": shape.seq_len, "seed": plan.config.seed,
        "d_model": shape.d_model, "n_layers": shape.n_layers, "n_heads": shape.n_heads,
        "corpus": plan.corpus.name, "corpus_fingerprint": plan.corpus.fingerprint,
        "unigram_entropy": plan.corpus.unigram_entropy,
        **tokens_drawn(plan.corpus, plan.config.seed, step, plan.batch_size, shape.seq_len),  # corpus=mix
        # a cooldown branch: the run it continues, and the step it starts from (its own compute is
        # the steps after it; the report counts the study's real cost with this)
        "branch_of": plan.config.branch_of,
        "branch_step": plan.stable_end if plan.config.branch_of is not None else None,
        # every `eval=` set's keys, null unless the run is complete (as eval_loss)
        **{key: (evals or {}).get(key) if step == plan.steps else None for s in plan.evals for key in s.keys},
    }
