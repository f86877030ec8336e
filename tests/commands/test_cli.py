import subprocess
import sys

import pytest

from scaling.cli import main


@pytest.mark.parametrize("command", [[], ["train"], ["family"], ["bench"], ["demo"], ["fit"], ["report"],
                                     ["dashboard"], ["sweep"], ["sweep", "agent"], ["runs"]])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: scaling" in capsys.readouterr().out


def test_help_answers_without_importing_jax():
    code = "import sys; from scaling.cli import main\ntry: main(['--help'])\nexcept SystemExit: pass\n" \
           "print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().endswith("False")


def test_fit_command_offers_exactly_the_laws_the_library_fits():
    from scaling import laws
    from scaling.commands import fit as fitcmd

    assert fitcmd.LAWS == laws.LAWS


def test_family_prints_exact_counts_for_each_target(capsys):
    from scaling.family import shape_for_params

    assert main(["family", "1e4", "1e5", "1e6", "1e7", "1e9"]) == 0
    out = capsys.readouterr().out
    for target in (1e4, 1e5, 1e6, 1e7, 1e9):
        s = shape_for_params(target)
        assert f"{s.params:,}" in out and f"{s.params_nonembed:,}" in out and s.describe() in out


def test_family_refuses_non_numbers(capsys):
    assert main(["family", "big"]) == 2
    assert "sizes must be numbers" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the demo is ~5 min on 2 idle cores (README), run twice; 16 min seen on busy ones
def test_demo_runs_the_sweep_fits_and_writes_the_report(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["--home", str(tmp_path / "runs"), "demo", "--out", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    assert "N_opt ∝ C^" in out and "report:" in out and "C = 1.00e+12" in out
    assert (tmp_path / "report" / "index.html").exists()
    figures = {p.stem for p in (tmp_path / "report" / "figures").glob("*.png")}
    assert {"training_curves", "isoflop_profiles", "compute_optimal", "loss_contours", "predicted_vs_observed",
            "holdout"} <= figures
    # A second run reuses every finished run: nothing is trained or rewritten. (Not timed: its second
    # agent process alone spends seconds importing before it finds the queue empty.)
    summaries = {p: p.read_bytes() for p in (tmp_path / "runs").glob("*/summary.json")}
    assert len(summaries) == 23  # sweeps/demo.yaml: 5 long runs, their 12 cooldown branches, 6 seed replicates
    assert main(["--home", str(tmp_path / "runs"), "demo", "--out", str(tmp_path / "report")]) == 0
    assert "continuing, 23 runs already done" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in (tmp_path / "runs").glob("*/summary.json")} == summaries
