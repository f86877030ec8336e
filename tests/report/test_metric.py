"""Fits and reports on bits per byte (`--metric bpb`): the `eval_bpb` column is what gets fitted, runs
without it are left out and said so, and the report names the metric it used."""
import json
import math

import numpy as np
import pandas as pd
import pytest
from laws_synth import TRUE, isoflop_table

from scaling.cli import main
from scaling.errors import UsageError
from scaling.laws import load_runs

BYTES_PER_TOKEN = 3.7  # a BPE corpus: bits per byte = nats per token / (ln 2 x bytes per token)


@pytest.fixture
def bpb_csv(tmp_path):
    runs = isoflop_table(budgets=(1e18, 1e19, 1e20), sizes=7, noise=0.002)
    runs["eval_bpb"] = runs["loss"] / (math.log(2) * BYTES_PER_TOKEN)
    runs.loc[0, "eval_bpb"] = np.nan  # a run on a corpus without byte counts
    path = tmp_path / "runs.csv"
    runs.to_csv(path, index=False)
    return str(path), runs


def test_metric_bpb_fits_the_eval_bpb_column_and_drops_runs_without_it(bpb_csv):
    path, runs = bpb_csv
    table = load_runs(path, metric="bpb")
    assert table.metric == "bpb" and table.n_points == len(runs) - 1 and table.dropped == {"missing values": 1}
    np.testing.assert_allclose(table.column("loss"), runs["eval_bpb"].to_numpy()[1:])
    assert "loss_nats" in table.frame.columns
    with pytest.raises(UsageError, match="metric='bpb': the runs table .* has no 'eval_bpb' column"):
        load_runs(runs.drop(columns=["eval_bpb"]), metric="bpb")


def test_fit_on_bits_per_byte_scales_e_a_b_and_keeps_the_exponents(bpb_csv, capsys):
    path, _ = bpb_csv
    fits = {}
    for metric in ("loss", "bpb"):
        assert main(["fit", path, "--metric", metric, "--bootstrap", "0", "--json", "-"]) == 0
        out, err = capsys.readouterr()
        fits[metric] = json.loads(out)
        assert fits[metric]["metric"] == metric
        assert ("loss = eval bits per byte" in err) == (metric == "bpb")
    nats, bpb = fits["loss"]["params"], fits["bpb"]["params"]
    k = math.log(2) * BYTES_PER_TOKEN
    # a constant factor on the loss moves E, A and B by it and leaves the exponents where they were
    assert bpb["E"] == pytest.approx(nats["E"] / k, rel=2e-2) and nats["E"] == pytest.approx(TRUE["E"], rel=5e-2)
    for name in ("alpha", "beta"):
        assert bpb[name] == pytest.approx(nats[name], rel=2e-2)


@pytest.mark.slow  # a whole report (8 s): out of the fast suite
def test_report_on_bits_per_byte_says_so_and_lists_the_runs_left_out(bpb_csv, tmp_path):
    path, runs = bpb_csv
    spec = tmp_path / "spec.yaml"
    spec.write_text("laws: [chinchilla, isoflop]\nholdout: none\nbudgets: [1e21]\n")
    out = tmp_path / "report"
    assert main(["report", str(spec), path, "--out", str(out), "--bootstrap", "0", "--wandb", "off",
                 "--metric", "bpb"]) == 0
    md = (out / "report.md").read_text()
    assert "Loss: final eval loss in bits per byte (eval_bpb)" in md
    assert "bits per byte" in (out / "index.html").read_text()
    assert runs.loc[0, "run_id"] not in set(pd.read_csv(out / "runs.csv")["run_id"])
    fit = json.loads((out / "fit.json").read_text())
    assert fit["metric"] == "bpb"
    assert fit["chinchilla"]["params"]["E"] == pytest.approx(TRUE["E"] / (math.log(2) * BYTES_PER_TOKEN), rel=5e-2)
    bad = tmp_path / "bad.yaml"
    bad.write_text("metric: bits\n")
    assert main(["report", str(bad), path, "--out", str(tmp_path / "r2"), "--wandb", "off"]) == 2
