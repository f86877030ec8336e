"""Evaluation holds no more rows at once than a training step does: with microbatches=K it runs in batches of
batch_size / K (a GPU recipe's whole batch of 32k-vocabulary logits would not fit), to the same loss."""
import json

import pytest

from scaling import data as data_lib
from scaling.cli import main
from tests.conftest import TINY

EVAL_BATCHES = data_lib.eval_batches


def _eval_rows(home, monkeypatch, *items) -> tuple[set[int], float]:
    seen = set()

    def spy(corpus, n_tokens, batch_size, seq_len):
        for x, y in EVAL_BATCHES(corpus, n_tokens, batch_size, seq_len):
            seen.add(len(x))
            yield x, y

    monkeypatch.setattr(data_lib, "eval_batches", spy)
    run_id = "r" + "".join(i.replace("=", "") for i in items)
    assert main(["--home", home, "train", *TINY, "tokens=1024", "corpus=synthetic", "wandb=off", "run_id=" + run_id,
                 *items, "--quiet"]) == 0
    with open(f"{home}/{run_id}/summary.json") as fh:
        return seen, json.load(fh)["eval_loss"]


def test_evaluation_runs_in_microbatch_rows_to_the_same_loss(home, monkeypatch):
    whole_rows, whole = _eval_rows(home, monkeypatch)
    micro_rows, micro = _eval_rows(home, monkeypatch, "microbatches=2")
    assert whole_rows == {4} and micro_rows == {2}
    assert micro == pytest.approx(whole, abs=1e-5)  # summation order only
