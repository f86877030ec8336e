"""`scaling dashboard`: a saved W&B workspace for a sweep (wandb-workspaces): loss against FLOPs and
tokens by model size, the isoFLOP view, and a parallel-coordinates view of N, D, C, lr and loss; with
a report directory, also a W&B Report holding the report's figures and tables.

Online (W&B finds credentials; the entity is $WANDB_ENTITY or the account's default) it saves them
and prints their URLs; offline it writes their definitions as JSON and says how to push them."""
from __future__ import annotations

import glob
import html
import json
import os
import re

import wandb_workspaces.reports.v2 as wr
import wandb_workspaces.workspaces as ws

from scaling.runs import write_atomic
from scaling.track import wandb_entity, wandb_mode

OFFLINE_ENTITY = "YOUR_ENTITY"  # a placeholder the user replaces, or a later online run fills in


def build_workspace(sweep: str, entity: str, project: str = "scaling"):
    size = wr.Config("N")
    loss_vs_compute = [
        wr.LinePlot(title="eval loss against FLOPs (C = 6ND), one line per run", x="flops", y=["eval/loss"],
                    log_x=True, legend_fields=["N", "D"]),
        wr.LinePlot(title="eval loss against tokens", x="tokens", y=["eval/loss"], log_x=True, legend_fields=["N"]),
        wr.LinePlot(title="train loss against FLOPs", x="flops", y=["train/loss"], log_x=True, smoothing_factor=0.6),
    ]
    isoflop = [
        wr.ScatterPlot(title="isoFLOP: final eval loss against N, coloured by budget", x=size,
                       y=wr.SummaryMetric("eval_loss"), z=wr.Config("flops_budget"), log_x=True),
        wr.ScatterPlot(title="final eval loss against C", x=wr.Config("C"), y=wr.SummaryMetric("eval_loss"),
                       z=size, log_x=True),
    ]
    columns = [wr.ParallelCoordinatesPlotColumn(metric=m) for m in (
        wr.Config("N"), wr.Config("D"), wr.Config("C"), wr.Config("lr"), wr.Config("batch_size"),
        wr.SummaryMetric("eval_loss"))]
    sections = [
        ws.Section(name="Loss against compute", panels=loss_vs_compute, is_open=True),
        ws.Section(name="IsoFLOP", panels=isoflop, is_open=True),
        ws.Section(name="Hyperparameters", panels=[wr.ParallelCoordinatesPlot(
            title="N, D, C, lr, batch and final loss", columns=columns)], is_open=True),
    ]
    return ws.Workspace(entity=entity, project=project, name=f"scaling sweep {sweep}", sections=sections,
                        runset_settings=ws.RunsetSettings(filters=[ws.Metric("group") == sweep]))


def report_spec(sweep: str, report_dir: str) -> dict:
    """What the W&B Report of a `scaling report` directory holds, as plain data: its title, its text and
    tables (report.md, image links removed) and the figure keys the sweep's analysis run logged."""
    with open(os.path.join(report_dir, "report.md")) as fh:
        markdown = fh.read()
    title = next((line[2:].strip() for line in markdown.splitlines() if line.startswith("# ")), f"Sweep {sweep}")
    title = html.unescape(re.sub(r"\\(.)", r"\1", title))  # plain text again: report.md escapes it (md_text)
    # Image links point into the report folder, which W&B cannot see; the figure panels show them instead.
    body = re.sub(r"^!\[[^\]]*\]\([^)]*\)[ \t]*\n?", "", markdown, flags=re.M)
    body = "\n".join(line for line in body.splitlines() if not line.startswith("# ")).strip() + "\n"
    figures = sorted(os.path.splitext(os.path.basename(p))[0]
                     for p in glob.glob(os.path.join(report_dir, "figures", "*.png")))
    return {"title": title, "sweep": sweep,
            "description": f"scaling report of sweep {sweep} (from {os.path.basename(os.path.abspath(report_dir))})",
            "runset": {"JobType": "analysis", "Group": sweep},
            "figures": [f"figures/{name}" for name in figures], "markdown": body}


def build_report(spec: dict, entity: str, project: str = "scaling"):
    """The W&B Report of a report_spec: a panel per figure of the analysis run, then the text and tables.
    (wandb-workspaces looks the project up while serializing one, so it is only built to be saved.)"""
    analysis = wr.Runset(entity=entity, project=project, name=f"analysis of {spec['sweep']}",
                         filters=[ws.Metric(k) == v for k, v in spec["runset"].items()])
    panels = [wr.MediaBrowser(title=key.split("/", 1)[1].replace("_", " "), media_keys=[key], num_columns=1)
              for key in spec["figures"]]
    return wr.Report(entity=entity, project=project, title=spec["title"], description=spec["description"],
                     blocks=[wr.PanelGrid(runsets=[analysis], panels=panels), wr.MarkdownBlock(text=spec["markdown"])])


def dashboard(sweep: str, out_dir: str, project: str = "scaling", push: bool | None = None,
              report_dir: str | None = None) -> dict:
    """Save the workspace (and the Report of `report_dir`) when W&B has credentials, else write their
    definitions into out_dir: the workspace's own model, and the Report's spec (wandb-workspaces cannot
    serialize a Report without reaching W&B)."""
    online = push if push is not None else wandb_mode("auto") == "online"
    entity = (wandb_entity() if online else os.environ.get("WANDB_ENTITY")) or OFFLINE_ENTITY
    workspace = build_workspace(sweep, entity, project)
    os.makedirs(out_dir, exist_ok=True)
    out = {"saved": online, "entity": entity, "definition": os.path.join(out_dir, f"workspace-{sweep}.json")}
    write_atomic(out["definition"], json.dumps(json.loads(workspace._to_model().model_dump_json()), indent=1))
    spec = report_spec(sweep, report_dir) if report_dir is not None else None
    if spec is not None:
        out["report_definition"] = os.path.join(out_dir, f"report-{sweep}.json")
        write_atomic(out["report_definition"], json.dumps(spec | {"entity": entity, "project": project}, indent=1))
    if not online:
        return out
    workspace.save()
    out["url"] = workspace.url
    if spec is not None:
        report = build_report(spec, entity, project)
        report.save()
        out["report_url"] = report.url
    return out
