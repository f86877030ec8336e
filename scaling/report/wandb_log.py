"""The report as a W&B run of job type `analysis` in the sweep's group: figures, tables, fitted numbers,
and the files themselves as artifacts with the sweep's runs declared as its inputs."""
from __future__ import annotations

import csv
import dataclasses
import json
import os

import wandb

from scaling.report.render import ReportFiles
from scaling.report.spec import ReportSpec
from scaling.track import RUN_ARTIFACT_TYPE, run_artifact_name, wandb_settings

# Artifact types of what the analysis run logs, so W&B's lineage view and `api.artifacts(type)` find them.
RUNS_TABLE_TYPE, FIT_TYPE, REPORT_TYPE = "runs-table", "scaling-fit", "report"


def log_to_wandb(written: ReportFiles, spec: ReportSpec, sweep: str | None, mode: str,
                 project: str = "scaling", setting: str = "auto") -> str:
    """The report's figures and tables as a W&B run of job type `analysis` in the sweep's group, with
    runs.csv, fit.json and the report (HTML, Markdown, figures) as artifacts; returns the run's directory.

    The runs the report read are its inputs: online, each one's `run-<run_id>` artifact is used (W&B's
    lineage from the training runs to this run); offline, where W&B cannot use an artifact, their ids
    go into the run's config and the runs-table artifact's metadata instead."""
    os.environ.setdefault("WANDB_SILENT", "true")
    inputs = _run_ids(written.runs_csv)
    config = dataclasses.asdict(spec) | {"inputs": {"sweep": sweep, "runs": inputs}}
    run = wandb.init(project=project, group=sweep, job_type="analysis", name=f"report-{sweep or 'runs'}",
                     dir=written.out_dir, mode=mode, config=config, settings=wandb_settings(setting))
    for f in written.figures:
        run.log({f"figures/{f.name}": wandb.Image(f.png, caption=f.caption)})
    for t in written.tables:
        key = "tables/" + "".join(ch if ch.isalnum() else "_" for ch in t.title.lower()).strip("_")[:40]
        run.log({key: wandb.Table(columns=list(t.header), data=[list(map(str, r)) for r in t.rows])})
    with open(written.fit_json) as fh:
        fits = json.load(fh)
    for law, res in fits.items():
        if isinstance(res, dict):
            for k, v in (res.get("params") or {}).items():
                run.summary[f"{law}/{k}"] = v
            opt = res.get("optimal") or {}
            for k in ("a", "b"):
                if opt.get(k) is not None:
                    run.summary[f"{law}/{k}"] = opt[k]
    run.summary["headline"] = "\n".join(written.headline)
    if mode == "online":
        run.summary["inputs/declared"] = _use_run_artifacts(run, inputs)
    for artifact in report_artifacts(written, sweep, inputs):
        run.log_artifact(artifact)
    path = run.dir
    run.finish()
    return path


def report_artifacts(written: ReportFiles, sweep: str | None, inputs: list[str]) -> list:
    """runs.csv, fit.json and the report as three artifacts, so a later analysis can take any one."""
    tag = sweep or "runs"
    runs = wandb.Artifact(f"runs-{tag}", type=RUNS_TABLE_TYPE, metadata={"sweep": sweep, "runs": inputs},
                          description='the runs table the report was fitted on (docs/contracts.md "The runs table")')
    runs.add_file(written.runs_csv, name="runs.csv")
    fit = wandb.Artifact(f"fit-{tag}", type=FIT_TYPE, metadata={"sweep": sweep, "laws": _laws(written.fit_json)},
                         description="the fitted laws with their 95% intervals (the fit JSON)")
    fit.add_file(written.fit_json, name="fit.json")
    report = wandb.Artifact(f"report-{tag}", type=REPORT_TYPE, metadata={"headline": written.headline},
                            description="the report: self-contained HTML, Markdown and the figures")
    report.add_file(written.html, name="index.html")
    report.add_file(written.markdown, name="report.md")
    for f in written.figures:
        for path in (f.png, f.svg):
            if path and os.path.exists(path):
                report.add_file(path, name=f"figures/{os.path.basename(path)}")
    return [runs, fit, report]


def _use_run_artifacts(run, run_ids: list[str]) -> int:
    """Use each input run's result artifact; a run trained before runs logged one (or in another
    project) is skipped, its id still in the config. Returns how many were declared."""
    declared = 0
    for run_id in run_ids:
        try:
            run.use_artifact(f"{run_artifact_name(run_id)}:latest", type=RUN_ARTIFACT_TYPE)
        except Exception:  # noqa: BLE001 - lineage is best effort; W&B's lookup errors vary by version
            continue
        declared += 1
    return declared


def _run_ids(runs_csv: str) -> list[str]:
    with open(runs_csv, newline="") as fh:
        return sorted({row["run_id"] for row in csv.DictReader(fh) if row.get("run_id")})


def _laws(fit_json: str) -> list[str]:
    with open(fit_json) as fh:
        return [law for law, res in json.load(fh).items() if isinstance(res, dict)]
