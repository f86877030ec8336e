"""The mixture planner (`scaling sweep plan --mixtures K`): K Dirichlet-spread mixtures plus the pure
domains, seeded and deterministic, at one or more scales, written as a spec that `sweep create` accepts."""
import os

import numpy as np
import pytest
import yaml

from scaling.cli import main
from scaling.mixspec import parse_weights
from scaling.runs import RunHome
from scaling.sweep import mixplan

SETTINGS = ["seq_len=32", "batch_size=4", "eval_tokens=256", "n_evals=2"]


@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    root = tmp_path_factory.mktemp("domains")
    out = {}
    for i, name in enumerate(("py", "en", "c")):
        rng = np.random.default_rng(i)
        os.makedirs(root / name)
        for j in range(10):
            (root / name / f"{j}.txt").write_text("".join(rng.choice(list("abcdef \n"[i:]), 1500)))
        out[name] = str(root / name)
    return out


def _plan(tmp_path, domains, *flags, out="plan.yaml"):
    path = str(tmp_path / out)
    spec = ",".join(f"{n}:{d}" for n, d in domains.items())
    rc = main(["sweep", "plan", *SETTINGS, "--mixtures", "4", "--domains", spec, "--at", "8e3,4e3", *flags,
               "--out", path])
    return rc, path


def test_the_mixtures_are_the_pure_domains_and_k_spread_ones_summing_to_one():
    points = mixplan.plan_mixtures(6, ["a", "b", "c"], [mixplan.Scale(1e4, 1e5)])
    weights = [parse_weights(p["mixture"]) for p in points]
    assert len(points) == 9 and len({p["mixture"] for p in points}) == 9
    assert weights[:3] == [{"a": 1, "b": 0, "c": 0}, {"a": 0, "b": 1, "c": 0}, {"a": 0, "b": 0, "c": 1}]
    assert all(sum(w.values()) == pytest.approx(1.0, abs=1e-9) for w in weights)
    assert all(all(v * 100 == pytest.approx(round(v * 100)) for v in w.values()) for w in weights)  # 0.01 grid
    many = mixplan.spread_mixtures(30, 5)  # rounding 150 weights to cents: the sums must still be 1
    assert all(abs(w.sum() - 1) < 1e-9 for w in many)


def test_spread_mixtures_lie_far_apart_not_where_raw_draws_cluster():
    # The nearest two of {pure domains, 6 mixtures}: the best of the sets keeps them > 0.2 apart (measured
    # 0.26); the first six Dirichlet draws of the same stream come within 0.12.
    chosen = np.vstack([np.eye(3), mixplan.spread_mixtures(6, 3, seed=0)])
    gaps = np.linalg.norm(chosen[:, None] - chosen[None], axis=2) + 9 * np.eye(len(chosen))
    assert gaps.min() > 0.2
    assert min(w.min() for w in chosen[3:]) < 0.1 < max(w.min() for w in chosen[3:])  # near edges and inside


def test_the_plan_is_deterministic_and_its_seed_changes_it(tmp_path, domains):
    first = _plan(tmp_path, domains, out="a.yaml")[1]
    again = _plan(tmp_path, domains, out="b.yaml")[1]
    other = _plan(tmp_path, domains, "--mix-seed", "1", out="c.yaml")[1]
    text = [open(p).read() for p in (first, again, other)]
    assert text[0] == text[1]
    mixtures = [{p["mixture"] for p in yaml.safe_load(t)["points"]} for t in text]
    assert mixtures[0] != mixtures[2]


def test_a_second_scale_has_the_same_mixtures_at_m_times_the_compute(tmp_path, domains):
    rc, path = _plan(tmp_path, domains, "--scales", "1,4")
    assert rc == 0
    points = yaml.safe_load(open(path))["points"]
    small, large = points[:7], points[7:]
    assert [p["mixture"] for p in small] == [p["mixture"] for p in large]
    for s, b in zip(small, large):
        assert (b["params"], b["tokens"]) == (2 * s["params"], 2 * s["tokens"])  # 4x C = 6ND, D/N kept


def test_the_written_spec_creates_its_runs_each_with_its_mixture_evaluated_on_every_domain(tmp_path, domains):
    rc, path = _plan(tmp_path, domains, "--scales", "1,4", "--seeds", "2")
    assert rc == 0
    spec = yaml.safe_load(open(path))
    assert spec["parameters"]["corpus"]["value"] == "mix"
    # every run is evaluated on each domain's validation split: the losses the mixing law fits
    assert spec["parameters"]["eval"]["value"] == spec["parameters"]["domains"]["value"]
    pure = ["py:1,en:0,c:0", "py:0,en:1,c:0", "py:0,en:0,c:1"]
    assert spec["seeds"] == {"count": 2, "where": {"tokens": 4000.0, "mixture": pure}}
    home = RunHome(str(tmp_path / "runs"))
    assert main(["--home", home.root, "sweep", "create", path]) == 0
    (sweep,) = home.sweeps()
    runs = home.sweep_runs(sweep["sweep_id"])
    assert len(runs) == 7 + 3 + 7  # the small scale's pure domains twice (seeds 0 and 1), the rest once
    assert {r.status for r in runs} == {"pending"}
    assert sorted((r.config["mixture"], r.config.get("seed", 0)) for r in runs if r.config["tokens"] == 4000) == sorted(
        [(p["mixture"], 0) for p in spec["points"][:7]] + [(m, 1) for m in pure])


@pytest.mark.parametrize("flags, message", [
    (["--domains", "py"], "no folder for 'py'"),
    (["--domains", "py:x"], "at least 2 domains"),
    (["--domains", "py:a,en:b", "--budgets", "1e9"], "--mixtures plans mixtures at fixed scales"),
    (["--domains", "py:a,en:b", "--at", "8e3"], "expected --at PARAMS,TOKENS"),
    (["--domains", "py:a,en:b", "--scales", "1,-4"], "must be positive"),
    (["--domains", "py:a,en:b", "mixture=py:1"], "the planner writes each point's mixture"),
])
def test_a_bad_mixture_plan_is_one_line_and_exit_2(tmp_path, capsys, flags, message):
    rc = main(["sweep", "plan", "--mixtures", "3", *flags, "--out", str(tmp_path / "p.yaml")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and len(err.splitlines()) == 1, err
    assert not os.path.exists(tmp_path / "p.yaml")
