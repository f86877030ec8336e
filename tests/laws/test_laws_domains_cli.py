"""`scaling fit --law mixture|loss-to-loss|accuracy`: the happy paths write a fit JSON whose every key is in
docs/contracts.md; every bad input exits 2 with one line that names the flag."""
import json
import re
from pathlib import Path

import pytest
from domains_synth import accuracy_table, loss_to_loss_table, mixture_table

from scaling.cli import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "contracts.md"


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    root = tmp_path_factory.mktemp("domains")
    paths = {"mix": root / "mix.csv", "l2l": root / "l2l.parquet", "acc": root / "acc.csv"}
    mixture_table(k=12, seeds=2).to_csv(paths["mix"], index=False)
    loss_to_loss_table(n=20, seeds=2).to_parquet(paths["l2l"])
    accuracy_table(n=20).to_csv(paths["acc"], index=False)
    fit = {"law": "chinchilla", "optimal": {"at": [{"flops": 1e21, "loss": 2.4, "ci95": {"loss": [2.3, 2.5]}}]}}
    paths["loss_fit"] = root / "loss.json"
    paths["loss_fit"].write_text(json.dumps(fit))
    return paths


def _keys(obj) -> set[str]:
    if isinstance(obj, dict):
        return {k for k in obj if not k.startswith(("t[", "eval/", "task/"))} | {
            x for k, v in obj.items() if k not in ("t", "proportions", "proportions_ci95", "losses", "losses_ci95",
                                                  "target", "noise_sd", "holdout", "dropped", "ci95", "params", "fixed")
            for x in _keys(v)} | {x for k, v in obj.items() if k == "holdout" and v for x in _holdout_keys(v)}
    if isinstance(obj, list):
        return {x for v in obj for x in _keys(v)}
    return set()


def _holdout_keys(h) -> set[str]:
    inner = next(iter(h.values())) if "runs" not in h else h  # mixture: per domain
    return set(inner)


def _fit_json_section() -> set[str]:
    text = DOC.read_text()
    body = re.search(r"^## The fit JSON\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S).group(1)
    return set(re.findall(r"`([^`]+)`", body))


@pytest.mark.parametrize("law,table,argv", [
    ("mixture", "mix", ["--holdout", "2", "--target", "code=1,prose=1"]),
    ("loss-to-loss", "l2l", ["--x", "a", "--y", "b", "--holdout", "2", "--fix", "E_x=1.5"]),
    ("accuracy", "acc", ["--task", "mc", "--fix", "floor=0.25", "--loss-fit", "{loss_fit}", "--holdout", "2"]),
])
def test_each_law_prints_and_writes_a_documented_fit_json(tables, tmp_path, capsys, law, table, argv):
    out_json = tmp_path / "fit.json"
    argv = [a.format(loss_fit=tables["loss_fit"]) for a in argv]
    assert main(["fit", str(tables[table]), "--law", law, "--bootstrap", "20", "--json", str(out_json), *argv]) == 0
    out = capsys.readouterr().out
    assert "95% interval" in out and "holdout" in out and f"wrote {out_json}" in out
    fit = json.loads(out_json.read_text())
    assert fit["law"] == law and fit["bootstrap"] == 20
    undocumented = sorted(_keys(fit) - _fit_json_section())
    assert undocumented == [], f"fit JSON keys of law {law} not in docs/contracts.md 'The fit JSON'"
    if law == "accuracy":
        (at,) = fit["at"]
        assert at["flops"] == 1e21 and at["ci95"][0] < at["accuracy"] < at["ci95"][1]


def test_the_json_alone_goes_to_stdout_with_dash(tables, capsys):
    assert main(["fit", str(tables["l2l"]), "--law", "loss-to-loss", "--x", "a", "--y", "b", "--bootstrap", "0",
                 "--json", "-"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["law"] == "loss-to-loss" and "kappa" in captured.err


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("scaling fit: error: "), err
    return err[len("scaling fit: error: "):]


@pytest.mark.parametrize("table,argv,shown", [
    ("mix", ["--law", "mixture", "--holdout", "9"], "--holdout 9: leaves 3 points to fit; the law needs 5"),
    ("mix", ["--law", "mixture", "--target", "code=x"], "--target 'code=x': expected DOMAIN=WEIGHT"),
    ("mix", ["--law", "mixture", "--target", "zz=1"], "--target zz=1: 'zz' is not an evaluation domain"),
    ("mix", ["--law", "mixture", "--domains", "zz"], "--domains zz: no column 'eval/zz/loss' or 'zz'"),
    ("mix", ["--law", "mixture", "--fix", "c=1"], "--fix does not apply to law mixture"),
    ("mix", ["--law", "mixture", "--at", "1e21"], "--at does not apply to law mixture"),
    ("mix", ["--law", "mixture", "--x", "code"], "--x does not apply to law mixture"),
    ("mix", ["--law", "mixture", "--metric", "bpb"], "--metric does not apply to law mixture"),
    ("mix", ["--law", "mixture", "--bootstrap", "-1"], "--bootstrap must be 0 or more"),
    ("l2l", ["--law", "loss-to-loss", "--x", "a"], "--law loss-to-loss needs --x NAME and --y NAME"),
    ("l2l", ["--law", "loss-to-loss", "--x", "a", "--y", "zz"], "--y zz: no column 'eval/zz/loss' or 'zz'"),
    ("l2l", ["--law", "loss-to-loss", "--x", "a", "--y", "a"], "--y a: is the same column as x"),
    ("l2l", ["--law", "loss-to-loss", "--x", "a", "--y", "b", "--fix", "kappa=1"],
     "--fix kappa: law loss-to-loss holds only E_x or E_y fixed"),
    ("acc", ["--law", "accuracy"], "--law accuracy needs --task NAME"),
    ("acc", ["--law", "accuracy", "--task", "mc", "--huber-delta", "0.1"], "--huber-delta does not apply to law"),
    ("acc", ["--law", "accuracy", "--task", "zz"], "--task zz: no column 'task/zz/acc'"),
    ("acc", ["--law", "accuracy", "--task", "mc", "--fix", "s=2"], "--fix s: law accuracy holds only floor or ceil"),
    ("acc", ["--law", "accuracy", "--task", "mc", "--at", "1e21"], "--at with law accuracy picks budgets of"),
    ("acc", ["--law", "accuracy", "--task", "mc", "--loss-fit", "{loss_fit}", "--at", "1e20"],
     "--at 1e+20: the loss fit has no loss at 1e+20 FLOPs"),
    ("acc", ["--law", "accuracy", "--task", "mc", "--loss-fit", "{missing}"], "--loss-fit {missing}: cannot read"),
    ("acc", ["--law", "chinchilla", "--task", "mc"], "--task applies to laws mixture, loss-to-loss, accuracy only"),
])
def test_bad_input_is_one_line_naming_the_flag(tables, tmp_path, capsys, table, argv, shown):
    names = {"loss_fit": tables["loss_fit"], "missing": tmp_path / "missing.json"}
    fill = lambda text: text.replace("{loss_fit}", str(names["loss_fit"])).replace(  # noqa: E731
        "{missing}", str(names["missing"]))
    err = _error(capsys, ["fit", str(tables[table]), "--bootstrap", "0", *map(fill, argv)])
    assert err.startswith(fill(shown)), err


def test_the_command_offers_the_laws_scaling_laws_has():
    from scaling import laws
    from scaling.commands import fit_domains

    assert fit_domains.DOMAIN_LAWS == laws.DOMAIN_LAWS


def test_help_lists_the_domain_laws_and_their_flags(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    out = capsys.readouterr().out
    for word in ("mixture", "loss-to-loss", "accuracy", "--target", "--task", "--loss-fit", "--x NAME"):
        assert word in out, word
