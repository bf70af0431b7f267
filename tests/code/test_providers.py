"""Execution providers: TensorRT (FP16) and CUDA where a GPU has them, else the CPU, said once."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from models import onnx_model


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    onnx_model.accelerated_providers.cache_clear()
    yield
    onnx_model.accelerated_providers.cache_clear()


def _fake(monkeypatch: pytest.MonkeyPatch, available: list[str], gpu: bool) -> None:
    import torch

    monkeypatch.setattr(onnx_model.ort, "get_available_providers", lambda: available)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)


def test_a_gpu_host_gets_a_cached_fp16_tensorrt_engine_then_cuda(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    _fake(monkeypatch, ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"], gpu=True)
    chosen = onnx_model.providers()
    assert [p if isinstance(p, str) else p[0] for p in chosen] == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    options = chosen[0][1]
    assert options["trt_fp16_enable"] is True and options["trt_engine_cache_enable"] is True
    assert Path(options["trt_engine_cache_path"]).is_dir() and str(tmp_path) in options["trt_engine_cache_path"]
    assert onnx_model.providers(accelerate=False) == ["CPUExecutionProvider"]


def test_providers_without_a_visible_gpu_are_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake(monkeypatch, ["CUDAExecutionProvider", "CPUExecutionProvider"], gpu=False)
    assert onnx_model.providers() == ["CPUExecutionProvider"]


def test_the_cpu_fallback_is_said_once(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    _fake(monkeypatch, ["CPUExecutionProvider"], gpu=False)
    with caplog.at_level(logging.INFO, logger="models.onnx_model"):
        for _ in range(3):
            assert onnx_model.providers() == ["CPUExecutionProvider"]
    said = [r for r in caplog.records if "CPU provider" in r.getMessage()]
    assert len(said) == 1
