"""Multiple-choice scoring (`scaling eval --task`): a choice is scored on its own tokens given the context,
acc_norm divides by the choice's bytes, items are checked line by line, and the built-in next-line task
is drawn deterministically from the stdlib corpus's validation files."""
import json
import os

import numpy as np
import pytest
from conftest import TINY

from scaling.cli import main
from scaling.errors import UsageError
from scaling.train.tasks import Item, Task, choice_logprobs, load_task, nextline_task, score


def by_target(x, y):
    """A fake model: log p(token) = -(token + 1) / 100, whatever the context; the pads (0) count too."""
    return -(np.asarray(y, np.float64) + 1) / 100


def test_a_choice_is_scored_on_its_own_tokens_not_the_contexts_last_nor_without_its_first():
    rng = np.random.default_rng(0)
    pairs, expected = [], []
    for n_ctx, n_choice in [(5, 3), (1, 1), (40, 7), (3, 16)]:  # (40, 7): the context's start is cut
        context, choice = rng.integers(1, 200, n_ctx), rng.integers(1, 200, n_choice)
        pairs.append((context, choice))
        expected.append(-((choice + 1) / 100).sum())
    got = choice_logprobs(pairs, by_target, seq_len=16, batch=3)  # batches of 3: the last one is padded
    np.testing.assert_allclose(got, expected)


def test_the_context_conditions_the_choice_through_the_last_position_of_the_context():
    # log p(y[t] | x[:t+1]) from a model that only looks at the current input token: the first choice token
    # must be scored at the context's last position (given its last token), the others at their own.
    table = np.log(np.full((8, 8), 0.01))
    np.fill_diagonal(table, np.log(0.5))  # token a follows token a

    def bigram(x, y):
        return table[np.asarray(x), np.asarray(y)]

    context, choice = np.array([1, 2, 3]), np.array([3, 3, 5])
    (got,) = choice_logprobs([(context, choice)], bigram, seq_len=8)
    assert got == pytest.approx(table[3, 3] + table[3, 3] + table[3, 5])


def test_acc_norm_divides_by_the_choices_bytes_not_its_tokens_and_differs_from_acc():
    def per_char(text):  # one token per character: é is one token and two bytes
        return np.array([ord(c) % 256 for c in text])

    def lp(x, y):  # 'é' (233) and 'a' cost 1 nat, 'b' 0.7 and 'c' 0.6
        return -np.select([y == ord("b"), y == ord("c")], [0.7, 0.6], 1.0)

    items = (
        # by sum: gold -2.0 beats -2.1; per byte: gold -0.5 (4 bytes) beats -0.7; per token gold loses (-1 < -0.7)
        Item("x", ("éé", "bbb"), 0),
        # by sum: -3.6 ("cccccc") loses to -1 ("a"); per byte -0.6 beats -1: only acc_norm is right
        Item("x", ("a", "cccccc"), 1),
    )
    result = score(Task("t", "t", items), per_char, lp, seq_len=16)
    assert (result.acc, result.acc_norm, result.n) == (0.5, 1.0, 2)
    assert result.nll == pytest.approx((2.0 + 3.6) / 2)


def test_a_task_file_is_checked_line_by_line(tmp_path):
    good = {"context": "a", "choices": ["b", "c"], "gold": 1}
    for bad, message in [({**good, "gold": 2}, "line 2: gold must be"), ({**good, "choices": ["b"]}, "two or more"),
                         ({**good, "context": ""}, "context must be"), ([1], "expected an object")]:
        path = tmp_path / "t.jsonl"
        path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
        with pytest.raises(UsageError, match=message):
            load_task(str(path))
    with pytest.raises(UsageError, match="builtin:nextline"):
        load_task("builtin:nextline:x")


def test_builtin_nextline_is_deterministic_and_drawn_from_the_validation_files():
    from scaling.data import load_corpus

    first, again, other = nextline_task(30, 0), nextline_task(30, 0), nextline_task(30, 1)
    assert first.items == again.items and first.sha256 == again.sha256 and first.items != other.items
    val = bytes(load_corpus("stdlib").val).decode("utf-8", errors="replace")
    golds = [item.gold for item in first.items]
    assert len(set(golds)) > 1  # the right answer is not always in one place
    for item in first.items:
        true = item.choices[item.gold]
        assert item.context + true + "\n" in val  # the true line follows its context in a held-out file
        assert len(set(item.choices)) == 4
        for wrong in item.choices[:item.gold] + item.choices[item.gold + 1:]:
            assert abs(len(wrong) - len(true)) <= max(4, len(true) // 4)  # similar length: no length cue


def test_scaling_eval_task_records_accuracy_and_nll_and_the_runs_table_reads_them(tmp_path, capsys):
    home = str(tmp_path / "runs")
    text = tmp_path / "text"
    text.mkdir()
    for i in range(30):
        (text / f"{i}.txt").write_text(f"line {i} of the text\n" * 20)
    assert main(["--home", home, "train", *TINY, "tokens=4096", "wandb=off", "run_id=r", f"corpus={text}"]) == 0
    task = tmp_path / "mine.jsonl"
    task.write_text("".join(json.dumps({"context": f"line {i} of the", "choices": [" text", " zebra"], "gold": 0})
                            + "\n" for i in range(6)))
    written = tmp_path / "nextline.jsonl"
    assert main(["eval", "--task", "builtin:nextline:8", "--write", str(written)]) == 0
    assert len(written.read_text().splitlines()) == 8
    capsys.readouterr()
    assert main(["--home", home, "eval", "r", "--task", str(task), "--task", str(written)]) == 0
    out = capsys.readouterr().out
    assert "mine acc" in out and "nextline acc" in out and "chance 0.500" in out
    evals = json.load(open(os.path.join(home, "r", "evals.json")))
    m = evals["metrics"]
    assert m["task/mine/n"] == 6 and 0 <= m["task/mine/acc"] <= 1 and m["task/mine/nll"] > 0
    assert evals["sources"]["task/nextline"]["items"] == 8
    from scaling.runs import runs_table

    table = runs_table(home)
    assert table.loc[0, "task/mine/acc"] == m["task/mine/acc"] and "task/nextline/acc_norm" in table.columns
    assert main(["--home", home, "eval", "r", "--task", str(task), "--task", str(task)]) == 2  # one name twice
    assert main(["--home", home, "eval", "nosuch", "--task", str(task)]) == 2
