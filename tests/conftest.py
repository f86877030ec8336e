import os
import time

import pytest

# submitit configures logging as it is imported, which closes every handler that exists then; absl's
# (JAX's logger) closes its stream, pytest's captured stderr, and the capture fails at teardown. Imported
# first, before absl has a handler, it closes nothing.
try:
    import submitit  # noqa: F401
except ImportError:
    pass

# Tests never talk to W&B's servers, whatever the developer's shell has set.
os.environ.pop("WANDB_API_KEY", None)
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("WANDB_SILENT", "true")

# JAX's persistent compilation cache for the whole session, as `scaling train` turns it on
# (SCALING_COMPILATION_CACHE names another folder, or `off`): the laws' fits and the models' steps re-jit
# the same computations under new closures test after test, and load them from disk instead of
# compiling them again (half the CPU time of tests/laws and tests/report).
from scaling.train.step import use_compilation_cache  # noqa: E402

use_compilation_cache()

TINY = ["d_model=16", "seq_len=32", "batch_size=4", "eval_tokens=256", "n_evals=3"]

# Fast tests take seconds (the slowest, with its module's fixture, about a minute on 2 busy cores): one
# that runs for 5 minutes is hung or belongs under @pytest.mark.slow, which keeps the ini's 600 s.
FAST_TEST_TIMEOUT_S = 300


def pytest_collection_modifyitems(config, items):
    if config.getoption("timeout", None) is not None:  # an explicit --timeout wins (0 turns it off)
        return
    for item in items:
        if item.get_closest_marker("slow") is None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(FAST_TEST_TIMEOUT_S))


@pytest.fixture
def home(tmp_path):
    return str(tmp_path / "runs")


@pytest.fixture
def tiny():
    """Key=value items for a run that trains in about a second."""
    return list(TINY)


@pytest.fixture
def offline_run():
    """read_offline_run(path) once the run's summary holds `key`: wandb's run.finish() can return before
    its service process has written the offline log (seen here: the 7-byte header alone for ~0.5 s)."""
    from wandb_log import read_offline_run

    def read(path: str, key: str, timeout_s: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            rec = read_offline_run(path)
            if key in rec["summary"] or time.monotonic() > deadline:
                return rec
            time.sleep(0.1)

    return read
