"""The scaling-law report: the Chinchilla paper's figures for the user's own runs, the fitted laws with
their uncertainty, the compute-optimal answer at the spec's budgets, as one self-contained HTML file,
Markdown, the fit JSON, the runs CSV and PNG/SVG figures; optionally logged to a W&B analysis run.

`build()` is the one entry point: `scaling report` and `scaling demo` both call it."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from scaling.report.fitting import Fits, fit_all
from scaling.report.gather import ReportData, gather, with_metric
from scaling.report.grouping import with_sweep_column
from scaling.report.render import ReportFiles, write_report
from scaling.report.spec import ReportSpec, load_published
from scaling.report.wandb_log import log_to_wandb
from scaling.runs import RunHome
from scaling.track import wandb_mode


@dataclass(frozen=True)
class Report:
    data: ReportData
    fits: Fits
    files: ReportFiles
    wandb_mode: str | None  # None when W&B was off
    wandb_dir: str | None


def build(spec: ReportSpec, out_dir: str, *, home: RunHome | str | None = None, csv: str | None = None,
          wandb: str = "auto", progress: Callable[[str], None] = print) -> Report:
    """Gather the runs, fit every law of the spec, write the report, and log it to W&B.

    Args:
        spec: the report spec (its `sweep` is used unless `csv` is given).
        out_dir: where index.html, report.md, fit.json, runs.csv and figures/ go.
        home: the run home holding the sweep.
        csv: a runs table file to report on instead of a sweep.
        wandb: auto (online when W&B has credentials, else offline), online, offline or off,
            optionally with ,nostats / ,noconsole.
        progress: receives one line per fitting stage.
    Returns:
        The Report: the data, the fits, the files written and the W&B run's directory.
    """
    data = with_metric(gather(home, spec.sweep if csv is None else None, csv), spec.metric)
    data = with_sweep_column(data, spec.by, home, spec.sweep if csv is None else None)  # `by:` a config key
    fits = fit_all(data, spec, progress=progress)
    files = write_report(data, fits, spec, out_dir)
    mode = wandb_mode(wandb)
    wandb_dir = log_to_wandb(files, spec, spec.sweep, mode, setting=wandb) if mode is not None else None
    return Report(data, fits, files, mode, wandb_dir)


__all__ = ["Report", "build", "Fits", "fit_all", "ReportData", "gather", "ReportFiles", "write_report",
           "ReportSpec", "load_published"]
