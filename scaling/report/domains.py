"""The report's domains section, drawn when the runs have several evaluation sets, mixtures or tasks
(docs/contracts.md "The runs table": `eval/<d>/loss`, `mix/<d>`, `task/<t>/acc`): the data mixing law's
best mixture per scale with its predicted-against-observed figure (held-out mixtures hollow), the
loss-to-loss law of every pair of domains, and each task's accuracy as a sigmoid of the loss.

A law these runs cannot support is listed as not fitted with its reason, as the report does for the
loss laws; a report whose runs have none of these columns has no domains section."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from scaling.display import number as fmt
from scaling.errors import UsageError
from scaling.laws import fit_accuracy, fit_mixture, fit_pairs
from scaling.report.domain_figures import accuracy_figure, loss_to_loss_figure, mixture_figure
from scaling.report.section import Section
from scaling.report.tables import fmt_ci

HELD_OUT = 2  # mixtures per scale the mixing law predicts unseen, when it has enough to spare


@dataclass
class DomainSection(Section):
    """The laws across domains (mixtures, loss-to-loss, accuracy): their lines, figures and tables."""


def columns_of(runs: pd.DataFrame) -> tuple[list[str], list[str], list[str]]:
    """(training domains of mix/<d>, evaluation domains of eval/<d>/loss, tasks of task/<t>/acc)."""
    parts = [str(c).split("/") for c in runs.columns]
    mix = sorted(p[1] for p in parts if len(p) == 2 and p[0] == "mix")
    evals = sorted(p[1] for p in parts if len(p) == 3 and p[0] == "eval" and p[2] == "loss")
    tasks = sorted(p[1] for p in parts if len(p) == 3 and p[0] == "task" and p[2] == "acc")
    return mix, evals, tasks


def domain_section(runs: pd.DataFrame, out_dir: str, *, bootstrap: int, seed: int) -> DomainSection | None:
    """Fit the laws across domains that `runs` supports and draw their figures under out_dir/figures."""
    mix, evals, tasks = columns_of(runs)
    if len(mix) < 2 and len(evals) < 2 and not tasks:
        return None
    section = DomainSection()
    if len(mix) >= 2 and evals:
        _mixture(section, runs, out_dir, bootstrap, seed)
    if len(evals) >= 2:
        _pairs(section, runs, evals, out_dir, bootstrap, seed)
    for task in tasks:
        _accuracy(section, runs, task, out_dir, bootstrap, seed)
    return section


def _mixture(section: DomainSection, runs, out_dir: str, bootstrap: int, seed: int) -> None:
    try:
        try:
            result = fit_mixture(runs, bootstrap=bootstrap, seed=seed, holdout=HELD_OUT)
        except UsageError:  # too few mixtures to hold some out: fit them all
            result = fit_mixture(runs, bootstrap=bootstrap, seed=seed)
    except UsageError as err:
        section.errors["mixture"] = str(err)
        return
    [optima] = result.details()
    rows = [[str(r[0])] + [f"{v:.2f} {fmt_ci(s.optimum.proportions_ci95.get(j), lambda x: f'{x:.2f}')}"
                           for j, v in zip(result.components, r[1:1 + len(result.components)])]
            + [f"{fmt(r[-3])} {fmt_ci(s.optimum.ci95)}"] for r, s in zip(optima.rows, result.scales)]
    target = ", ".join(f"{k} {v:g}" for k, v in result.target.items())
    section.tables.append((
        "Data mixing law: the best mixture per scale",
        ["scale"] + [f"share of {j} [95%]" for j in result.components] + ["target loss [95%]"], rows,
        f"L_i(r) = c_i + k_i exp(sum_j t_ij r_j) fitted per evaluation domain and scale; the best mixture minimises "
        f"the target weighting of the domains' losses ({target}); intervals from {result.n_resamples} bootstrap "
        "resamples of mixtures, each with its seeds."))
    section.headline += [f"Best mixture at {row[0]}: " + ", ".join(f"{j} {cell}" for j, cell in
                                                         zip(result.components, row[1:-1]))
                         + f" (target loss {row[-1]})" for row in rows]
    section.headline += [n for n in result.notes() if n.startswith("optimum from ")]
    section.notes += [f"mixture: {n}" for n in result.notes()[1:] if not n.startswith("optimum from ")]
    section.figures.append(mixture_figure(result, out_dir))
    section.json["mixture"] = result.to_json()


def _pairs(section: DomainSection, runs, evals: list[str], out_dir: str, bootstrap: int, seed: int) -> None:
    fits = fit_pairs(runs, evals, bootstrap=bootstrap, seed=seed)
    if not fits:
        section.errors["loss-to-loss"] = f"no pair of {', '.join(evals)} could be fitted"
        return
    rows = []
    for (x, y), result in fits.items():
        values = {e.name: e for e in result.estimates()}
        rows.append([f"{y} from {x}"] + [f"{fmt(values[k].value)} {fmt_ci(values[k].ci95)}"
                                         for k in ("E_x", "E_y", "K", "kappa") if k in values])
    section.tables.append((
        "Loss-to-loss: each domain's loss from another's", ["pair", "E_x [95%]", "E_y [95%]", "K [95%]", "kappa [95%]"],
        rows, "L_y = E_y + K (L_x - E_x)^kappa across runs (Brandfonbrener et al. 2024). It describes runs of one "
              "data mixture at different scales; across mixtures, which move one domain against another, it may "
              "not fit."))
    section.figures.append(loss_to_loss_figure(fits, out_dir))
    section.json["loss_to_loss"] = {f"{x}->{y}": r.to_json() for (x, y), r in fits.items()}


def _accuracy(section: DomainSection, runs, task: str, out_dir: str, bootstrap: int, seed: int) -> None:
    try:
        result = fit_accuracy(runs, task, bootstrap=bootstrap, seed=seed)
    except UsageError as err:
        section.errors[f"accuracy {task}"] = str(err)
        return
    rows = [[e.name, f"{fmt(e.value)} {fmt_ci(e.ci95)}"] for e in result.estimates()]
    acc = pd.to_numeric(runs[f"task/{task}/acc"], errors="coerce")
    shown = {e.name.split(" ")[0]: f"{fmt(e.value)} {fmt_ci(e.ci95)}" for e in result.estimates()}
    section.headline.append(f"{task}: accuracy {fmt(acc.min())} to {fmt(acc.max())} across {int(acc.notna().sum())} "
                            f"runs; fitted floor {shown['floor']}, ceiling {shown['ceil']}")
    section.tables.append((f"Accuracy on {task} as a sigmoid of the loss", ["quantity", "value [95%]"], rows,
                           "acc = floor + (ceil - floor) / (1 + exp(s (L - L0))) across runs."))
    section.figures.append(accuracy_figure(result, out_dir, name=f"accuracy_{len(section.figures)}"))
    section.json.setdefault("accuracy", {})[task] = result.to_json()
