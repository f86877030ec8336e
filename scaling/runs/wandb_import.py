"""The runs table from W&B's public API, for sweeps whose runs live only in W&B (`wandb agent` on many
machines, no shared run home): the config and summary each finished run logged, in the same columns as
the local table (docs/contracts.md "The runs table"), so `scaling fit` and `scaling report` read either."""
from __future__ import annotations

import math

import pandas as pd

from scaling.errors import UsageError
from scaling.runs.table import RUN_COLUMNS

# Where a column is found when the summary lacks it: the W&B config a training run logs
# (scaling.track.wandb_config) names N, D and C as the field's letters.
CONFIG_FALLBACK = {"params": "N", "params_nonembed": "N_nonembed", "tokens": "D", "flops": "C",
                   "flops_model": "C_model"}


def parse_wandb_path(path: str) -> tuple[str, str, str | None]:
    """ENTITY/PROJECT[/SWEEP_ID] (or ENTITY/PROJECT/sweeps/SWEEP_ID, as in W&B's URLs)."""
    parts = path.strip().rstrip("/").split("/")
    if len(parts) == 4 and parts[2] == "sweeps":
        parts = parts[:2] + parts[3:]
    if len(parts) not in (2, 3) or not all(p and p.strip() == p for p in parts):
        raise UsageError(f"--from-wandb {path!r}: expected ENTITY/PROJECT or ENTITY/PROJECT/SWEEP_ID")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def wandb_runs_table(path: str, timeout_s: int = 60) -> tuple[pd.DataFrame, dict[str, int]]:
    """The runs table of a W&B project (or one of its sweeps) read with wandb.Api, and the finished
    runs it left out by why (no finite eval loss, an analysis run, ...).

    Only finished runs are asked for; each run's summary (what the trainer's summary.json held) gives
    the columns, its config the N, D and C it was launched with where the summary lacks them."""
    import wandb

    entity, project, sweep = parse_wandb_path(path)
    filters: dict = {"state": "finished"}
    if sweep:
        filters["sweep"] = sweep
    try:
        api = wandb.Api(timeout=timeout_s)
        found = list(api.runs(f"{entity}/{project}", filters=filters, per_page=100, lazy=False))
    except wandb.errors.UsageError:
        raise UsageError("--from-wandb needs W&B credentials: run `wandb login` or set WANDB_API_KEY") from None
    except Exception as err:  # noqa: BLE001 - the client's errors (auth, transport, GraphQL) differ by version
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"--from-wandb {path}: W&B refused or could not be reached ({first})") from None
    rows, left_out = [], {}
    for run in found:
        row, why = table_row(run, sweep)
        if row is None:
            left_out[why] = left_out.get(why, 0) + 1
        else:
            rows.append(row)
    table = pd.DataFrame(rows, columns=RUN_COLUMNS)
    table = table.sort_values(["sweep_id", "params", "flops"], na_position="first", kind="stable")
    return table.reset_index(drop=True), left_out


def table_row(run, sweep: str | None) -> tuple[dict | None, str]:
    """One run's row (or None and why it is left out) from a wandb.apis.public.Run."""
    summary, config = dict(run.summary_metrics or {}), dict(run.config or {})
    if run.job_type == "analysis":
        return None, "analysis run"
    if run.state != "finished" or summary.get("status", "complete") != "complete":
        return None, f"status {summary.get('status') or run.state}"
    if sweep and run.sweep_name and run.sweep_name != sweep:  # the server filters; this guards a loose filter
        return None, "another sweep"
    loss = summary.get("eval_loss")
    if not _finite(loss):
        return None, "finished without a finite eval loss"
    row = {}
    for column in RUN_COLUMNS:
        value = summary.get(column)
        if value is None:
            value = config.get(CONFIG_FALLBACK.get(column, column))
        row[column] = value if isinstance(value, (int, float, str)) or value is None else None
    row.update(run_id=summary.get("run_id") or run.id, loss=loss, status="complete",
               sweep_id=run.sweep_name or summary.get("sweep_id") or config.get("sweep") or run.group)
    return row, ""


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
