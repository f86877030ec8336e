"""The report's ladder check: the ladder runs (config `validates`, `scaling sweep plan --validate`) taken out
of the runs a report fits, and each compared with the laws of the sweep it names (scaling.laws.ladder_check):
a table, a headline line per run, and `ladder_check` in fit.json.

Imports nothing of the report's other modules at load time: gather.py calls `split` while it is imported."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from scaling.display import number
from scaling.laws.ladder_check import PREDICTING, LadderCheck, check_ladder, split_ladder

TITLE = "Ladder check: a run past the sweep against its prediction"
NOTE = ("Runs trained past the sweep at the size its law calls compute-optimal (`scaling sweep plan --validate`), "
        "kept out of every fit: each law is fitted to the runs of the sweep the ladder run names, and predicts "
        "the loss at the ladder run's own N and D with its 95% bootstrap interval. Error: measured minus "
        "predicted, also in half-widths of the interval (on the side the measurement fell: inside when within "
        "±1) and in the sweep's run-to-run noise SDs (its seed replicates). Approaches 1 and 2 give N_opt(C), "
        "not a loss past the compute they measured, so only the laws of the loss predict it.")


def split(runs: pd.DataFrame, steps: pd.DataFrame | None, home=None, sweep: str | None = None):
    """(runs, steps, ladder): the report's runs and per-checkpoint rows without the ladder runs, and the
    ladder runs' final rows (those in the table, and for a sweep those of the home that name it), or None."""
    runs, ladder = split_ladder(runs)
    if sweep is not None:
        from scaling.runs import runs_table

        named = runs_table(home, validating=sweep)
        ladder = pd.concat([ladder, named[~named["run_id"].isin(ladder.get("run_id", []))]], ignore_index=True)
    if steps is not None and len(ladder) and "run_id" in steps.columns:
        steps = steps[~steps["run_id"].isin(ladder["run_id"])].reset_index(drop=True)
    return runs, steps, (ladder if len(ladder) else None)


def check(runs: pd.DataFrame, ladder: pd.DataFrame | None, laws, results: dict, *, bootstrap: int, seed: int,
          huber_delta: float, progress=print) -> LadderCheck | None:
    """The check of the report's ladder runs at the report's settings; a law the report fitted to exactly
    the runs a ladder run's sweep holds is used as it is, not fitted again."""
    if ladder is None:
        return None
    from scaling.laws import load_runs

    progress(f"ladder check: {len(ladder)} run(s) past the sweep")
    reuse_runs = set(load_runs(runs).frame["run"]) if len(runs) and results else ()
    frame = pd.concat([runs, ladder], ignore_index=True)
    return check_ladder(frame, ("chinchilla", *(law for law in laws if law in PREDICTING)), reuse=results,
                        reuse_runs=reuse_runs, bootstrap=bootstrap, seed=seed, huber_delta=huber_delta)


@dataclass(frozen=True)
class LadderSection:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str
    headline: list[str]
    json: dict


def section(found: LadderCheck | None) -> LadderSection | None:
    """The table, its headline lines and its fit.json entry; None without ladder runs."""
    if found is None:
        return None
    header, rows = found.table(number)
    note = NOTE + "".join(f" {n}." for n in found.notes)
    return LadderSection(TITLE, list(header), [list(r) for r in rows], note, found.headline(), found.to_json())
