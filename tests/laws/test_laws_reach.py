"""A budget asked of a law (`at=`, the command's --at) outside [smallest C measured / 1e6, largest x 1e6]
warns with its extrapolation factor (issue #23); inside that reach a fit is silent."""
import warnings

import pytest
from laws_synth import isoflop_table

from scaling.laws import fit, load_runs
from scaling.laws.table import ExtrapolationWarning


@pytest.fixture(scope="module")
def table():
    return load_runs(isoflop_table(noise=0.001))


def test_a_budget_past_a_million_times_the_largest_compute_warns_with_its_factor(table):
    hi = table.column("flops").max()
    with pytest.warns(ExtrapolationWarning) as caught:
        fit(table, "isoflop", bootstrap=0, budgets=[1e20, 1e28])
    [w] = caught
    factor = 1e28 / hi
    assert str(w.message).startswith(f"at=1e+28 FLOPs is {factor:.3g} times the largest compute measured")


def test_a_budget_under_a_millionth_of_the_smallest_compute_warns(table):
    with pytest.warns(ExtrapolationWarning, match=r"^at=1e\+10 FLOPs is .* times the smallest compute measured"):
        fit(table, "isoflop", bootstrap=0, budgets=[1e10])


def test_budgets_within_the_reach_fit_without_a_warning(table):
    flops = table.column("flops")
    inside = [flops.min() / 1e6 * 1.01, 1e20, flops.max() * 1e6 * 0.99]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExtrapolationWarning)
        result = fit(table, "isoflop", bootstrap=0, budgets=inside)
    assert len(result.optimal.at) == 3


def test_fit_command_says_the_reach_warning_in_its_flag_and_prints_no_raw_warning(table, tmp_path, capsys):
    from scaling.cli import main

    csv = tmp_path / "runs.csv"
    table.frame.to_csv(csv, index=False)
    assert main(["fit", str(csv), "--law", "isoflop", "--bootstrap", "0", "--at", "1e28"]) == 0
    err = capsys.readouterr().err
    assert "warning: --at 1e+28 FLOPs is" in err
    assert "ExtrapolationWarning" not in err and "warnings.warn" not in err
