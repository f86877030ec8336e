"""sweeps/ladder-gpu.yaml is the accelerator study its header says: every point plans against a 32k BPE
corpus (the prepared folder is not on this machine, so a stand-in of that vocabulary), sizes 20M-1B at
sequence 2048 in bfloat16, a batch of at least 0.5M tokens from 200M parameters, and microbatches that
keep each step inside one H200 by train/limits.py's estimate."""
import dataclasses
import os

import numpy as np
import pytest

from scaling import data as data_lib
from scaling import sweep
from scaling.config import RunConfig
from scaling.sweep.plan import chinchilla_prior
from scaling.train.limits import check_plan, choose_remat, training_bytes
from scaling.train.plan import plan_run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC = os.path.join(ROOT, "sweeps", "ladder-gpu.yaml")
H200 = (141e9, "one H200")
MICROBATCH_ACTIVATIONS = 40e9  # the header's bound on the estimate per microbatch


@pytest.fixture
def plans(monkeypatch):
    bpe32k = data_lib.Corpus("corpora/fineweb-edu-bpe32k", np.zeros(1 << 16, np.uint16), np.zeros(1 << 14, np.uint16),
                             32768, "stand-in")
    monkeypatch.setattr(data_lib, "load_corpus", lambda spec, vocab_size=None: bpe32k)
    spec = sweep.load_spec(SPEC)
    corpus = [p.discrete[0] for p in spec.parameters if p.name == "corpus"]
    assert corpus == ["corpora/fineweb-edu-bpe32k"] and not os.path.isfile(corpus[0])  # a prepared folder
    # as an H200 opens each run (train/limits.py resolve_plan): auto attention is cuDNN's flash kernel in
    # bfloat16, auto remat the least recomputation that fits
    plans = [dataclasses.replace(plan_run(RunConfig.from_dict(point)), attention="cudnn")
             for point in sweep.enumerate_points(spec)]
    return [dataclasses.replace(p, remat=choose_remat(p, H200)) for p in plans]


def test_ladder_gpu_spans_20m_to_1b_at_sequence_2048_in_bfloat16(plans):
    sizes = sorted({p.shape.params for p in plans})
    assert 2e7 <= sizes[0] < 3e7 and 9e8 <= sizes[-1] <= 1e9, sizes
    assert {p.shape.seq_len for p in plans} == {2048} and {p.config.dtype for p in plans} == {"bfloat16"}
    assert {p.shape.vocab_size for p in plans} == {32768}


def test_ladder_gpu_batch_grows_with_size_to_half_a_million_tokens(plans):
    by_size = sorted((p.shape.params, p.tokens_per_step) for p in plans)
    batches = [tokens for _, tokens in by_size]
    assert batches == sorted(batches)  # never smaller for a larger model
    assert all(tokens >= 512 * 1024 for n, tokens in by_size if n >= 2e8), by_size


def test_ladder_gpu_every_point_fits_one_h200_through_its_microbatches(plans):
    for p in plans:
        check_plan(p, available=H200)  # raises when state + activations pass the device's memory
        _, activations = training_bytes(p)
        assert activations <= MICROBATCH_ACTIVATIONS, (p.shape.describe(), p.config.microbatches, activations)
        # and no more of them than that bound needs: half as many would pass it
        assert p.config.microbatches == 1 or activations * 2 > MICROBATCH_ACTIVATIONS, (
            p.shape.describe(), p.config.microbatches, "more microbatches than memory needs")


def test_ladder_gpu_samples_each_budgets_predicted_optimum_from_both_sides(plans):
    prior = chinchilla_prior()
    budgets = sorted({p.config.flops_budget for p in plans})
    assert len(budgets) == 5
    for c in budgets:
        sizes = sorted(p.shape.params for p in plans if p.config.flops_budget == c)
        assert len(sizes) == 5 and len(set(sizes)) == 5
        assert sizes[0] < prior.n_opt(c) < sizes[-1], (c, sizes)
