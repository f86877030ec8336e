"""`scaling dashboard`: a saved W&B workspace for a sweep (wandb-workspaces): loss against FLOPs and
tokens by model size, the isoFLOP view, and a parallel-coordinates view of N, D, C, lr and loss.

Online (an API key and an entity) it saves the workspace and prints its URL; offline it writes the
definition as JSON beside the report and says how to push it."""
from __future__ import annotations

import json
import os

import wandb_workspaces.reports.v2 as wr
import wandb_workspaces.workspaces as ws

from scaling.runs import write_atomic


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


def dashboard(sweep: str, out_dir: str, project: str = "scaling", push: bool | None = None) -> dict:
    """Save the workspace when W&B is reachable with a key, else write its definition."""
    entity = os.environ.get("WANDB_ENTITY") or "YOUR_ENTITY"
    workspace = build_workspace(sweep, entity, project)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"workspace-{sweep}.json")
    write_atomic(path, json.dumps(json.loads(workspace._to_model().model_dump_json()), indent=1))
    online = push if push is not None else bool(os.environ.get("WANDB_API_KEY") and os.environ.get("WANDB_ENTITY"))
    if not online:
        return {"saved": False, "definition": path}
    workspace.save()
    return {"saved": True, "definition": path, "url": workspace.url}
