"""The runs table: one tidy row per completed run (or per evaluated checkpoint), the input of fits
and reports (docs/contracts.md "The runs table")."""
from __future__ import annotations

import json
import math

import pandas as pd

from scaling import mixspec
from scaling.errors import UsageError
from scaling.runs.index import RunHome

# The columns `scaling fit` reads (docs/contracts.md "The runs table"), then context useful for filtering.
RUN_COLUMNS = ["run_id", "sweep_id", "params", "params_nonembed", "tokens", "flops", "flops_model", "loss",
               "eval_bpb", "train_loss", "lr", "batch_size", "seq_len", "seed", "status", "epochs", "d_model",
               "n_layers", "n_heads", "steps", "wall_s", "tokens_per_s", "mfu", "corpus", "corpus_fingerprint",
               "metric", "branch_of", "branch_step", "flops_budget"]


def runs_table(home: RunHome | str | None, sweep_id: str | None = None, steps: bool = False,
               validating: str | None = None) -> pd.DataFrame:
    """The tidy runs table `scaling fit` reads.

    Args:
        home: the run home (a RunHome or its path; None for the default).
        sweep_id: only this sweep's runs.
        steps: one row per evaluated checkpoint (from metrics.jsonl, the last being the final one),
            with a `step` column, instead of one row per completed run.
        validating: only the ladder runs that check this sweep (config `validates`), whichever sweep ran them.
    Returns:
        A DataFrame with RUN_COLUMNS (and `step`), loss = the final (or that step's) eval loss, then a
        `validates` column when a run is a ladder run, the mixture shares, and a column per evaluation
        set's and task's key the runs have (EXTRA_PREFIXES), sorted.
    """
    home = RunHome.of(home)
    query, args = "SELECT run_id, sweep_id, summary, config FROM runs WHERE status='complete'", ()
    if sweep_id is not None:
        query, args = query + " AND sweep_id=?", (sweep_id,)
    if validating is not None:
        query, args = query + " AND json_extract(config, '$.validates')=?", (*args, validating)
    found = home.read(query, args)

    rows, vocab, extra = [], {}, set()
    for r in found:
        s = json.loads(r["summary"]) if r["summary"] else {}
        if not _finite(s.get("eval_loss")):
            continue
        base = {c: s.get(c) for c in RUN_COLUMNS}
        base.update(run_id=r["run_id"], sweep_id=r["sweep_id"] or s.get("sweep_id"), loss=s["eval_loss"],
                    eval_bpb=s.get("eval_bpb"), status="complete", metric=_metric(home, r["run_id"], s, vocab),
                    flops_budget=_planned_budget(r["config"]))
        shares = {**_validates(r["config"]), **_mixture_shares(r["config"])}
        base.update(shares)
        extra |= set(shares)
        trained = {k: v for k, v in s.items() if k.startswith(EXTRA_PREFIXES)}
        final = {**trained, **later_evals(home, r["run_id"])}
        extra |= set(final)
        if not steps:
            rows.append({**base, **final})
            continue
        flops_model_per_token = s["flops_model"] / s["tokens"] if s.get("tokens") else None
        evals = {}
        for m in home.files(r["run_id"]).read_metrics():
            # A resumed run may log a step twice; the later line is the one its checkpoint continued from.
            if "eval_loss" in m and _finite(m["eval_loss"]):
                evals[int(m["step"])] = m
        for step in sorted(evals):
            if step <= (s.get("branch_step") or 0):  # a cooldown branch's rows up to its start are its parent's
                continue
            m = evals[step]
            # bits per byte scale with the loss: the final row's ratio holds at every checkpoint
            bpb = m["eval_loss"] * s["eval_bpb"] / s["eval_loss"] if _finite(s.get("eval_bpb")) else None
            row = dict(base, step=step, tokens=m["tokens"], flops=m["flops"], loss=m["eval_loss"], eval_bpb=bpb,
                       train_loss=m.get("loss"), epochs=None)
            # the sets evaluated in training as logged at this step; later evaluations belong to the last
            row.update({k: m.get(k) for k in trained} if step != s.get("steps") else final)
            row["flops_model"] = flops_model_per_token * m["tokens"] if flops_model_per_token else None
            if s.get("tokens"):
                row["epochs"] = s.get("epochs", 0) * m["tokens"] / s["tokens"]
            rows.append(row)

    columns = RUN_COLUMNS[:2] + (["step"] if steps else []) + RUN_COLUMNS[2:] + sorted(extra)
    table = pd.DataFrame(rows, columns=columns)
    sort = ["sweep_id", "params", "flops"] + (["step"] if steps else [])
    return table.sort_values(sort, na_position="first", kind="stable").reset_index(drop=True)


def _planned_budget(config: str | None) -> float | None:
    """The C a run was given (flops_budget, as its sweep planned it), so an isoFLOP fit groups runs by
    their budget, not by the measured C; None for a run given tokens."""
    try:
        value = (json.loads(config) if config else {}).get("flops_budget")
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
def _validates(config: str | None) -> dict:
    """{"validates": SWEEP} for a ladder run (its config names the sweep whose law it checks), else {}."""
    try:
        value = (json.loads(config) if config else {}).get("validates")
    except (ValueError, AttributeError):
        return {}
    return {"validates": value} if isinstance(value, str) and value else {}


def _mixture_shares(config: str | None) -> dict:
    """`mix/<domain>`: each training domain's share of a corpus=mix run's mixture (scaling/mixspec.py), what
    the mixture laws read (docs/contracts.md "The runs table", its domain columns); nothing for a single corpus."""
    try:
        cfg = json.loads(config) if config else {}
        if not isinstance(cfg, dict) or cfg.get("corpus") != mixspec.MIX:
            return {}
        mix = mixspec.parse(mixspec.MIX, mixspec.flatten(cfg.get("mixture")), mixspec.flatten(cfg.get("domains")))
    except (ValueError, UsageError):
        return {}
    return {f"mix/{name}": weight for name, weight in zip(mix.names, mix.weights)}


# Columns beyond RUN_COLUMNS, one per key a run has: eval/<name>/{loss,bpb} of each evaluation set (in
# training, `eval=`; or later, `scaling eval --eval`) and task/<name>/{acc,acc_norm,nll,n} of each task.
EXTRA_PREFIXES = ("eval/", "task/")


def later_evals(home: RunHome, run_id: str) -> dict:
    """The metrics `scaling eval` recorded in the run's evals.json (docs/contracts.md "The run directory"),
    numbers only: they take the place of the same keys from training, being the newer measurement."""
    found = (home.files(run_id).read_evals() or {}).get("metrics")
    if not isinstance(found, dict):
        return {}
    return {k: v for k, v in found.items() if isinstance(k, str) and k.startswith(EXTRA_PREFIXES)
            and (v is None or _finite(v))}


def metric_column(metric: str) -> str:
    """The runs-table column a `--metric` names: loss, bpb (eval_bpb), or an evaluation set's NAME:loss or
    NAME:bpb (eval/NAME/loss, eval/NAME/bpb)."""
    if metric in ("loss", "bpb"):
        return {"loss": "loss", "bpb": "eval_bpb"}[metric]
    name, sep, what = metric.rpartition(":")
    if not sep or not name or what not in ("loss", "bpb"):
        raise UsageError(f"metric {metric!r}: allowed loss, bpb, or NAME:loss / NAME:bpb for an evaluation set "
                         "(eval=NAME:DIR, or `scaling eval --eval NAME:DIR`)")
    return f"eval/{name}/{what}"


def on_metric(frame: pd.DataFrame, metric: str, where: str = "the runs") -> pd.DataFrame:
    """`frame` with the column `metric` names as its `loss` (the eval loss in nats/token kept as
    `loss_nats`), for the fitters and figures that read `loss`. An evaluation set no row has is one line."""
    column = metric_column(metric)
    if column == "loss":
        return frame
    if column not in frame.columns:
        sets = sorted({c.split("/")[1] for c in frame.columns if str(c).startswith("eval/") and c.count("/") == 2})
        raise UsageError(f"metric {metric}: {where} have no {column} column (evaluation sets: "
                         f"{', '.join(sets) or 'none'})")
    return frame.rename(columns={"loss": "loss_nats"}).rename(columns={column: "loss"})


def _metric(home: RunHome, run_id: str, summary: dict, vocab: dict) -> str:
    """What `loss` is measured in: nats per token of a vocabulary of V tokens. Losses over different
    vocabularies (bytes at ~1-2 nats, a BPE at 5-7) are not comparable, and this says so row by row. The
    vocabulary is in the run's config.yaml, read once per corpus fingerprint."""
    key = summary.get("corpus_fingerprint") or run_id
    if key not in vocab:
        record = home.files(run_id).read_record() or {}
        vocab[key] = (record.get("corpus") or {}).get("vocab_size")
    return "nats/token" + (f" V={vocab[key]}" if vocab[key] else "")


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def sweep_exclusions(home: RunHome | str | None, sweep_id: str) -> dict[str, int]:
    """How many of a sweep's runs the runs table leaves out, by why: their status (diverged, failed,
    pending, ...), or a complete run without a finite eval loss. A fit says what it dropped."""
    home = RunHome.of(home)
    out: dict[str, int] = {}
    for r in home.read("SELECT status, summary FROM runs WHERE sweep_id=?", (sweep_id,)):
        if r["status"] == "complete":
            s = json.loads(r["summary"]) if r["summary"] else {}
            if _finite(s.get("eval_loss")):
                continue
            why = "complete without a finite eval loss"
        else:
            why = r["status"]
        out[why] = out.get(why, 0) + 1
    return out
