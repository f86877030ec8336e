"""report.md escapes text from outside the report as index.html does (issue #23): a run id or title with
markdown's marks or HTML stays literal text, and a run id with `|` stays one table cell."""
import re

import yaml
from laws_synth import isoflop_table

from scaling.cli import main
from scaling.report.dashboard import report_spec

HOSTILE = "a|b *c* _d_ `e` [f](http://x.test) <script>alert(1)</script> #g ~~h~~ \\"


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]  # split on unescaped pipes


def test_report_md_keeps_a_hostile_title_and_run_id_literal(tmp_path):
    table = isoflop_table(noise=0.001)
    table.loc[0, "run_id"] = HOSTILE
    csv, spec, out = tmp_path / "runs.csv", tmp_path / "spec.yaml", tmp_path / "report"
    table.to_csv(csv, index=False)
    spec.write_text(yaml.safe_dump({"title": HOSTILE, "laws": ["isoflop"], "bootstrap": 0, "holdout": "none"}))
    assert main(["report", str(spec), str(csv), "--out", str(out), "--wandb", "off"]) == 0
    md = (out / "report.md").read_text()
    assert "<script>" not in md and "&lt;script&gt;" in md  # as index.html has it
    assert "](http://x.test)" not in md.replace("\\](", "")  # no link is made
    title = md.splitlines()[0]
    assert title.startswith("# ") and "*c*" not in title and "_d_" not in title and "`e`" not in title
    assert report_spec("s", str(out))["title"] == HOSTILE.strip()  # the W&B report's title reads it back
    rows = [line for line in md.split("## Runs used", 1)[1].split("\n## ", 1)[0].splitlines()
            if line.startswith("| ")]
    hostile = [r for r in rows if "script" in r]
    assert len(hostile) == 1 and len(_cells(hostile[0])) == len(_cells(rows[0])) == 6, hostile
    assert "&lt;script&gt;" in (out / "index.html").read_text()
