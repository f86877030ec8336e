"""Run tracking: a small Tracker interface, the Weights & Biases back end (offline unless an API key is
set) and the fan-out to several back ends. The run directory's own tracker lives with its files
(`scaling.runs.files.LocalTracker`)."""
from __future__ import annotations

import os
from typing import Protocol


class Tracker(Protocol):
    def start(self, config: dict) -> None: ...
    def log(self, metrics: dict) -> None: ...
    def finish(self, summary: dict) -> None: ...


def wandb_config(record: dict) -> dict:
    """Flatten a run record (config.yaml's content) for W&B: N, D, C and the shape at the top level so
    the UI can group, filter and plot by them."""
    resolved, shape = record.get("resolved", {}), record.get("resolved", {}).get("shape", {})
    out = {k: v for k, v in record.get("config", {}).items() if v is not None}
    out.update({
        "N": shape.get("params"), "N_nonembed": shape.get("params_nonembed"), "D": resolved.get("tokens"),
        "C": resolved.get("flops"), "C_model": resolved.get("flops_model"),
        "corpus_fingerprint": record.get("corpus", {}).get("corpus_fingerprint"),
    })
    out.update({k: resolved.get(k) for k in ("steps", "batch_size", "lr", "warmup_steps", "epochs")})
    out.update({k: shape.get(k) for k in ("d_model", "n_layers", "n_heads", "d_ff", "vocab_size", "head_dim")})
    return out


def wandb_mode(setting: str) -> str | None:
    """'auto' is online with an API key (env or netrc login) and offline without; 'off' disables W&B."""
    if setting == "off" or os.environ.get("WANDB_MODE") == "disabled":
        return None
    if setting in ("offline", "online"):
        return setting
    if os.environ.get("WANDB_MODE") in ("offline", "online"):
        return os.environ["WANDB_MODE"]
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


class WandbTracker:
    """One W&B run per training run, files under <run_dir>/wandb. Charts use tokens as the x-axis by
    default; flops is logged with every row so any chart can switch its x-axis to it."""

    def __init__(self, run_dir: str, *, mode: str, project: str, run_id: str, name: str, group: str | None,
                 tags: list[str] | None = None):
        self.run_dir, self.mode, self.project = run_dir, mode, project
        self.run_id, self.name, self.group, self.tags = run_id, name, group, tags or []
        self.run = None

    def start(self, config: dict) -> None:
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        self.run = wandb.init(
            project=self.project, id=self.run_id, name=self.name, group=self.group, tags=self.tags,
            config=wandb_config(config), dir=self.run_dir, mode=self.mode, resume="allow", job_type="train",
            settings=wandb.Settings(console="off", x_disable_stats=True),
        )
        for axis in ("tokens", "flops", "step"):
            self.run.define_metric(axis, hidden=False)
        self.run.define_metric("train/*", step_metric="tokens")
        self.run.define_metric("eval/*", step_metric="tokens")
        self.run.define_metric("eval/loss", step_metric="tokens", summary="min")

    def log(self, metrics: dict) -> None:
        row = {}
        for key, value in metrics.items():
            if key in ("step", "tokens", "flops", "wall_s"):
                row[key] = value
            elif key.startswith("eval_"):
                row["eval/" + key[5:]] = value
            else:
                row["train/" + key] = value
        self.run.log(row, step=int(metrics["step"]))

    def finish(self, summary: dict) -> None:
        if self.run is None:
            return
        for key, value in summary.items():
            if isinstance(value, (int, float, str, bool)) or value is None:
                self.run.summary[key] = value
        self.run.finish(exit_code=0 if summary.get("status") == "complete" else 1)
        self.run = None


class Trackers:
    """Fan-out to several back ends; the local one goes first so it is written even if W&B fails."""

    def __init__(self, *trackers):
        self.trackers = list(trackers)

    def start(self, config: dict) -> None:
        for t in self.trackers:
            t.start(config)

    def log(self, metrics: dict) -> None:
        for t in self.trackers:
            t.log(metrics)

    def finish(self, summary: dict) -> None:
        for t in self.trackers:
            t.finish(summary)
