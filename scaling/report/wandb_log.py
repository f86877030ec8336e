"""The report as a W&B run of job type `analysis` in the sweep's group: figures, tables, fitted numbers."""
from __future__ import annotations

import dataclasses
import json
import os

import wandb

from scaling.report.render import ReportFiles
from scaling.report.spec import ReportSpec


def log_to_wandb(written: ReportFiles, spec: ReportSpec, sweep: str | None, mode: str,
                 project: str = "scaling") -> str:
    """The report's figures and tables as a W&B run of job type `analysis` in the sweep's group;
    returns the W&B run's directory."""
    os.environ.setdefault("WANDB_SILENT", "true")
    run = wandb.init(project=project, group=sweep, job_type="analysis", name=f"report-{sweep or 'runs'}",
                     dir=written.out_dir, mode=mode, config=dataclasses.asdict(spec),
                     settings=wandb.Settings(console="off", x_disable_stats=True))
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
    path = run.dir
    run.finish()
    return path
