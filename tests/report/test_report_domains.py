"""The report's domains section: drawn from runs with several evaluation sets and mixtures, with the
mixing law's best mixture in the headline; absent from a report whose runs have neither. And a report
whose spec names no budgets notes no extrapolation to budgets nobody asked for."""
import json
import re
import shutil
import subprocess

import pandas as pd
import pytest
from domains_synth import mixture_table
from laws_synth import replicated_isoflop_table

from scaling.cli import main


def _mixture_runs(path):
    small = mixture_table(k=8, seeds=2, seed=3, extra={"params": 5e4, "tokens": 8e5})
    large = mixture_table(k=8, seeds=1, seed=4, extra={"params": 1e5, "tokens": 1.6e6}, mix_seed=3)
    runs = pd.concat([small, large], ignore_index=True)
    runs["loss"] = runs["eval/code/loss"]
    runs.to_csv(path, index=False)


def test_a_mixture_studys_report_has_the_best_mixture_per_scale_in_its_headline_and_the_laws_across_domains(tmp_path):
    csv, spec, out = tmp_path / "runs.csv", tmp_path / "spec.yaml", tmp_path / "r"
    _mixture_runs(csv)
    spec.write_text("title: mixtures\nlaws: []\nbootstrap: 20\n")
    assert main(["report", str(spec), str(csv), "--out", str(out), "--wandb", "off"]) == 0
    md = (out / "report.md").read_text()
    headline = md.split("## Headline")[1].split("##")[0]
    assert headline.count("Best mixture at params") == 2 and "optimum from params 5e+04" in headline
    assert "## Data mixing law: the best mixture per scale" in md
    assert "## Loss-to-loss: each domain's loss from another's" in md
    assert "## Fitted parameters" not in md  # no loss law asked for: none of their tables
    assert {"mixture.png", "loss_to_loss.png"} <= {p.name for p in (out / "figures").iterdir()}
    fitted = json.loads((out / "fit.json").read_text())["domains"]
    assert [s["scale"] for s in fitted["mixture"]["scales"]] == ["params 5e+04, tokens 8e+05",
                                                                 "params 1e+05, tokens 1.6e+06"]
    assert len(fitted["loss_to_loss"]) == 3  # every pair of code, prose, headers
    html = (out / "index.html").read_text()
    assert "Data mixing law: the best mixture per scale" in html and "id='mixture'" in html


def test_a_report_without_evaluation_sets_or_mixtures_has_no_domains_section(tmp_path):
    csv, spec, out = tmp_path / "runs.csv", tmp_path / "spec.yaml", tmp_path / "r"
    # budgets of a CPU study: the built-in 1e21 and 1e24 lie past the fit's reach (x1e6) from here
    replicated_isoflop_table(budgets=(1e11, 1e12, 1e13, 1e14), seeds=1, noise=0.001).to_csv(csv, index=False)
    spec.write_text("laws: [isoflop]\nbootstrap: 0\nholdout: none\n")
    assert main(["report", str(spec), str(csv), "--out", str(out), "--wandb", "off"]) == 0
    md = (out / "report.md").read_text()
    assert "Data mixing law" not in md and "Loss-to-loss" not in md
    assert "domains" not in json.loads((out / "fit.json").read_text())
    # the spec names no budgets: the built-in ones are replaced by the report's own, so no note about
    # how far 1e21 or 1e24 lie (a user's report once warned about budgets nobody asked for)
    assert "at=1e+21" not in md and "at=1e+24" not in md


@pytest.mark.browser
def test_headless_chromium_shows_the_domains_sections_figures_and_tables(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed (.ci/run installs it)")
    csv, spec, out = tmp_path / "runs.csv", tmp_path / "spec.yaml", tmp_path / "r"
    _mixture_runs(csv)
    spec.write_text("title: mixtures\nlaws: []\nbootstrap: 20\n")
    assert main(["report", str(spec), str(csv), "--out", str(out), "--wandb", "off"]) == 0
    figures = len([p for p in (out / "figures").iterdir() if p.suffix == ".png"])
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([chromium, *flags, "--virtual-time-budget=5000", "--dump-dom", f"file://{out / 'index.html'}"],
                         capture_output=True, text=True, timeout=120).stdout
    loaded = re.search(r'data-figures-loaded="(\d+)"', dom)
    assert loaded and int(loaded.group(1)) == figures >= 2, "a figure of the domains section did not decode"
    assert "Best mixture at params 5e+04" in dom and "Data mixing law: the best mixture per scale" in dom
