"""The planner knows the family's reach: each refusal one by one (a budget below the smallest model, above
the largest, a too-small budget named), sizes that are distinct recipe sizes differing across budgets, a
refinement of buildable sizes not yet run at the budget as given, and `sweep create` reusing finished runs."""
import math

import pandas as pd
import pytest
import yaml

from scaling.cli import main
from scaling.errors import UsageError
from scaling.family import recipe_sizes, smallest_size
from scaling.runs import RunHome
from scaling.sweep import create_sweep
from scaling.sweep import plan as plan_lib
from scaling.sweep.prior import FAMILY_PRIOR

PRIOR = plan_lib.Prior(0.5737, 0.4565, "test")  # about Chinchilla's
SHAPES_4K = recipe_sizes(vocab_size=4096, seq_len=256)  # a 4,096-token BPE vocabulary


def test_the_smallest_model_is_set_by_the_vocabulary():
    assert smallest_size(vocab_size=4096, seq_len=256) == SHAPES_4K[0] == 68_912
    assert smallest_size(vocab_size=256, seq_len=256) < 10_000
    assert SHAPES_4K == sorted(SHAPES_4K) and len(set(SHAPES_4K)) == len(SHAPES_4K)


def test_a_budget_whose_n_opt_lies_below_the_smallest_model_is_refused_naming_the_smallest_that_works():
    # the budgets: N_opt 4.4e4..8.3e4 against a smallest model of 68,912 params
    with pytest.raises(UsageError) as refused:
        plan_lib.plan_points([5e10, 1e11, 2e11], 3, 2.0, PRIOR, SHAPES_4K)
    message = str(refused.value)
    assert "68,912" in message and "\n" not in message
    least = float(message.split("smallest budget that works is ")[1].split()[0])
    # N_opt must stand sqrt(R) above the smallest model (the sizes then start at it: an asymmetric span)
    assert PRIOR.n_opt(least) / math.sqrt(2) >= 68_912 > PRIOR.n_opt(least * 0.99) / math.sqrt(2)
    plan_lib.plan_points([least], 3, 2.0, PRIOR, SHAPES_4K)  # the budget named is accepted
    with pytest.raises(UsageError, match="smallest budget that works"):  # N_opt above the floor, but too near
        plan_lib.plan_points([PRIOR.budget_for(68_912 * 1.3)], 3, 2.0, PRIOR, SHAPES_4K)


def test_a_budget_whose_n_opt_over_r_is_below_the_smallest_model_starts_its_sizes_there_and_says_so(tmp_path):
    # between N_opt/3 < smallest and N_opt/sqrt(3) >= smallest: sizes run from the smallest model to N_opt*3
    c = PRIOR.budget_for(68_912 * 2.4)
    sizes = [p["params"] for p in plan_lib.plan_points([c], 3, 3.0, PRIOR, SHAPES_4K)]
    assert sizes[0] == 68_912 and sizes[1] > 68_912 * 1.5 and PRIOR.n_opt(c) * 2 < sizes[2] <= PRIOR.n_opt(c) * 4
    symmetric = [p["params"] for p in plan_lib.plan_points([c * 30], 3, 3.0, PRIOR, SHAPES_4K)]
    assert symmetric[0] > 68_912  # far enough above the floor, the span is N_opt/3..N_opt*3 again
    shapes = plan_lib.recipe_shapes({"corpus": "synthetic"})
    prior = plan_lib.prior_from("family")
    budget = f"{prior.budget_for(shapes[0] * 2.4):.3g}"
    out = tmp_path / "p.yaml"
    assert main(["sweep", "plan", "--budgets", budget, "--per-budget", "3", "--out", str(out), "corpus=synthetic"]) == 0
    header = out.read_text()
    assert f"asymmetric at {float(budget):.3g}: N_opt/3 is below the smallest model the recipe builds ({shapes[0]:,})" \
        in header
    assert yaml.safe_load(header)["points"][0]["params"] == shapes[0]


def test_the_default_prior_is_this_familys_measured_law_and_chinchillas_stays_an_option(tmp_path, capsys):
    import json

    family, chinchilla = plan_lib.prior_from("family"), plan_lib.prior_from("chinchilla")
    data = json.loads(FAMILY_PRIOR.read_text())
    assert (family.coefficient, family.exponent) == (data["n_opt"]["coefficient"], data["n_opt"]["exponent"])
    # the demo's measured minima lie near 2e4 at 2.5e11 FLOPs (sweeps/demo.yaml): the family's prior is
    # within 2x of that; Chinchilla's puts it more than 4x above (its smallest size then wins every budget)
    assert 1e4 < family.n_opt(2.5e11) < 4e4 and chinchilla.n_opt(2.5e11) > 8e4
    with pytest.raises(SystemExit):
        main(["sweep", "plan", "--help"])
    assert "default; analysis/family-prior.json" in " ".join(capsys.readouterr().out.split())
    out = tmp_path / "p.yaml"
    assert main(["sweep", "plan", "--budgets", "1e13", "--out", str(out), "corpus=synthetic"]) == 0
    assert f"N_opt(C) = {family.coefficient:.4g} C^{family.exponent:.4g} (this family's law" in out.read_text()
    assert main(["sweep", "plan", "--budgets", "1e13", "--prior", "chinchilla", "--out", str(tmp_path / "c.yaml"),
                 "corpus=synthetic"]) == 0
    assert "Hoffmann" in (tmp_path / "c.yaml").read_text()


def test_a_budget_whose_sizes_pass_the_largest_model_is_refused():
    top = SHAPES_4K[-1]
    with pytest.raises(UsageError, match=f"largest model the recipe builds is {top:,}"):
        plan_lib.plan_points([1e30], 3, 3.0, PRIOR, SHAPES_4K)


def test_accepted_budgets_get_distinct_recipe_sizes_that_move_with_the_budget():
    budgets = [1.5e12, 6e12, 2.4e13]
    points = plan_lib.plan_points(budgets, 3, 2.0, PRIOR, SHAPES_4K)
    per = {c: [p["params"] for p in points if p["flops_budget"] == c] for c in budgets}
    for c, sizes in per.items():
        assert len(set(sizes)) == 3 and set(sizes) <= set(SHAPES_4K)
        assert min(sizes) < PRIOR.n_opt(c) < max(sizes)  # they bracket the optimum
    assert len({tuple(s) for s in per.values()}) == 3  # never the same sizes at every budget


def test_the_command_refuses_a_too_small_budget_naming_it_in_one_line(tmp_path, capsys):
    out = tmp_path / "p.yaml"
    assert main(["sweep", "plan", "--budgets", "1e5", "--out", str(out), "corpus=synthetic"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--budgets 1e+05" in err and "smallest budget that works" in err
    assert not out.exists()


def test_span_has_a_default_shown_in_help(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["sweep", "plan", "--help"])
    assert "default 3" in " ".join(capsys.readouterr().out.split())
    out = tmp_path / "p.yaml"
    assert main(["sweep", "plan", "--budgets", "1e13", "--out", str(out), "corpus=synthetic"]) == 0
    assert "N_opt/3 to N_opt*3" in out.read_text()


def _frame(budget: float, sizes, centre: float) -> pd.DataFrame:
    # a parabola in ln N whose vertex lies below the sampled sizes: the refinement goes down
    loss = [3 + 0.1 * (math.log(n) - math.log(centre)) ** 2 for n in sizes]
    return pd.DataFrame({"params": sizes, "tokens": [budget / (6 * n) for n in sizes],
                         "flops": [budget * 1.0007 for _ in sizes], "flops_budget": budget, "loss": loss})


def test_refine_proposes_only_buildable_sizes_not_yet_run_at_the_budget_as_given():
    budget = 1.0e12  # the measured C (flops) differs from the given budget: the given one is written
    shapes = SHAPES_4K[:12]
    frame = _frame(budget, shapes[4:7], centre=shapes[1])
    frame.loc[0, "flops_budget"] = float("nan")  # one run from a table without it: the fit clusters flops
    points, lines = plan_lib.refine_table(frame, 3, shapes)
    sizes = [p["params"] for p in points]
    assert set(sizes) <= set(shapes[:4]) and len(set(sizes)) == 3  # buildable, below the edge, new
    assert all(p["flops_budget"] == budget for p in points), points
    # at the bottom of the family, fewer (or no) sizes remain: never one below the smallest model
    frame = _frame(budget, shapes[1:4], centre=shapes[0] / 10)
    points, lines = plan_lib.refine_table(frame, 3, shapes)
    assert [p["params"] for p in points] == [shapes[0]]
    frame = _frame(budget, shapes[0:3], centre=shapes[0] / 10)
    points, lines = plan_lib.refine_table(frame, 3, shapes)
    assert points == [] and "no buildable size" in lines[0] and f"{shapes[0]:,}" in lines[0]


def _spec(tmp_path, name, points):
    spec = {"name": "reuse", "method": "grid", "command": ["scaling", "train", "${args_no_hyphens}"],
            "parameters": {"corpus": {"value": "synthetic"}, "seq_len": {"value": 32}},
            "points": [{"params": n, "flops_budget": c} for n, c in points]}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def test_create_never_queues_a_point_identical_to_a_finished_run(tmp_path, capsys):
    home = RunHome(str(tmp_path / "runs"))
    first = create_sweep(home, _spec(tmp_path, "a.yaml", [(2e4, 1e11), (5e4, 1e11)]))
    done = first["runs"][0]["run_id"]
    with home.db() as conn:
        conn.execute("UPDATE runs SET status='complete' WHERE run_id=?", (done,))
    again = _spec(tmp_path, "b.yaml", [(2e4, 1e11), (2e4, 3e11)])  # one identical to the finished run
    assert main(["--home", home.root, "sweep", "create", again]) == 0
    err = capsys.readouterr().err
    assert "1 runs queued" in err and f"reuses finished run {done}" in err and "1 new run(s) queued" in err
    pending = [r for r in home.sweeps() if r["sweep_id"] != first["sweep_id"]]
    assert home.sweep_counts(pending[0]["sweep_id"]) == {"pending": 1, "skipped": 1}
    # the same spec again: every point finished or queued elsewhere is still only reused if finished
    only = _spec(tmp_path, "c.yaml", [(2e4, 1e11)])
    assert main(["--home", home.root, "sweep", "create", only]) == 2
    assert "every point is a finished run" in capsys.readouterr().err


def test_family_warns_below_the_smallest_buildable_size(capsys):
    assert main(["family", "1e4", "1e6", "--vocab-size", "4096"]) == 0
    out, err = capsys.readouterr()
    assert err.count("warning") == 1 and "1e+04 is below the smallest model" in err and "68,912" in err
    assert "68,912" in out  # the smallest model is what is shown for that target


def test_refine_takes_each_runs_budget_from_its_sweep_when_the_runs_table_lacks_it():
    from types import SimpleNamespace

    frame = pd.DataFrame({"run_id": ["a", "b"], "params": [1e4, 2e4], "flops": [1.1998e11, 1.2003e11]})
    queued = [SimpleNamespace(run_id="a", config={"flops_budget": 1.2e11}),
              SimpleNamespace(run_id="b", config={"flops_budget": 1.2e11})]
    assert plan_lib.with_planned_budgets(frame, queued)["flops_budget"].tolist() == [1.2e11, 1.2e11]
    assert "flops_budget" not in frame.columns  # the caller's table is left as it was


def test_the_familys_byte_law_scales_n_opt_by_a_corpus_bytes_per_token(tmp_path):
    # measured on bytes: a BPE token of b bytes gives the same compute b times the text, so N_opt x b
    family = plan_lib.prior_from("family")
    assert family.per_byte and family.for_corpus(1.0) == family and family.for_corpus(None) == family
    bpe = family.for_corpus(2.2)
    assert bpe.n_opt(1e12) == pytest.approx(2.2 * family.n_opt(1e12)) and bpe.exponent == family.exponent
    assert bpe.for_corpus(2.2) == bpe  # applied once
    chinchilla = plan_lib.prior_from("chinchilla")
    assert chinchilla.for_corpus(2.2) == chinchilla  # a law in tokens is left as it is
    corpus = tmp_path / "bpe"
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        (src / f"d{i}.py").write_text("".join(f"def function_{i}_{j}(value):\n    return value * {j}\n"
                                              for j in range(60)))
    assert main(["data", "prepare", str(src), "--out", str(corpus), "--tokenizer", "bpe:512", "--quiet"]) == 0
    b = plan_lib.bytes_per_token({"corpus": str(corpus)})
    assert b > 1.5
    out = tmp_path / "p.yaml"
    assert main(["sweep", "plan", "--budgets", "1e13", "--out", str(out), f"corpus={corpus}"]) == 0
    assert f"x {b:.3g} bytes/token of this corpus" in out.read_text()
