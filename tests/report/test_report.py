import json
import re
import shutil
import subprocess

import pandas as pd
import pytest
from laws_synth import TRUE, chinchilla_loss, isoflop_table

from scaling.cli import main
from scaling.display import number as fmt

FIGURES = ["training_curves", "isoflop_profiles", "compute_optimal", "loss_contours", "predicted_vs_observed",
           "holdout"]


def fixture_runs(path, budgets=(1e18, 1e19, 1e20, 1e21), sizes=5) -> str:
    """A small isoFLOP sweep drawn from Chinchilla's law, with a per-step evaluation curve for each run."""
    runs = isoflop_table(budgets=budgets, sizes=sizes, span=1.2, noise=0.003)
    budget_of = {f"b{i}s{j}": c for i, c in enumerate(budgets) for j in range(sizes)}
    rows = []
    for _, r in runs.iterrows():
        d_final = r["flops"] / (6 * r["params"])
        for step, frac in enumerate((0.05, 0.1, 0.2, 0.4, 0.7, 1.0), start=1):
            d = frac * d_final
            loss = r["loss"] if frac == 1.0 else chinchilla_loss(r["params"], d) * 1.02
            rows.append({"run_id": r["run_id"], "step": step, "params": r["params"], "tokens": d,
                         "flops": 6 * r["params"] * d, "loss": loss, "flops_budget": budget_of[r["run_id"]]})
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    csv = fixture_runs(tmp / "runs.csv")
    out = tmp / "out"
    rc = main(["report", csv, "--out", str(out), "--bootstrap", "40", "--wandb", "offline"])
    assert rc == 0
    return out


def test_report_writes_html_markdown_json_csv_and_every_figure(report_dir):
    for name in ("index.html", "report.md", "fit.json", "runs.csv"):
        assert (report_dir / name).stat().st_size > 0
    for fig in FIGURES:
        assert (report_dir / "figures" / f"{fig}.png").stat().st_size > 5000
        assert (report_dir / "figures" / f"{fig}.svg").stat().st_size > 5000
    page = (report_dir / "index.html").read_text()
    assert page.count("data:image/png;base64,") == len(FIGURES)
    assert "http://" not in page and "https://" not in page  # opens offline: nothing to fetch


def _md_rows(md: str, title: str) -> list[list[str]]:
    section = md.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| source")
             and not line.startswith("| approach") and not line.startswith("| run ")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def test_parameter_table_matches_the_fit_json(report_dir):
    fit = json.loads((report_dir / "fit.json").read_text())["chinchilla"]
    ours = [r for r in _md_rows((report_dir / "report.md").read_text(), "Fitted parameters") if r[0].startswith("this")]
    assert len(ours) == 1
    for cell, name in zip(ours[0][1:], ["E", "A", "B", "alpha", "beta"]):
        lo, hi = fit["ci95"][name]
        assert cell == f"{fmt(fit['params'][name])} [{fmt(lo)}, {fmt(hi)}]"
    # and the recovered law is the one the fixture was drawn from
    assert fit["params"]["alpha"] == pytest.approx(TRUE["alpha"], abs=0.08)
    assert fit["params"]["beta"] == pytest.approx(TRUE["beta"], abs=0.08)


def test_allocation_table_matches_the_fit_json(report_dir):
    fits = json.loads((report_dir / "fit.json").read_text())
    rows = _md_rows((report_dir / "report.md").read_text(), "Compute-optimal allocation")
    law_of = {"Approach 3 (parametric)": "chinchilla", "Approach 2 (isoFLOP)": "isoflop",
              "Approach 1 (envelope)": "envelope"}
    checked = 0
    for row in rows:
        at = fits[law_of[row[0]]]["optimal"]["at"]
        point = next(p for p in at if fmt(p["flops"], 3) == row[1])
        assert row[2].split(" ")[0] == fmt(point["params"])
        assert row[3].split(" ")[0] == fmt(point["tokens"])
        checked += 1
    assert checked >= 6


def test_report_logs_an_analysis_run_to_wandb(report_dir):
    from wandb_log import read_offline_run

    rec = read_offline_run(str(report_dir / "wandb"))
    keys = set().union(*rec["history"])
    assert {f"figures/{f}/_type" for f in FIGURES} <= keys  # one image per figure
    assert "chinchilla/alpha" in rec["summary"]


def test_report_refuses_bad_input(tmp_path, capsys):
    assert main(["report", "--out", str(tmp_path / "o"), "--wandb", "off"]) == 2
    assert "give --sweep" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("params,loss\n1e6,3.0\n")
    assert main(["report", str(bad), "--out", str(tmp_path / "o"), "--wandb", "off"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.browser
def test_headless_chromium_shows_every_figure(report_dir, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed (.ci/run installs it)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    url = "file://" + str(report_dir / "index.html")
    dom = subprocess.run([chromium, *flags, "--virtual-time-budget=5000", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120).stdout
    loaded = re.search(r'data-figures-loaded="(\d+)"', dom)
    assert loaded and int(loaded.group(1)) == len(FIGURES), "some figure did not decode in the browser"
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1280,4000", url],
                   capture_output=True, timeout=120)
    from matplotlib.image import imread

    pixels = imread(str(shot))
    assert pixels.shape[0] >= 4000 and pixels[..., :3].std() > 0.05  # not a blank page
    dark = (pixels[..., :3].mean(axis=2) < 0.5).mean()
    assert dark > 0.005


def test_dashboard_offline_writes_a_workspace_definition_with_the_three_views(tmp_path, capsys):
    assert main(["dashboard", "--sweep", "demo", "--out", str(tmp_path)]) == 0
    assert "wrote the workspace definition" in capsys.readouterr().out
    text = (tmp_path / "workspace-demo.json").read_text()
    for needle in ("Loss against compute", "IsoFLOP", "Hyperparameters", "eval/loss", "flops"):
        assert needle in text
