"""Run tracking: a small Tracker interface, the Weights & Biases back end (online when W&B finds
credentials, offline otherwise). The run directory's own tracker lives with its files
(`scaling.runs.files.LocalTracker`)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Protocol

from scaling.errors import UsageError

WANDB_MODES = ("auto", "off", "offline", "online")
# Switches after the mode (`wandb=auto,nostats`): system metrics and console capture are on by default,
# as in W&B itself, and a cluster that forbids either can turn it off per run.
WANDB_SWITCHES = ("nostats", "noconsole")


@dataclass(frozen=True)
class WandbSetting:
    """The `wandb=` value: MODE[,nostats][,noconsole]."""
    mode: str = "auto"
    stats: bool = True
    console: bool = True


def parse_wandb(setting: str) -> WandbSetting:
    """`auto`, `offline,nostats`, `online,noconsole,nostats`, ...; anything else is a one-line error."""
    mode, *switches = [part.strip() for part in str(setting).split(",")]
    unknown = [s for s in switches if s not in WANDB_SWITCHES]
    if mode not in WANDB_MODES or unknown or len(set(switches)) != len(switches):
        raise UsageError(f"wandb={setting!r}: allowed a mode ({', '.join(WANDB_MODES)}), optionally followed "
                         f"by ,{' and/or ,'.join(WANDB_SWITCHES)} (e.g. wandb=auto,nostats)")
    return WandbSetting(mode, "nostats" not in switches, "noconsole" not in switches)


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
    """'auto' is online when W&B has credentials by any of its own means and offline without;
    'off' (or WANDB_MODE=disabled) disables W&B; WANDB_MODE decides an 'auto' it names."""
    mode = parse_wandb(setting).mode
    if mode == "off" or os.environ.get("WANDB_MODE") == "disabled":
        return None
    if mode in ("offline", "online"):
        return mode
    if os.environ.get("WANDB_MODE") in ("offline", "online"):
        return os.environ["WANDB_MODE"]
    return "online" if wandb_has_credentials() else "offline"


def wandb_has_credentials() -> bool:
    """Whether W&B would find credentials for its configured server without prompting: WANDB_API_KEY,
    an identity token file, `wandb login`'s netrc entry, or a key in its settings. W&B's own lookup is
    used so that every way a user can log in counts, the way `wandb.init` would see it."""
    try:
        from wandb.errors import AuthenticationError
        from wandb.sdk import wandb_setup
        from wandb.sdk.lib import wbauth
    except ImportError:  # older wandb kept the same lookup in sdk.lib.apikey
        from wandb.sdk.lib import apikey

        return bool(apikey.api_key())
    try:
        found = wbauth.authenticate_session(host=wandb_setup.singleton().settings.base_url, source="scaling",
                                            prompt=False, update_session=False)
    except AuthenticationError:
        return True  # a key is there but malformed: going online lets W&B say what is wrong with it
    return found is not None


def wandb_entity() -> str | None:
    """$WANDB_ENTITY, else the default entity of the account the credentials belong to (a network call)."""
    if os.environ.get("WANDB_ENTITY"):
        return os.environ["WANDB_ENTITY"]
    import wandb

    return wandb.Api().default_entity


def wandb_settings(setting: str):
    """wandb.Settings for a `wandb=` value: console capture and system metrics unless switched off."""
    import wandb

    chosen = parse_wandb(setting)
    # create_new: packed runs (train.pack) keep several W&B runs open in one process at once.
    # silent in the settings, not only WANDB_SILENT: once a process has a W&B session (a packed run, an
    # agent's second run) later environment changes are ignored and every init prints its banner.
    return wandb.Settings(console="auto" if chosen.console else "off", x_disable_stats=not chosen.stats,
                          reinit="create_new", silent=True)


class WandbTracker:
    """One W&B run per training run, files under <run_dir>/wandb. Charts use tokens as the x-axis by
    default; flops is logged with every row so any chart can switch its x-axis to it."""

    def __init__(self, run_dir: str, *, mode: str, project: str, run_id: str, name: str, group: str | None,
                 tags: list[str] | None = None, setting: str | None = None):
        self.run_dir, self.mode, self.project = run_dir, mode, project
        self.run_id, self.name, self.group, self.tags = run_id, name, group, tags or []
        self.setting = setting  # the `wandb=` value; None: the one in the run record given to start()
        self.run, self.record = None, {}

    def start(self, config: dict) -> None:
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        self.record = config
        setting = self.setting or config.get("config", {}).get("wandb") or "auto"
        self.run = wandb.init(
            project=self.project, id=self.run_id, name=self.name, group=self.group, tags=self.tags,
            config=wandb_config(config), dir=self.run_dir, mode=self.mode, resume="allow", job_type="train",
            settings=wandb_settings(setting),
        )
        for axis in ("tokens", "flops", "step"):
            self.run.define_metric(axis, hidden=False)
        self.run.define_metric("train/*", step_metric="tokens")
        self.run.define_metric("eval/*", step_metric="tokens")
        self.run.define_metric("eval/loss", step_metric="tokens", summary="min")

    def log(self, metrics: dict) -> None:
        row = {}
        for key, value in metrics.items():
            if key in ("step", "tokens", "flops", "wall_s") or key.startswith(("eval/", "task/")):
                row[key] = value  # an evaluation set's eval/<name>/{loss,bpb} keeps its key
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
        if summary.get("status") == "complete":
            self.run.log_artifact(self.result_artifact(summary))
        self.run.finish(exit_code=0 if summary.get("status") == "complete" else 1)
        self.run = None

    def result_artifact(self, summary: dict):
        """The finished run's record and summary as an artifact (`run-<run_id>`), so an analysis run can
        declare the runs it read as its inputs and W&B draws the lineage from sweep to report."""
        import wandb

        artifact = wandb.Artifact(run_artifact_name(self.run_id), type=RUN_ARTIFACT_TYPE,
                                  metadata={k: summary.get(k) for k in ("params", "tokens", "flops", "eval_loss")})
        with artifact.new_file("summary.json") as fh:
            json.dump(summary, fh, indent=1, default=str)
        with artifact.new_file("record.json") as fh:
            json.dump(self.record, fh, indent=1, default=str)
        return artifact


RUN_ARTIFACT_TYPE = "run-result"


def run_artifact_name(run_id: str) -> str:
    return f"run-{run_id}"

