"""`scaling runs --from-wandb`: the runs table of a sweep that lives only in W&B, read through the real
`wandb.Api` client against a stand-in server that answers with responses in W&B's own shape."""
import json

import pandas as pd
import pytest
from fake_wandb import FakeWandbServer, recorded

from scaling.cli import main
from scaling.runs import RUN_COLUMNS

SWEEP = "alice/scaling/7ke2hq9d"


@pytest.fixture(autouse=True)
def fresh_wandb():
    """wandb keeps the settings it first read (the server's URL among them) for the whole process."""
    import wandb

    wandb.teardown()
    yield
    wandb.teardown()


@pytest.fixture
def server(monkeypatch, tmp_path):
    with FakeWandbServer([recorded("runs_page1.json"), recorded("runs_page2.json")]) as fake:
        monkeypatch.setenv("WANDB_BASE_URL", fake.url)
        monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
        monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "cache"))
        yield fake


def recorded_runs() -> list[dict]:
    nodes = [e["node"] for page in ("runs_page1.json", "runs_page2.json")
             for e in recorded(page)["data"]["project"]["runs"]["edges"]]
    return [dict(n, summaryMetrics=json.loads(n["summaryMetrics"]), config=json.loads(n["config"])) for n in nodes]


def test_from_wandb_builds_the_runs_table_from_every_page_of_finished_runs(server, tmp_path, capsys):
    out = tmp_path / "runs.csv"
    assert main(["runs", "--from-wandb", SWEEP, "--csv", str(out)]) == 0
    table = pd.read_csv(out)
    assert list(table.columns) == RUN_COLUMNS  # the local table's columns, so fit and report read it
    with_loss = [r for r in recorded_runs() if "eval_loss" in r["summaryMetrics"]]
    assert len(table) == len(with_loss) == 9
    for run in with_loss:
        row = table.set_index("run_id").loc[run["name"]]
        s = run["summaryMetrics"]
        assert row["loss"] == pytest.approx(s["eval_loss"])
        for column in ("params", "params_nonembed", "tokens", "flops", "flops_model", "lr", "batch_size", "seed",
                       "wall_s", "corpus_fingerprint"):
            assert row[column] == pytest.approx(s[column]) if isinstance(s[column], float) else row[column] == s[column]
        assert row["sweep_id"] == "7ke2hq9d" and row["status"] == "complete"
    err = capsys.readouterr().err
    assert "9 finished runs (1 finished without a finite eval loss left out)" in err
    queries = server.runs_queries()
    assert len(queries) == 2  # the second page was asked for with the first page's end cursor
    assert queries[1]["variables"]["cursor"] == recorded("runs_page1.json")["data"]["project"]["runs"]["pageInfo"][
        "endCursor"]
    asked = queries[0]["variables"]
    assert (asked["entity"], asked["project"]) == ("alice", "scaling")
    assert json.loads(asked["filters"]) == {"state": "finished", "sweep": "7ke2hq9d"}


def test_a_table_from_wandb_is_what_fit_reads(server, tmp_path, capsys):
    out = tmp_path / "runs.csv"
    assert main(["runs", "--from-wandb", SWEEP, "--csv", str(out)]) == 0
    fit_json = tmp_path / "fit.json"
    # Chinchilla's law, not isoFLOP parabolas: one of the recorded sweep's three budgets has its minimum at
    # the edge of its sizes, and an isoFLOP exponent needs three inside.
    assert main(["fit", str(out), "--law", "chinchilla", "--bootstrap", "0", "--json", str(fit_json)]) == 0
    fit = json.loads(fit_json.read_text())
    assert fit["n_points"] == 9 and fit["params"]["alpha"] > 0 and fit["params"]["beta"] > 0


def test_n_d_and_c_come_from_the_config_when_the_summary_lacks_them(monkeypatch, tmp_path):
    page = recorded("runs_page2.json")
    node = page["data"]["project"]["runs"]["edges"][0]["node"]
    summary = json.loads(node["summaryMetrics"])
    config = {k: v["value"] for k, v in json.loads(node["config"]).items()}
    for key in ("params", "tokens", "flops"):
        del summary[key]
    node["summaryMetrics"] = json.dumps(summary)
    page["data"]["project"]["runs"]["edges"] = [page["data"]["project"]["runs"]["edges"][0]]
    page["data"]["project"]["runCount"] = 1
    with FakeWandbServer([page]) as fake:
        for key, value in (("WANDB_BASE_URL", fake.url), ("WANDB_API_KEY", "k" * 40), ("NO_PROXY", "127.0.0.1")):
            monkeypatch.setenv(key, value)
        out = tmp_path / "one.csv"
        assert main(["runs", "--from-wandb", "alice/scaling", "--csv", str(out)]) == 0
    row = pd.read_csv(out).iloc[0]
    assert (row["params"], row["tokens"], row["flops"]) == (config["N"], config["D"], pytest.approx(config["C"]))
    assert json.loads(fake.runs_queries()[0]["variables"]["filters"]) == {"state": "finished"}


@pytest.mark.parametrize("path", ["alice", "alice/", "alice/scaling/sweep/extra", "/scaling/x"])
def test_a_malformed_wandb_path_is_a_one_line_error(path, capsys):
    assert main(["runs", "--from-wandb", path]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ENTITY/PROJECT" in err


def test_from_wandb_refuses_options_that_read_the_run_home(capsys):
    assert main(["runs", "--from-wandb", SWEEP, "--sweep", "x"]) == 2
    assert "--sweep does not apply to --from-wandb" in capsys.readouterr().err


def test_from_wandb_without_credentials_says_how_to_log_in(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens: no login can reach it
    assert main(["runs", "--from-wandb", SWEEP]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "wandb login" in err
