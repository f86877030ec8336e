"""The domains section's figures: the mixing law with a panel per scale, the accuracy sigmoid with the
budgets it was carried to; each written as PNG and SVG."""
import pandas as pd
from domains_synth import accuracy_table, mixture_table
from matplotlib.image import imread

from scaling.laws import LossAtBudget, fit_accuracy, fit_mixture
from scaling.report.domain_figures import accuracy_figure, mixture_figure


def test_the_mixture_figure_has_a_panel_per_scale(tmp_path):
    one = fit_mixture(mixture_table(k=10, seed=3), bootstrap=0, holdout=2)
    two = fit_mixture(pd.concat([mixture_table(k=10, seed=3, extra={"flops_budget": 1e17}),
                                 mixture_table(k=10, seed=4, extra={"flops_budget": 6e17})]), bootstrap=0)
    a = mixture_figure(one, str(tmp_path / "one"))
    b = mixture_figure(two, str(tmp_path / "two"))
    width = lambda f: imread(f.png).shape[1]  # noqa: E731
    assert 1.8 < width(b) / width(a) < 2.2
    assert (tmp_path / "two" / "figures" / "mixture.svg").exists() and "held-out mixtures" in b.caption


def test_the_accuracy_figure_is_written(tmp_path):
    result = fit_accuracy(accuracy_table(n=20), "mc", fixed={"floor": 0.25}, bootstrap=20,
                          budgets=[LossAtBudget(1e21, 2.2, (2.1, 2.3))])
    figure = accuracy_figure(result, str(tmp_path))
    assert imread(figure.png).shape[0] > 100 and figure.svg.endswith("accuracy.svg")
    assert "mc" in figure.caption
