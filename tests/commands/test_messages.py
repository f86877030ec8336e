"""The messages a first study meets: an unknown key's nearest spelling, one minimum length for both units,
no speed for a run too short to time, and one cached ceiling behind train's and bench's MFU."""
import json

import pytest

from scaling import hardware
from scaling.cli import main
from scaling.config import USER_KEYS, RunConfig
from scaling.errors import UsageError


def _error(capsys, *argv) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_misspelt_key_gets_did_you_mean_not_the_46_fields(home, capsys):
    err = _error(capsys, "--home", home, "train", "parms=1e5", "tokens=1e4")
    assert "unknown key 'parms'; did you mean params?" in err


def test_unknown_key_lists_only_the_keys_a_person_sets():
    with pytest.raises(UsageError) as caught:
        RunConfig.from_dict({"colour": "red", "params": 1e5, "tokens": 1e4})
    text = str(caught.value)
    assert "params" in text and "flops_budget" in text
    for internal in ("branch_of", "coordinator", "process_id", "num_processes"):
        assert internal not in text and internal not in USER_KEYS


def test_tokens_and_flops_budget_share_one_minimum_of_one_batch(home, capsys, tiny):
    # TINY: batch 4 x seq_len 32 = 128 tokens a step
    by_tokens = _error(capsys, "--home", home, "train", *tiny, "tokens=100", "wandb=off")
    assert "less than one batch of 128 tokens (4 x 32); allowed: tokens>=128" in by_tokens
    by_flops = _error(capsys, "--home", home, "train", *tiny, "flops_budget=1e3", "wandb=off")
    assert "allowed: tokens>=128" in by_flops
    floor = float(by_flops.split("flops_budget>=")[1].split()[0])
    # the flops_budget it names is exactly one batch for this model: accepted, and one step
    assert main(["--home", home, "train", *tiny, f"flops_budget={floor}", "wandb=off", "run_id=floor"]) == 0
    out = capsys.readouterr()
    assert "(1 steps x 4x32" in out.err


def test_a_one_step_run_reports_no_speed_instead_of_zero(home, capsys, tiny):
    assert main(["--home", home, "train", *tiny, "tokens=128", "wandb=off"]) == 0
    out = capsys.readouterr().out
    assert "speed      not measured" in out and "0 tokens/s" not in out


def test_a_run_too_short_to_time_stores_no_speed_not_a_zero(home, tiny):
    # one step: the first, which compiles, is never timed, so there is no speed to record
    assert main(["--home", home, "train", *tiny, "tokens=128", "wandb=off",
                 "run_id=short", "--quiet"]) == 0
    run = f"{home}/short"
    summary = json.load(open(f"{run}/summary.json"))
    assert summary["status"] == "complete" and summary["tokens_per_s"] is None and summary["mfu"] is None
    rows = [json.loads(line) for line in open(f"{run}/metrics.jsonl")]
    assert rows and all(r.get("tokens_per_s", 1.0) > 0 for r in rows)


def test_a_rounded_length_is_said(home, capsys, tiny):
    assert main(["--home", home, "train", *tiny, "tokens=300", "wandb=off"]) == 0
    assert "tokens=300 asks D=300; rounded to 2 whole steps of 128 tokens" in capsys.readouterr().err


def test_ceiling_is_measured_once_per_machine_and_says_when(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    rates = iter([100e9, 200e9, 300e9])
    monkeypatch.setattr(hardware, "measure_matmul_flops", lambda: next(rates))
    first, how = hardware.ceiling_flops()
    again, how_again = hardware.ceiling_flops()
    assert first == again == 100e9 and "measured 2" in how and "cached" in how_again
    assert hardware.ceiling_flops(refresh=True)[0] == 200e9 and hardware.ceiling_flops()[0] == 200e9


def test_bench_divides_by_the_cached_ceiling_train_uses(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = tmp_path / "scaling" / "ceiling.json"
    path.parent.mkdir()
    path.write_text(json.dumps({hardware.device_key(): {"flops": 42e9, "measured_at": 0}}))
    monkeypatch.setattr(hardware, "measure_matmul_flops", lambda: pytest.fail("bench measured again"))
    assert main(["bench", "--d-model", "16", "--steps", "2", "--batch-size", "2", "--seq-len", "16"]) == 0
    assert "ceiling  42.0 GFLOP/s" in capsys.readouterr().out
