"""Multiple-choice tasks scored by likelihood (`scaling eval --task`), in lm-evaluation-harness's simple
form: each item a context, its choices and the index of the right one (docs/contracts.md "Tasks").

A choice's score is the summed log-likelihood of the choice's own tokens given the context: the model
reads context + choice, and the log-probabilities counted are those of the targets that are choice
tokens, the first choice token (predicted from the context's last position) through the last. `acc`
takes the highest sum; `acc_norm` the highest sum per byte of the choice's text (longer choices are not
penalised for their length); `nll` is the correct choice's summed negative log-likelihood, mean over
items. A context longer than the model's window keeps its end.

The built-in task (`builtin:nextline[:ITEMS[:SEED]]`) is made offline from the built-in corpus's
validation files (corpus=stdlib): a stretch of a file, and four candidates for its next line, the true
one and three lines of similar length from other validation files.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from scaling import data as data_lib
from scaling.errors import UsageError

BUILTIN = "builtin:nextline"
CONTEXT_LINES = 12  # lines of the file before the one to predict
LINE_CHARS = (12, 72)  # the lengths (stripped) a line to predict may have: neither trivial nor wrapping


@dataclass(frozen=True)
class Item:
    context: str
    choices: tuple[str, ...]
    gold: int


@dataclass(frozen=True)
class Task:
    name: str
    source: str  # the file, or the built-in spec
    items: tuple[Item, ...]

    @property
    def sha256(self) -> str:
        """The items' identity: the same items score the same, whatever file they came from."""
        return hashlib.sha256("\n".join(json.dumps(item_json(i)) for i in self.items).encode()).hexdigest()

    def to_jsonl(self) -> str:
        return "".join(json.dumps(item_json(i)) + "\n" for i in self.items)


def item_json(item: Item) -> dict:
    return {"context": item.context, "choices": list(item.choices), "gold": item.gold}


@dataclass(frozen=True)
class TaskResult:
    acc: float  # by summed log-likelihood
    acc_norm: float  # by log-likelihood per byte of the choice
    nll: float  # the correct choice's summed negative log-likelihood (nats), mean over items
    n: int  # items scored
    skipped: int  # items whose choice does not fit the model's window

    def metrics(self, name: str) -> dict:
        return {f"task/{name}/acc": self.acc, f"task/{name}/acc_norm": self.acc_norm,
                f"task/{name}/nll": self.nll, f"task/{name}/n": self.n}


# ---- reading -------------------------------------------------------------------------------------------
def load_task(spec: str) -> Task:
    """A JSONL file of {context, choices, gold} items, or the built-in task; bad input is one line."""
    if spec == BUILTIN or spec.startswith(BUILTIN + ":"):
        parts = spec[len(BUILTIN):].lstrip(":").split(":") if spec != BUILTIN else []
        try:
            n = int(parts[0]) if parts and parts[0] else 400
            seed = int(parts[1]) if len(parts) > 1 else 0
        except ValueError:
            raise UsageError(f"--task {spec}: expected {BUILTIN}[:ITEMS[:SEED]]") from None
        if n < 1 or len(parts) > 2:
            raise UsageError(f"--task {spec}: expected {BUILTIN}[:ITEMS[:SEED]] with ITEMS >= 1")
        return nextline_task(n, seed)
    try:
        with open(spec, encoding="utf-8") as fh:
            lines = fh.readlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"--task {spec}: cannot read ({getattr(err, 'strerror', None) or err})") from None
    items = [parse_item(line, f"--task {spec} line {i}") for i, line in enumerate(lines, 1) if line.strip()]
    if not items:
        raise UsageError(f"--task {spec}: no items (one JSON object a line: context, choices, gold)")
    name = os.path.splitext(os.path.basename(spec))[0]
    return Task(name, os.path.abspath(spec), tuple(items))


def parse_item(line: str, where: str) -> Item:
    try:
        obj = json.loads(line)
    except ValueError:
        raise UsageError(f"{where}: not JSON") from None
    if not isinstance(obj, dict):
        raise UsageError(f"{where}: expected an object with context, choices, gold")
    context, choices, gold = obj.get("context"), obj.get("choices"), obj.get("gold")
    if not isinstance(context, str) or not context:
        raise UsageError(f"{where}: context must be non-empty text")
    if (not isinstance(choices, list) or len(choices) < 2
            or not all(isinstance(c, str) and c for c in choices)):
        raise UsageError(f"{where}: choices must be a list of two or more non-empty texts")
    if not isinstance(gold, int) or isinstance(gold, bool) or not 0 <= gold < len(choices):
        raise UsageError(f"{where}: gold must be the index of the right choice, 0..{len(choices) - 1}")
    return Item(context, tuple(choices), gold)


# ---- scoring -------------------------------------------------------------------------------------------
def window(context: np.ndarray, choice: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(inputs, targets, k) for one choice: the model reads `inputs` and is scored on `targets` (inputs
    shifted by one); the choice's tokens are the last k targets. The context keeps its last tokens."""
    tokens = np.concatenate([context, choice])[-(seq_len + 1):]
    return tokens[:-1], tokens[1:], len(choice)


def choice_logprobs(pairs: list[tuple[np.ndarray, np.ndarray]], token_logprobs: Callable, seq_len: int,
                    batch: int = 32) -> np.ndarray:
    """The summed log-probability of each (context ids, choice ids) pair's choice tokens.

    `token_logprobs(x, y)` takes (batch, seq_len) int32 inputs and targets and returns (batch, seq_len)
    log p(y[t] | x[:t+1]). Rows are right-padded: a causal model's positions before the padding do not
    see it."""
    out = np.zeros(len(pairs))
    for lo in range(0, len(pairs), batch):
        x = np.zeros((batch, seq_len), np.int32)
        y = np.zeros((batch, seq_len), np.int32)
        mask = np.zeros((batch, seq_len), bool)
        for row, (context, choice) in enumerate(pairs[lo:lo + batch]):
            inputs, targets, k = window(context, choice, seq_len)
            x[row, :len(inputs)], y[row, :len(targets)] = inputs, targets
            mask[row, len(targets) - k:len(targets)] = True
        lp = np.asarray(token_logprobs(x, y), dtype=np.float64)
        out[lo:lo + batch] = np.where(mask, lp, 0.0).sum(axis=1)[:len(pairs[lo:lo + batch])]
    return out


def score(task: Task, encode: Callable[[str], np.ndarray], token_logprobs: Callable, seq_len: int,
          batch: int = 32) -> TaskResult:
    """Accuracy (summed and per-byte log-likelihood) and the correct choice's NLL over the task's items."""
    kept, pairs = [], []
    for item in task.items:
        context = encode(item.context)
        choices = [encode(c) for c in item.choices]
        if not len(context) or any(not 0 < len(c) <= seq_len for c in choices):
            continue  # a choice the window cannot hold with a token of context before it
        kept.append(item)
        pairs += [(context, c) for c in choices]
    if not kept:
        raise UsageError(f"task {task.name}: no item fits the model's window of {seq_len} tokens")
    sums = choice_logprobs(pairs, token_logprobs, seq_len, batch)
    right = right_norm = 0
    nll = 0.0
    at = 0
    for item in kept:
        s = sums[at:at + len(item.choices)]
        at += len(item.choices)
        per_byte = s / np.array([len(c.encode("utf-8")) for c in item.choices])
        right += int(np.argmax(s) == item.gold)
        right_norm += int(np.argmax(per_byte) == item.gold)
        nll -= s[item.gold]
    n = len(kept)
    return TaskResult(right / n, right_norm / n, nll / n, n, len(task.items) - n)


# ---- the built-in task ---------------------------------------------------------------------------------
def nextline_task(n: int = 400, seed: int = 0) -> Task:
    """`n` items from the stdlib corpus's validation files: CONTEXT_LINES lines of a file, then the true
    next line and three lines from other validation files whose length is closest to it (ties and the
    order drawn from `seed`). Deterministic for (n, seed, the Python installation)."""
    root, paths = data_lib.stdlib_files()
    files = []
    for path in sorted(paths):
        rel = os.path.relpath(path, root)
        # the corpus's own split: data._byte_corpus sends a file to validation by this hash of its path
        if data_lib.doc_is_val(rel, data_lib.VAL_FRACTION):
            with open(path, "rb") as fh:
                files.append(fh.read().decode("utf-8", errors="replace").split("\n"))
    pool = [(len(line), f, i) for f, lines in enumerate(files) for i, line in enumerate(lines)
            if i >= CONTEXT_LINES and LINE_CHARS[0] <= len(line.strip()) <= LINE_CHARS[1]]
    if len(pool) < 4:
        raise UsageError(f"{BUILTIN}: too few lines in the standard library's validation files")
    rng = np.random.default_rng([seed, 0x1E47])
    lengths = np.array([p[0] for p in pool])
    items = []
    for k in rng.choice(len(pool), size=min(n, len(pool)), replace=False):
        length, f, i = pool[k]
        true = files[f][i]
        # distractors: lines of other files, nearest in length (random among equals), none equal to the truth
        order = np.lexsort((rng.random(len(pool)), np.abs(lengths - length)))
        wrong: list[str] = []
        for j in order:
            _, g, m = pool[j]
            line = files[g][m]
            if g != f and line.strip() != true.strip() and line not in wrong:
                wrong.append(line)
                if len(wrong) == 3:
                    break
        gold = int(rng.integers(0, 4))
        choices = wrong[:gold] + [true] + wrong[gold:]
        context = "\n".join(files[f][i - CONTEXT_LINES:i]) + "\n"
        items.append(Item(context, tuple(choices), gold))
    return Task("nextline", f"{BUILTIN}:{n}:{seed}", tuple(items))
