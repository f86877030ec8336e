"""Writing the report: index.html (self-contained, figures embedded), report.md, fit.json, runs.csv."""
from __future__ import annotations

import base64
import dataclasses
import html
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass

from scaling.report.compare_section import compare_section
from scaling.report.domains import domain_section
from scaling.report.figures import Figure, draw_figures
from scaling.report.fitting import Fits
from scaling.report.gather import ReportData
from scaling.report.ladder import section as ladder_section
from scaling.report.spec import ReportSpec, load_published
from scaling.report.tables import (
    allocation_table,
    by_group_table,
    cost_table,
    default_budgets,
    difference_lines,
    exponent_table,
    headline,
    noise_table,
    parameter_table,
    reach_of,
    runs_tables,
)
from scaling.runs import write_atomic
from scaling.runs.files import raise_storage_error, umask

# Marks markdown reads in text: code, emphasis, links and images, table cells, headings, strikethrough.
MD_MARKS = re.compile(r"([\\`*_\[\]|#!~])")


def md_text(text) -> str:
    """Text from outside the report (a title, a run id, a reason, an error) as literal markdown on one
    line: HTML's characters as entities, as index.html writes them, and markdown's marks backslashed, so
    a run id `a|b` stays one table cell and a title `<script>` or `[x](y)` stays text."""
    return MD_MARKS.sub(r"\\\1", html.escape(" ".join(str(text).split()), quote=False))


def md_table(header, rows, escape: bool = False) -> str:
    cell = md_text if escape else str
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def html_table(header, rows) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = """body{font:14px/1.45 system-ui,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f4f4f4}figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:13px}.headline{background:#f3f8ff;border-left:4px solid #2b6cb0;padding:.6em 1em}
.note{color:#666;font-size:12px}"""


def fit_json(fits: Fits, metric: str = "loss") -> dict:
    out = {"metric": metric, **{law: res.to_json() for law, res in fits.results.items()}}
    if fits.holdout is not None:
        out["holdout_check"] = fits.holdout.to_json()
    if fits.by_group:  # each GroupedFit names its column (`by`); a spec's `by:` other than corpus: by_group
        key = "by_corpus" if _group_column(fits) == "corpus" else "by_group"
        out[key] = {law: gf.to_json() for law, gf in fits.by_group.items()}
    if fits.errors:
        out["not_fitted"] = dict(fits.errors)
    return out


@dataclass(frozen=True)
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""
    user_text: bool = False  # cells hold text from outside (run ids, reasons): report.md escapes them


@dataclass(frozen=True)
class ReportFiles:
    """What `write_report` wrote, and the headline and tables it wrote into them."""

    out_dir: str
    figures: list[Figure]
    headline: list[str]
    tables: list[Table]

    @property
    def html(self) -> str:
        return os.path.join(self.out_dir, "index.html")

    @property
    def markdown(self) -> str:
        return os.path.join(self.out_dir, "report.md")

    @property
    def fit_json(self) -> str:
        return os.path.join(self.out_dir, "fit.json")

    @property
    def runs_csv(self) -> str:
        return os.path.join(self.out_dir, "runs.csv")


def report_tables(data: ReportData, fits: Fits, published: dict, loss_laws: bool = True) -> list[Table]:
    """The report's tables; without loss laws (a spec with `laws: []`, e.g. a mixture study's) only the
    runs used and excluded."""
    (used_h, used), (excl_h, excl) = runs_tables(data, fits)
    if not loss_laws:
        return [Table(f"Runs used ({len(used)})", used_h, used, user_text=True),
                Table(f"Runs and budgets excluded ({len(excl)})", excl_h, excl, user_text=True)]
    by_corpus = []
    if fits.by_group:
        column = _group_column(fits)
        by_corpus = [Table(f"Laws by {column}, side by side", *by_group_table(fits),
                           f"Each value of {column} fitted alone (pooling them fits none of them); 95% bootstrap "
                           "intervals. Two groups differ on a quantity when their intervals do not overlap: "
                           + ("; ".join(difference_lines(fits)) or "none here") + ".")]
    return by_corpus + [
        Table("Fitted parameters, beside published laws", *parameter_table(fits, published),
              "Chinchilla form L = E + A/N^alpha + B/D^beta; 95% bootstrap intervals in brackets "
              "(points resampled, each with all its seed replicates)."),
        Table("Compute-optimal exponents", *exponent_table(fits, published)),
        Table("Noise floor and isoFLOP depth", *noise_table(fits),
              "Noise: the SD of one run's final loss between seed replicates of a point, pooled over the budget's "
              "replicated points (else over all). Depth: the loss gap between a curve's minimum and its better "
              "sampled edge. A curve shallower than 2 x noise does not resolve its minimum: one seed's luck could "
              "move it to an edge."),
        Table("Compute-optimal allocation at the target budgets", *allocation_table(fits),
              "Extrapolations far beyond the sampled compute: read the intervals, and the holdout check below."),
        Table("Compute spent", *cost_table(data),
              "Of the runs used. A cooldown branch continues its parent's stable phase from a checkpoint, so "
              "only its decay is spent on it; separate runs would each train from scratch."),
        Table(f"Runs used ({len(used)})", used_h, used, user_text=True),
        Table(f"Runs and budgets excluded ({len(excl)})", excl_h, excl, user_text=True),
    ]


def write_report(data: ReportData, fits: Fits, spec: ReportSpec, out_dir: str,
                 published: dict | None = None) -> ReportFiles:
    """Write index.html, report.md, fit.json, runs.csv and figures/ into out_dir.

    Everything is made in a hidden folder beside out_dir first and moved in only when all of it was
    written, so a failure (a figure that cannot be drawn, a full disk) leaves out_dir as it was."""
    published = load_published(spec.published) if published is None else published
    fits = at_report_budgets(data, fits, spec)
    parent = os.path.dirname(os.path.abspath(out_dir))
    try:
        os.makedirs(parent, exist_ok=True)
        stage = tempfile.mkdtemp(prefix=".report-", dir=parent)
    except OSError as err:
        raise_storage_error(err, f"cannot write the report in {out_dir}")
        raise
    try:
        figures = draw_figures(data, fits, published, stage)
        tables = report_tables(data, fits, published, loss_laws=bool(spec.laws))
        lines = headline(fits, reach_of(data.runs)) if spec.laws else []
        fitted = fit_json(fits, data.metric)
        errors = [f"{law}: {why}" for law, why in fits.errors.items()]
        notes = list(fits.notes)
        domains = domain_section(data.runs, stage, bootstrap=spec.bootstrap, seed=spec.seed)
        if domains is not None:  # several evaluation sets, mixtures or tasks: the laws across domains
            figures += domains.figures
            tables[-2:-2] = [Table(*t) for t in domains.tables]  # before the lists of runs
            errors += [f"{law}: {why}" for law, why in domains.errors.items()]
            notes += domains.notes
            lines += domains.headline
            fitted["domains"] = domains.json
        compared = compare_section(data, fits, spec, stage)
        if compared is not None:  # the spec's `by:`: its recipes compared by effective compute
            figures += compared.figures
            at = 1 if fits.by_group else 0  # after the laws side by side
            tables[at:at] = [Table(*t) for t in compared.tables]
            errors += [f"{what}: {why}" for what, why in compared.errors.items()]
            notes += compared.notes
            lines[0:0] = compared.headline
            fitted["compare"] = compared.json
        checked = ladder_section(fits.ladder)
        if checked is not None:  # ladder runs: each against the prediction of the sweep it names
            tables[-2:-2] = [Table(checked.title, checked.header, checked.rows, checked.note, user_text=True)]
            lines += checked.headline
            fitted["ladder_check"] = checked.json
        staged = ReportFiles(stage, figures, lines, tables)
        write_atomic(staged.runs_csv, data.runs.to_csv(index=False))
        write_atomic(staged.fit_json, json.dumps(fitted, indent=2) + "\n")
        write_atomic(staged.markdown, markdown(staged, data, spec, errors, notes))
        write_atomic(staged.html, html_page(staged, data, spec, errors, notes))
        _publish(stage, out_dir)
    except OSError as err:
        raise_storage_error(err, f"cannot write the report in {out_dir}")
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    moved = [dataclasses.replace(f, png=os.path.join(out_dir, "figures", os.path.basename(f.png)),
                                 svg=os.path.join(out_dir, "figures", os.path.basename(f.svg))) for f in figures]
    return ReportFiles(out_dir, moved, staged.headline, staged.tables)


def _group_column(fits: Fits) -> str:
    return next(iter(fits.by_group.values())).column


def at_report_budgets(data: ReportData, fits: Fits, spec: ReportSpec) -> Fits:
    """The fits with every law's compute-optimal allocation at the report's budgets: the spec's when
    given (`--at`, or a spec file), else the largest measured C x10 and x100 and where N_opt reaches the
    largest size trained (`default_budgets`), so the headline, the allocation table and fit.json state
    the same budgets, none far past the data unless asked for. (A spec whose budgets equal the built-in
    default is taken as not giving any.)"""
    reach = reach_of(data.runs)
    grouped = fits.by_group or {}
    candidates = [fits.results.get(law) for law in ("chinchilla", "isoflop")] + [
        res for law in ("chinchilla", "isoflop") if law in grouped for res in grouped[law].results.values()]
    best = next((res for res in candidates if res is not None and res.optimal is not None), None)
    if spec.gives_budgets or reach is None or best is None or best.optimal is None:
        return fits
    budgets = default_budgets(best, reach)

    def restated(res):
        try:
            return dataclasses.replace(res, optimal=res.allocate(budgets)) if res.optimal is not None else res
        except (ValueError, ArithmeticError):  # a law whose allocation cannot be evaluated there keeps its own
            return res

    results = {law: restated(res) for law, res in fits.results.items()}
    # the laws per group (corpus, or the spec's by:) state N_opt at the same budgets as the pooled fit
    by_group = {law: dataclasses.replace(gf, results={g: restated(r) for g, r in gf.results.items()})
                for law, gf in (fits.by_group or {}).items()} or fits.by_group
    return dataclasses.replace(fits, results=results, by_group=by_group)


def _publish(stage: str, out_dir: str) -> None:
    """Move a finished report from its staging folder into out_dir: each file by an atomic rename, the
    figures folder as a whole (so no figure of an older report is left beside the new ones)."""
    os.makedirs(out_dir, exist_ok=True)
    figures = os.path.join(stage, "figures")
    if os.path.isdir(figures):
        os.chmod(figures, 0o777 & ~umask())  # made by mkdtemp's private parent: give it the usual mode
        target = os.path.join(out_dir, "figures")
        old = None
        if os.path.isdir(target):
            old = tempfile.mkdtemp(prefix=".old-figures-", dir=out_dir)
            os.replace(target, os.path.join(old, "figures"))
        os.replace(figures, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    for name in sorted(os.listdir(stage)):
        os.replace(os.path.join(stage, name), os.path.join(out_dir, name))


def _laws(spec: ReportSpec) -> str:
    return ", ".join(spec.laws) or "none of the loss laws (the laws across domains only)"


def _metric(data: ReportData) -> str:
    if data.metric == "bpb":
        return "final eval loss in bits per byte (eval_bpb), comparable across tokenizers"
    if data.metric != "loss":  # an evaluation set's NAME:loss or NAME:bpb
        return f"final loss on the evaluation set {data.metric.rpartition(':')[0]} ({data.loss_unit})"
    return "final eval loss in nats/token"


def markdown(written: ReportFiles, data: ReportData, spec: ReportSpec, errors: list[str],
             notes: tuple[str, ...] | list[str] = ()) -> str:
    md = [f"# {md_text(spec.title)}", "",
          f"Source: {md_text(data.source)}. Laws: {_laws(spec)}. Loss: {_metric(data)}.", ""]
    md += ["## Headline", ""] + [f"- {line}" for line in written.headline] + [""]
    if errors:
        md += ["Not fitted: " + md_text("; ".join(errors)), ""]
    if notes:
        md += ["Notes: " + md_text("; ".join(notes)), ""]
    for t in written.tables:
        md += [f"## {t.title}", "", t.note, "", md_table(t.header, t.rows, t.user_text) if t.rows else "(none)", ""]
    md += ["## Figures", ""]
    for f in written.figures:
        md += [f"![{md_text(f.caption)}](figures/{f.name}.png)", f"*{md_text(f.caption)}*", ""]
    return "\n".join(md)


def html_page(written: ReportFiles, data: ReportData, spec: ReportSpec, errors: list[str],
              notes: tuple[str, ...] | list[str] = ()) -> str:
    esc = html.escape
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{esc(spec.title)}</title>",
             f"<style>{CSS}</style></head><body><h1>{esc(spec.title)}</h1>",
             f"<p class='note'>Source: {esc(data.source)}. Laws: {esc(_laws(spec))}. "
             f"Loss: {esc(_metric(data))}. "
             f"Bootstrap: {spec.bootstrap} resamples of points (each with its seed replicates), seed {spec.seed}.</p>",
             "<div class='headline'><b>Headline</b><ul>" + "".join(f"<li>{esc(x)}</li>" for x in written.headline)
             + "</ul></div>"]
    if errors:
        parts.append("<p class='note'>Not fitted: " + esc("; ".join(errors)) + "</p>")
    if notes:
        parts.append("<p class='note'>Notes: " + esc("; ".join(notes)) + "</p>")
    parts.append("<h2>Figures</h2>")
    for f in written.figures:
        with open(f.png, "rb") as fh:
            b64 = base64.b64encode(fh.read()).decode()
        parts.append(f"<figure id='{f.name}'><img alt='{esc(f.caption)}' src='data:image/png;base64,{b64}'>"
                     f"<figcaption>{esc(f.caption)}</figcaption></figure>")
    for t in written.tables:
        parts.append(f"<h2>{esc(t.title)}</h2>" + (f"<p class='note'>{esc(t.note)}</p>" if t.note else "")
                     + (html_table(t.header, t.rows) if t.rows else "<p>(none)</p>"))
    # Marks how many figures the browser decoded: what a person sees, checkable headlessly.
    parts.append("<script>window.addEventListener('load',function(){var n=0;for(var i of document.images)"
                 "{if(i.complete&&i.naturalWidth>0)n++;}document.body.dataset.figuresLoaded=n;});</script>")
    parts.append("</body></html>")
    return "\n".join(parts)
