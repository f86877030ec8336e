import html
import json
import math
import re
import shutil
import subprocess

import pandas as pd
import pytest
from handmade_fits import lr_sweep
from laws_synth import TRUE, chinchilla_loss, isoflop_table
from matplotlib.image import imread

from scaling.cli import main
from scaling.report import figures
from scaling.report.spec import load_published

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
    # 10 resamples, not more: the tests check the tables against fit.json, whatever the intervals are
    rc = main(["report", csv, "--out", str(out), "--bootstrap", "10", "--wandb", "offline"])
    assert rc == 0
    return out


def test_report_writes_html_markdown_json_csv_and_every_figure(report_dir):
    for name in ("index.html", "report.md", "fit.json", "runs.csv"):
        assert (report_dir / name).stat().st_size > 0
    for fig in FIGURES:
        assert (report_dir / "figures" / f"{fig}.png").stat().st_size > 5000
        assert (report_dir / "figures" / f"{fig}.svg").stat().st_size > 5000
    # each PNG decodes to its figure's size (what it shows is checked in test_figures.py)
    for name, _caption, (width, height), *_ in (f for f in figures.FIGURES if f[0] in FIGURES):
        pixels = imread(str(report_dir / "figures" / f"{name}.png"))
        assert pixels.shape[:2] == (round(height * 110), round(width * 110))
    page = (report_dir / "index.html").read_text()
    assert page.count("data:image/png;base64,") == len(FIGURES)
    assert "http://" not in page and "https://" not in page  # opens offline: nothing to fetch


def test_report_on_an_lr_sweep_at_three_widths_shows_the_lr_transfer_figure(tmp_path):
    runs = lr_sweep().assign(params=lambda r: 1000.0 * r.d_model, tokens=1e6)
    runs["run_id"] = [f"r{i}" for i in range(len(runs))]
    runs.to_csv(tmp_path / "lr.csv", index=False)
    assert main(["report", str(tmp_path / "lr.csv"), "--out", str(tmp_path / "out"), "--bootstrap", "0",
                 "--wandb", "off"]) == 0
    page, md = (tmp_path / "out" / "index.html").read_text(), (tmp_path / "out" / "report.md").read_text()
    assert "<figure id='lr_transfer'><img" in page and "](figures/lr_transfer.png)" in md


def _md_rows(md: str, title: str) -> list[list[str]]:
    section = md.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")][1:]  # the header row left out
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


NUMBER = r"(-?\d+(?:\.\d+)?(?:e[-+]\d+)?)"


def _numbers(text: str, template: str) -> list[float]:
    """The numbers shown in `text`, which must read as `template` with a number at each {}."""
    match = re.fullmatch(re.escape(template).replace(r"\{\}", NUMBER), text)
    assert match, f"{text!r} does not read as {template!r}"
    return [float(g) for g in match.groups()]


def _shows(shown: list[float], values: list, digits: int | list[int] = 4) -> None:
    """Each shown number is its value rounded to `digits` significant digits (what fmt displays)."""
    digits = digits if isinstance(digits, list) else [digits] * len(values)
    assert len(shown) == len(values) == len(digits)
    for x, value, k in zip(shown, values, digits):
        half_unit = 0.5 * 10 ** (math.floor(math.log10(abs(value))) - k + 1)
        assert abs(x - value) <= half_unit * (1 + 1e-9), f"{x} shown for {value} ({k} digits)"


def _cell(text: str, value: float, ci=None) -> None:
    """A cell 'value [lo, hi]' (or 'value' where the fit has no interval) shows these numbers."""
    if ci is None:
        _shows(_numbers(text, "{}"), [value])
    else:
        _shows(_numbers(text, "{} [{}, {}]"), [value, *ci])


def test_parameter_table_matches_the_fit_json(report_dir):
    fit = json.loads((report_dir / "fit.json").read_text())["chinchilla"]
    rows = _md_rows((report_dir / "report.md").read_text(), "Fitted parameters")
    ours = [r for r in rows if r[0].startswith("this")]
    assert len(ours) == 1
    for cell, name in zip(ours[0][1:6], ["E", "A", "B", "alpha", "beta"]):
        _cell(cell, fit["params"][name], fit["ci95"][name])
    for cell, name in zip(ours[0][6:], ["a", "b"]):
        _cell(cell, fit["optimal"][name], fit["optimal"]["ci95"][name])
    # the published laws beside it, with a = beta/(alpha+beta) and b = alpha/(alpha+beta) of each
    published = {ref["title"]: ref for ref in load_published().values() if ref.get("form") == "chinchilla"}
    assert [r[0] for r in rows if not r[0].startswith("this")] == list(published)
    for row in rows[1:]:
        ref = published[row[0]]
        p = ref["params"]
        p = {**p, "a": p["beta"] / (p["alpha"] + p["beta"]), "b": p["alpha"] / (p["alpha"] + p["beta"])}
        for cell, name in zip(row[1:], ["E", "A", "B", "alpha", "beta", "a", "b"]):
            _cell(cell, p[name], ref.get("ci95", {}).get(name))
    # and the recovered law is the one the fixture was drawn from
    assert fit["params"]["alpha"] == pytest.approx(TRUE["alpha"], abs=0.08)
    assert fit["params"]["beta"] == pytest.approx(TRUE["beta"], abs=0.08)


LAW_OF = {"Approach 3 (parametric)": "chinchilla", "Approach 2 (isoFLOP)": "isoflop",
          "Approach 1 (envelope)": "envelope"}


def test_exponent_table_matches_the_fit_json(report_dir):
    fits = json.loads((report_dir / "fit.json").read_text())
    rows = _md_rows((report_dir / "report.md").read_text(), "Compute-optimal exponents")
    assert [r[0] for r in rows[:3]] == list(LAW_OF)
    for row in rows[:3]:
        fit = fits[LAW_OF[row[0]]]
        if fit["law"] == "chinchilla":
            (a, a_ci), (b, b_ci) = [(fit["optimal"][k], fit["optimal"]["ci95"][k]) for k in ("a", "b")]
        else:
            (a, a_ci), (b, b_ci) = [(fit[k]["exponent"], fit[k]["ci95"]) for k in ("n_opt", "d_opt")]
        _cell(row[1], a, a_ci)
        _cell(row[2], b, b_ci)
    iso = load_published()["isoflop_exponents"]
    assert rows[3][1:] == [f"{iso['chinchilla_approach1_a']} / {iso['chinchilla_approach2_a']}", "–"]
    assert rows[4] == ["Kaplan et al. 2020", str(load_published()["kaplan2020"]["n_opt_exponent"]), "–"]
    assert len(rows) == 5


def test_allocation_table_matches_the_fit_json(report_dir):
    fits = json.loads((report_dir / "fit.json").read_text())
    rows = _md_rows((report_dir / "report.md").read_text(), "Compute-optimal allocation")
    expected = [(label, p) for label, law in LAW_OF.items() for p in fits[law]["optimal"]["at"]]
    assert len(rows) == len(expected) == 9
    for row, (label, point) in zip(rows, expected):
        assert row[0] == label
        _shows(_numbers(row[1], "{}"), [point["flops"]], 3)
        ci = point.get("ci95", {})
        for cell, key in zip(row[2:], ("params", "tokens", "tokens_per_param", "loss")):
            if key not in point:  # a law that does not model the loss
                assert cell == "–"
            else:
                _cell(cell, point[key], ci.get(key))


def test_headline_matches_the_fit_json(report_dir):
    fits = json.loads((report_dir / "fit.json").read_text())
    md = (report_dir / "report.md").read_text()
    lines = [line[2:] for line in md.split("## Headline", 1)[1].split("\n## ", 1)[0].splitlines()
             if line.startswith("- ")]
    chin, iso = fits["chinchilla"], fits["isoflop"]
    p, ci = chin["params"], chin["ci95"]
    _shows(_numbers(lines[0], "L(N, D) = {} + {}/N^{} + {}/D^{}  (alpha [{}, {}], beta [{}, {}])"),
           [p["E"], p["A"], p["alpha"], p["B"], p["beta"], *ci["alpha"], *ci["beta"]], [4, 4, 3, 4, 3, 3, 3, 3, 3])
    exponents = "N_opt ∝ C^{} [{}, {}], D_opt ∝ C^{} [{}, {}]  "
    opt = chin["optimal"]
    _shows(_numbers(lines[1], exponents + "(Approach 3 (parametric))"),
           [opt["a"], *opt["ci95"]["a"], opt["b"], *opt["ci95"]["b"]], [3] * 6)
    _shows(_numbers(lines[2], exponents + "(Approach 2 (isoFLOP))"),
           [iso["n_opt"]["exponent"], *iso["n_opt"]["ci95"], iso["d_opt"]["exponent"], *iso["d_opt"]["ci95"]],
           [3] * 6)
    at = opt["at"]
    assert len(lines) == 3 + len(at) + 2
    # these runs have one seed each: the noise floor is reported as not measured, not as zero
    assert iso["noise"]["pooled"]["sd"] is None and lines[-2].startswith("noise floor: not measured")
    # budgets by default: the largest C measured x10, x100, and where N_opt reaches the largest size trained
    largest = float(pd.read_csv(report_dir / "runs.csv")["flops"].max())
    runs = pd.read_csv(report_dir / "runs.csv")
    scaled = [p for p in at if not any(abs(p["flops"] / (k * largest) - 1) < 1e-9 for k in (10, 100))]
    assert len(at) == 3 and len(scaled) == 1 and scaled[0]["params"] == pytest.approx(runs["params"].max(), rel=0.02)
    for line, point in zip(lines[3:], at):
        ci = point["ci95"]
        _shows(_numbers(line, "C = {}; {}x the largest C measured: N_opt {} [{}, {}], D_opt {} [{}, {}], D/N {}, "
                              "loss {} [{}, {}] (Approach 3 (parametric))"),
               [point["flops"], point["flops"] / largest, point["params"], *ci["params"], point["tokens"],
                *ci["tokens"], point["tokens_per_param"], point["loss"], *ci["loss"]], [3] * 9 + [4] * 3)
    held = fits["holdout_check"]["holdout"]
    summary, by_n = lines[-1].split("; by N: ")  # the error per held-out size follows the mean
    mean, worst, n = _numbers(summary, "held-out largest budget: mean |relative error| {}% (max {}%) over {} runs")
    assert by_n.count("%") == 5
    assert mean == pytest.approx(100 * held["mean_abs_rel_error"], abs=0.005)
    assert worst == pytest.approx(100 * held["max_abs_rel_error"], abs=0.005)
    assert n == held["n"] == 5
    page = (report_dir / "index.html").read_text()
    assert all(f"<li>{html.escape(line)}</li>" in page for line in lines)  # the page shows the same headline


def test_report_logs_an_analysis_run_to_wandb(report_dir, offline_run):
    rec = offline_run(str(report_dir / "wandb"), "chinchilla/alpha")
    keys = set().union(*rec["history"])
    assert {f"figures/{f}/_type" for f in FIGURES} <= keys  # one image per figure
    assert "chinchilla/alpha" in rec["summary"]


def test_the_analysis_run_logs_runs_fit_and_report_as_artifacts_and_names_its_input_runs(report_dir, offline_run):
    rec = offline_run(str(report_dir / "wandb"), "headline")
    found = {a["type"]: a for a in rec["artifacts"]}
    assert {"runs-table", "scaling-fit", "report"} <= set(found)  # (W&B adds its own run_table ones for tables)
    assert found["runs-table"]["files"] == ["runs.csv"] and found["scaling-fit"]["files"] == ["fit.json"]
    assert {"index.html", "report.md"} <= set(found["report"]["files"])
    figure_files = {f"figures/{f}.{ext}" for f in FIGURES for ext in ("png", "svg")}
    assert figure_files <= set(found["report"]["files"])
    # the staged copies W&B uploads on `wandb sync` hold exactly the report's files
    staged = found["scaling-fit"]["local_paths"]["fit.json"]
    assert json.load(open(staged)) == json.loads((report_dir / "fit.json").read_text())
    # offline W&B cannot use an artifact, so the inputs are named in the config and the table's metadata
    run_ids = sorted(set(pd.read_csv(report_dir / "runs.csv")["run_id"]))
    assert rec["config"]["inputs"]["runs"] == run_ids == found["runs-table"]["metadata"]["runs"]


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


def test_dashboard_report_offline_writes_the_report_spec_with_the_figures_and_tables(report_dir, tmp_path, capsys):
    assert main(["dashboard", "--sweep", "demo", "--out", str(tmp_path), "--report", str(report_dir)]) == 0
    assert "the report definition" in capsys.readouterr().out
    spec = json.loads((tmp_path / "report-demo.json").read_text())
    assert spec["figures"] == sorted(f"figures/{name}" for name in FIGURES)  # as the analysis run logged them
    assert spec["runset"] == {"JobType": "analysis", "Group": "demo"}
    rows = [line for line in (report_dir / "report.md").read_text().splitlines() if line.startswith("| ")]
    assert rows and all(row in spec["markdown"] for row in rows)  # the tables, row for row
    assert "](figures/" not in spec["markdown"]  # no links into a folder W&B cannot see
    # what would be pushed online: a panel per figure over the analysis run, then the text and tables
    from scaling.report.dashboard import build_report

    report = build_report(spec, "alice")
    grid, text = report.blocks
    assert [p.media_keys for p in grid.panels] == [[key] for key in spec["figures"]]
    assert text.text == spec["markdown"] and report.title == spec["title"]


def test_dashboard_report_refuses_a_folder_that_is_not_a_report(tmp_path, capsys):
    assert main(["dashboard", "--sweep", "demo", "--out", str(tmp_path / "o"), "--report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a report folder" in err
