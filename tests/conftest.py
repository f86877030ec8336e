import os

import pytest

# Tests never talk to W&B's servers, whatever the developer's shell has set.
os.environ.pop("WANDB_API_KEY", None)
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("WANDB_SILENT", "true")

TINY = ["d_model=16", "seq_len=32", "batch_size=4", "eval_tokens=256", "n_evals=3"]


@pytest.fixture
def home(tmp_path):
    return str(tmp_path / "runs")


@pytest.fixture
def tiny():
    """Key=value items for a run that trains in about a second."""
    return list(TINY)
