"""Issue 21's "done when", end to end through the CLI: a small BPE corpus of one's own, an isoFLOP plan
with the planner's defaults (this family's prior, --span 3) at budgets it accepts, the sweep run by a
local agent, and `scaling fit --law isoflop` resolving a minimum at every budget.

Measured here (2 busy cores): the minima lie at 3.4e4, 5.0e4 and 6.1e4 params; the default prior (the
demo's byte law x 2.2 bytes/token) plans 1.16e4..1.21e5, 2.98e4..1.21e5 and 2.98e4..2.71e5 and all 3
resolve. The byte law unscaled (sizes up to 8.3e4) resolved 0 of 3: the largest size won each; Chinchilla's
prior (3 sizes from 3e4 up) would leave 4e11's minimum at its lower edge. The test took 5 min 37 s here (the
sweep 332 s, one agent, 2 cores at a load falling from 15 to 4)."""
import json
import os
import shutil
import sysconfig
import time

import pytest

from scaling.cli import main

BUDGETS = "4e11,6e11,9e11"  # the default plan accepts from 6.2e10 for bpe:512; minima resolve from about 3e11
SETTINGS = ["seq_len=128", "n_evals=2", "eval_tokens=4096", "wandb=off"]  # the demo's seq_len, cheap evals


def stdlib_slice(dest, limit: int = 2_000_000) -> str:
    """The first `limit` bytes of the running Python's standard library sources (no tests, no
    site-packages), whole files in sorted order: a few MB of one's own Python to tokenize."""
    root, total = sysconfig.get_paths()["stdlib"], 0
    os.makedirs(dest)
    for folder, _, files in sorted(os.walk(root)):
        if "site-packages" in folder or "/test" in folder:
            continue
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(folder, name)
            shutil.copy(path, os.path.join(dest, os.path.relpath(path, root).replace(os.sep, "__")))
            total += os.path.getsize(path)
            if total > limit:
                return str(dest)
    return str(dest)


@pytest.mark.slow
def test_a_default_plan_on_a_small_bpe_corpus_resolves_every_budget(tmp_path, capsys):
    from scaling.agents import Agent

    corpus, spec, home, fit = (str(tmp_path / n) for n in ("bpe512", "plan.yaml", "runs", "fit.json"))
    assert main(["data", "prepare", stdlib_slice(tmp_path / "src"), "--out", corpus, "--tokenizer", "bpe:512",
                 "--val-fraction", "0.1", "--quiet"]) == 0
    assert main(["sweep", "plan", "--budgets", BUDGETS, "--per-budget", "3", "--out", spec,
                 f"corpus={corpus}", *SETTINGS]) == 0
    assert "this family's law as the demo measured it" in open(spec).read()
    capsys.readouterr()
    assert main(["--home", home, "sweep", "create", spec]) == 0
    sweep_id = capsys.readouterr().out.strip().splitlines()[-1]
    start = time.perf_counter()
    assert {r.status for r in Agent(home, sweep_id).run()} == {"complete"}
    trained = time.perf_counter() - start
    assert main(["--home", home, "fit", "--sweep", sweep_id, "--law", "isoflop", "--bootstrap", "0",
                 "--json", fit]) == 0
    budgets = json.load(open(fit))["budgets"]
    resolved = [b for b in budgets if b["interior"] and b["used"]]
    print(f"{len(resolved)} of {len(budgets)} budgets resolve; the sweep trained in {trained:.0f} s")
    assert len(budgets) == 3 and len(resolved) == 3, budgets
