"""Which attention kernel a run gets: the exact XLA one unless cuDNN's is asked for, on a GPU in bf16."""
from types import SimpleNamespace

import pytest

from scaling.errors import UsageError
from scaling.train import step


def _on(monkeypatch, platform: str) -> None:
    monkeypatch.setattr(step.jax, "devices", lambda: [SimpleNamespace(platform=platform)])


def test_auto_attention_is_xla_even_on_a_gpu_in_bf16(monkeypatch):
    # cuDNN's kernel trained to a 1.5% higher loss than XLA's on an H200: a default must not move the law.
    _on(monkeypatch, "gpu")
    assert step.attention_implementation("auto", "bfloat16") == "xla"
    assert step.attention_implementation("cudnn", "bfloat16") == "cudnn"


@pytest.mark.parametrize("platform,dtype", [("cpu", "bfloat16"), ("gpu", "float32")])
def test_cudnn_attention_is_refused_off_a_gpu_or_in_float32(monkeypatch, platform, dtype):
    _on(monkeypatch, platform)
    with pytest.raises(UsageError, match="attention=cudnn needs"):
        step.attention_implementation("cudnn", dtype)
