"""Issue #23: a run home keeps its own names, survives one damaged run's files, and refuses sizes that
would exhaust it: a run_id that is the index's name, a summary.json that is a list or a config.yaml that
is not a mapping under `runs --reindex`, `seeds:` past the sweep cap, and YAML aliases that expand to a
billion values."""
import json
import os
import time

import pytest
import yaml
from faultlib import COMMAND, TINY_SWEEP, tree

from scaling.cli import main
from scaling.runs import RunHome

T = ["d_model=16", "seq_len=32", "batch_size=4", "eval_tokens=256", "n_evals=3", "wandb=off", "tokens=1e3"]


def _one_line_exit_2(capsys, argv) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert (rc, len(lines)) == (2, 1) and "Traceback" not in err, err
    return lines[0]


# ---- item 7: the home's own names -----------------------------------------------------------------------

@pytest.mark.parametrize("run_id", ["scaling.db", "scaling.db-wal", "scaling.db-shm", "scaling.db-journal",
                                    "Scaling.DB", ".sweeps", ".seeding", ".slurm"])
def test_a_run_id_the_home_keeps_for_itself_is_refused_and_makes_no_folder(tmp_path, capsys, run_id):
    home = str(tmp_path / "home")
    line = _one_line_exit_2(capsys, ["--home", home, "train", *T, f"run_id={run_id}"])
    assert run_id in line and ("reserved" in line or "not '.' first" in line)
    assert not os.path.exists(home)  # before: a folder scaling.db/ where the index belongs


def test_a_home_with_runs_keeps_its_index_when_a_reserved_run_id_is_tried(home, capsys):
    assert main(["--home", home, "train", *T, "run_id=kept", "--quiet"]) == 0
    capsys.readouterr()
    for reserved in ("scaling.db-journal", "scaling.db-wal"):
        _one_line_exit_2(capsys, ["--home", home, "train", *T, f"run_id={reserved}"])
        assert not os.path.isdir(os.path.join(home, reserved))
    assert main(["--home", home, "runs"]) == 0  # the index still opens and lists the run
    assert "kept" in capsys.readouterr().out


def test_the_run_home_refuses_a_folder_for_a_reserved_name_whoever_asks(home):
    from scaling.errors import UsageError

    with pytest.raises(UsageError, match="reserved"):
        RunHome(home).run_dir("scaling.db")
    assert RunHome(home).run_dir("scaling.dbx").endswith("scaling.dbx")


# ---- runs --reindex over damaged files ------------------------------------------------------------------

DAMAGE = {
    "summary a list": ("summary.json", "[1, 2]\n"),
    "summary a number": ("summary.json", "7\n"),
    "summary status unknown": ("summary.json", json.dumps({"status": ["complete"]})),
    "config a list": ("config.yaml", "- 1\n- 2\n"),
    "config of a number": ("config.yaml", "config: 5\n"),
    "config of aliases": ("config.yaml", "config: {name: [&a [x, x, x, x, x, x, x, x, x, x], " + ", ".join(
        f"&{c} [{', '.join([f'*{p}'] * 10)}]" for p, c in zip("abcde", "bcdef")) + "]}\n"),
}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    home = str(tmp_path_factory.mktemp("reindex") / "home")
    for run_id in ("good", "bad"):
        assert main(["--home", home, "train", *T, f"run_id={run_id}", "--quiet"]) == 0
    return home


@pytest.mark.parametrize("damage", DAMAGE)
def test_reindex_skips_and_names_one_damaged_run_and_indexes_the_rest(two_runs, tmp_path, capsys, damage):
    import shutil

    home = str(tmp_path / "home")
    shutil.copytree(two_runs, home)
    for name in os.listdir(home):
        if name.startswith("scaling.db"):
            os.remove(os.path.join(home, name))
    name, text = DAMAGE[damage]
    with open(os.path.join(home, "bad", name), "w") as fh:
        fh.write(text)
    start = time.monotonic()
    capsys.readouterr()
    assert main(["--home", home, "runs", "--reindex"]) == 0
    out, err = capsys.readouterr()
    assert time.monotonic() - start < 60
    skipped = [line for line in err.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 1 and "run bad:" in skipped[0] and name in skipped[0], err
    assert "Traceback" not in err
    assert "good" in out and RunHome(home).indexed_run("good").status == "complete"
    assert RunHome(home).indexed_run("bad") is None


def test_reindex_keeps_the_row_of_a_run_whose_summary_was_damaged(two_runs, tmp_path, capsys):
    import shutil

    home = str(tmp_path / "home")
    shutil.copytree(two_runs, home)
    with open(os.path.join(home, "bad", "summary.json"), "w") as fh:
        fh.write("[]")
    assert main(["--home", home, "runs", "--reindex"]) == 0
    assert "skipped run bad" in capsys.readouterr().err
    assert RunHome(home).indexed_run("bad").status == "complete"  # not reset, not dropped


# ---- limits: seeds and YAML aliases ---------------------------------------------------------------------

def _spec(path, **top) -> str:
    spec = {"name": "s", "method": "grid", "command": COMMAND,
            "parameters": {**TINY_SWEEP, "tokens": {"value": 320}, **top.pop("parameters", {})}, **top}
    path.write_text(yaml.safe_dump(spec))
    return str(path)


@pytest.mark.parametrize("seeds, lr_values, told", [
    (100_000_000, 1, "seeds: 100,000,000 replicates per point; allowed: at most 10,000"),
    (5, 2_500, "12,500 runs (2,500 points with seeds: 5); allowed: at most 10,000"),
])
def test_seeds_count_against_the_sweep_cap(tmp_path, capsys, seeds, lr_values, told):
    lr = {"values": [round(1e-4 * (i + 1), 8) for i in range(lr_values)]}
    spec = _spec(tmp_path / "seeds.yaml", seeds=seeds, parameters={"lr": lr})
    home = str(tmp_path / "home")
    before = tree(tmp_path)
    start = time.monotonic()
    line = _one_line_exit_2(capsys, ["--home", home, "sweep", "create", spec])
    assert told in line and time.monotonic() - start < 60
    assert tree(tmp_path) == before  # nothing registered


def _laughs(levels: int) -> str:
    """A YAML list of `levels` nested aliases, each ten of the one before: 10**levels strings."""
    parts = ['&a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    parts += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return f"[{', '.join(parts)}]"


@pytest.mark.parametrize("argv", [["sweep", "create"], ["train"]])
def test_a_billion_laughs_yaml_is_refused_quickly_in_one_line(tmp_path, capsys, argv):
    path = tmp_path / "laughs.yaml"
    if argv[0] == "sweep":
        text = yaml.safe_dump({"name": "s", "method": "grid", "command": COMMAND, "parameters": TINY_SWEEP})
        path.write_text(text + f"description: {_laughs(9)}\n")
    else:
        path.write_text(f"d_model: 16\ntokens: 1e3\nname: {_laughs(9)}\n")
    home = str(tmp_path / "home")
    start = time.monotonic()
    line = _one_line_exit_2(capsys, ["--home", home, *argv, str(path)])
    assert "aliases expand to more than 200,000 values" in line and time.monotonic() - start < 20
    assert not os.path.exists(home)


def test_a_yaml_alias_that_contains_itself_is_refused_in_one_line(tmp_path, capsys):
    path = tmp_path / "loop.yaml"
    path.write_text("d_model: 16\ntokens: 1e3\nname: &a [*a]\n")
    assert "an alias refers to a value that contains it" in _one_line_exit_2(
        capsys, ["--home", str(tmp_path / "home"), "train", str(path)])


def test_yaml_aliases_of_an_ordinary_size_still_load(tmp_path):
    from scaling.config import load_yaml

    path = tmp_path / "shared.yaml"
    path.write_text("base: &b {d_model: 16, seq_len: 32}\nsmall: *b\nlarge: {<<: *b, d_model: 64}\n")
    assert load_yaml(str(path))["large"] == {"d_model": 64, "seq_len": 32}
