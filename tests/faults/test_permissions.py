"""Issue #11 item 7: files written atomically get the mode the umask gives any new file (not mkstemp's
0600): summary.json, config.yaml, the sweep files, the report's files."""
import os
import stat

import pytest
import yaml
from faultlib import COMMAND, TINY_SWEEP
from reportlib import SPEC, isoflop_table

from scaling.cli import main
from scaling.runs import write_atomic


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077, 0o027])
def test_write_atomic_gives_a_new_file_the_mode_of_the_umask(tmp_path, umask, mask):
    umask(mask)
    path = tmp_path / "f.json"
    write_atomic(str(path), "{}")
    assert _mode(path) == 0o666 & ~mask
    write_atomic(str(path), "{}")  # and a replaced file too
    assert _mode(path) == 0o666 & ~mask


@pytest.mark.slow  # 4-5 s (trains or writes a whole report): the fast suite stays under 3 minutes
def test_a_run_a_sweep_and_a_report_are_readable_as_the_umask_says(tmp_path, home, tiny, umask, capsys):
    umask(0o002)
    assert main(["--home", home, "train", *tiny, "tokens=640", "run_id=m", "wandb=off", "--quiet"]) == 0
    for name in ("summary.json", "config.yaml", "metrics.jsonl"):
        assert _mode(os.path.join(home, "m", name)) == 0o664, name
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"name": "s", "method": "grid", "command": COMMAND,
                                    "parameters": {**TINY_SWEEP, "tokens": {"value": 320}}}))
    assert main(["--home", home, "sweep", "create", str(spec)]) == 0
    sweep_files = os.listdir(os.path.join(home, ".sweeps"))
    assert sweep_files and all(_mode(os.path.join(home, ".sweeps", f)) == 0o664 for f in sweep_files)

    csv, spec = tmp_path / "runs.csv", tmp_path / "report.yaml"
    isoflop_table().to_csv(csv, index=False)
    spec.write_text(SPEC)
    out = tmp_path / "report"
    assert main(["report", str(spec), str(csv), "--out", str(out), "--wandb", "off"]) == 0
    assert main(["fit", str(csv), "--law", "isoflop", "--bootstrap", "0", "--json", str(tmp_path / "fit.json")]) == 0
    assert main(["--home", home, "runs", "--csv", str(tmp_path / "table.csv")]) == 0
    written = [out / n for n in ("index.html", "report.md", "fit.json", "runs.csv")] + [
        tmp_path / "fit.json", tmp_path / "table.csv"] + sorted((out / "figures").iterdir())
    assert len(written) > 6
    assert {str(p): oct(_mode(p)) for p in written} == {str(p): oct(0o664) for p in written}
    assert _mode(out / "figures") == 0o775 and _mode(out) == 0o775
    capsys.readouterr()
