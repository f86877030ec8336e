"""Which attention kernel a run gets, and what it costs in FLOPs: cuDNN's fused kernel on NVIDIA GPUs where
it applies, XLA's one fused call on other accelerators, the fastest on CPU; every kernel gives the same
loss, and the run records the kernel and the attention convention its flops_model counts."""
import json
import os
from types import SimpleNamespace

import jax
import numpy as np
import pytest
import yaml

from scaling.config import RunConfig
from scaling.errors import UsageError
from scaling.family import shape_for_width
from scaling.model import attention_fraction
from scaling.train import plan_run, step, train_run


def _on(monkeypatch, platform: str, capability: str = "9.0", version: str = "cuda 12080") -> None:
    device = SimpleNamespace(platform=platform, compute_capability=capability,
                             client=SimpleNamespace(platform_version=version))
    monkeypatch.setattr(step.jax, "devices", lambda: [device])


def test_auto_attention_is_cudnn_on_an_nvidia_gpu_in_bf16_and_one_xla_call_on_other_accelerators(monkeypatch):
    _on(monkeypatch, "gpu")
    assert step.attention_implementation("auto", "bfloat16", 64) == "cudnn"
    assert step.attention_implementation("auto", "float32", 64) == "xla"  # cuDNN's flash kernel is half precision
    assert step.attention_implementation("auto", "bfloat16", 256) == "xla"  # beyond its head_dim
    _on(monkeypatch, "gpu", capability="7.0")  # before Ampere
    assert step.attention_implementation("auto", "bfloat16", 64) == "xla"
    _on(monkeypatch, "gpu", version="rocm 6.2")
    assert step.attention_implementation("auto", "bfloat16", 64) == "xla"
    _on(monkeypatch, "tpu", version="")
    assert step.attention_implementation("auto", "bfloat16", 128) == "xla"


def test_auto_attention_on_cpu_is_the_measured_fastest_and_explicit_kernels_run_as_asked(monkeypatch):
    _on(monkeypatch, "cpu", version="")
    assert step.attention_implementation("auto", "float32", 16) == step.CPU_ATTENTION == "blocks"
    assert step.attention_implementation("xla", "float32", 16) == "xla"
    _on(monkeypatch, "gpu")
    assert step.attention_implementation("blocks", "bfloat16", 64) == "blocks"
    assert step.attention_implementation("xla", "bfloat16", 64) == "xla"


@pytest.mark.parametrize("platform,dtype", [("cpu", "bfloat16"), ("gpu", "float32"), ("tpu", "bfloat16")])
def test_cudnn_attention_is_refused_off_an_nvidia_gpu_or_in_float32(monkeypatch, platform, dtype):
    _on(monkeypatch, platform)
    with pytest.raises(UsageError, match="attention=cudnn needs"):
        step.attention_implementation("cudnn", dtype)


def test_the_kernels_give_the_same_loss_at_fp32():
    # seq 128: two query blocks, so `blocks` runs its loop and `xla` the one masked square
    shape = shape_for_width(32, n_layers=2, seq_len=128)
    tokens = np.random.default_rng(0).integers(0, shape.vocab_size, (4, 129)).astype(np.int32)
    losses = {}
    for kernel in ("blocks", "xla"):
        fns = step.step_functions(shape, "float32", 0.9, 0.95, 0.1, 1.0, attention=kernel)
        params, _ = fns.init(np.uint32(0))
        losses[kernel] = float(jax.jit(fns.loss)(params, tokens[:, :-1], tokens[:, 1:]))
    assert losses["xla"] == pytest.approx(losses["blocks"], abs=1e-5)


def test_a_run_records_the_kernel_it_ran_and_counts_flops_model_by_its_convention(home, tiny):
    cfg = {k: v for k, v in (i.split("=") for i in tiny)} | {"tokens": 128 * 4, "wandb": "off", "seq_len": 128,
                                                              "attention": "xla", "run_id": "fused"}
    summary = train_run(plan_run(RunConfig.from_dict(cfg)), home)
    with open(os.path.join(home, "fused", "config.yaml")) as fh:
        resolved = yaml.safe_load(fh)["resolved"]
    with open(os.path.join(home, "fused", "summary.json")) as fh:
        assert json.load(fh)["attention"] == "xla"
    shape = plan_run(RunConfig.from_dict(cfg)).shape
    assert resolved["attention"] == summary["attention"] == "xla"
    assert resolved["attention_flops"] == summary["attention_flops"] == "full_square"
    assert summary["flops_model"] == pytest.approx(shape.flops_per_token(1.0) * summary["tokens"])
    assert summary["flops_model"] > shape.flops_per_token(attention_fraction("blocks", shape)) * summary["tokens"]
