"""`seeds:` in a sweep spec: replicates of every point, or of the points a `where` selects, adjacent in
the queue; refused in one line when it cannot mean one thing."""
import pytest

from scaling.errors import UsageError
from scaling.sweep import enumerate_points
from scaling.sweep.spec import parse_spec

COMMAND = ["${env}", "${interpreter}", "-m", "scaling.cli", "train", "${args_no_hyphens}"]


def _spec(seeds, **params):
    params = params or {"flops_budget": {"values": [1e9, 2e9]}, "params": {"values": [1e4, 2e4]}}
    return parse_spec({"method": "grid", "parameters": params, "command": COMMAND, "seeds": seeds})


def test_seeds_replicate_every_point_with_seeds_zero_to_k_minus_one_adjacent():
    points = enumerate_points(_spec(3))
    assert len(points) == 12 and [p["seed"] for p in points[:3]] == [0, 1, 2]
    assert points[0] == {**points[1], "seed": 0}


def test_seeds_where_replicates_only_the_selected_points():
    points = enumerate_points(_spec({"count": 3, "where": {"flops_budget": 1e9}}))
    assert len(points) == 2 * 3 + 2
    assert all(("seed" in p) == (p["flops_budget"] == 1e9) for p in points)


@pytest.mark.parametrize("seeds, message", [
    (0, "seeds: expected a positive number"),
    ({"count": 2, "where": {"lr": 1e-3}}, "seeds.where.lr: not a parameter"),
    ({"count": 2, "every": 1}, "seeds.every: unknown key"),
])
def test_bad_seeds_are_refused_in_one_line(seeds, message):
    with pytest.raises(UsageError, match=message):
        _spec(seeds)


def test_seeds_and_a_seed_parameter_are_refused_together():
    with pytest.raises(UsageError, match="already sweep `seed`"):
        _spec(2, seed={"values": [0, 1]}, params={"values": [1e4]})


def test_seed_replicates_count_against_the_sweep_cap_before_any_is_built():
    from scaling.sweep.spec import MAX_POINTS

    with pytest.raises(UsageError, match=r"12,000 runs \(4 points with seeds: 3000\); allowed: at most 10,000"):
        enumerate_points(_spec(3000))
    assert len(enumerate_points(_spec(MAX_POINTS // 4))) == MAX_POINTS  # the cap itself is allowed
    with pytest.raises(UsageError, match="seeds: 100,000,000 replicates per point"):
        _spec(100_000_000)


def test_seeds_where_counts_only_the_replicated_points_against_the_cap():
    points = enumerate_points(_spec({"count": 9_997, "where": {"flops_budget": 1e9, "params": 1e4}}))
    assert len(points) == 9_997 + 3
