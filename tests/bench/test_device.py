"""The CUDA path of the device interface, exercised on a CPU-only machine with a fake torch.cuda."""
from __future__ import annotations

import pytest
import torch

from bench import timing
from bench.device import Device, DeviceError, is_out_of_memory, resolve_device


class FakeCuda:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def synchronize(self, device=None) -> None:
        self.calls.append("synchronize")

    def reset_peak_memory_stats(self, device=None) -> None:
        self.calls.append("reset")

    def max_memory_allocated(self, device=None) -> int:
        self.calls.append("peak")
        return 123_456

    def get_device_name(self, device=None) -> str:
        return "Fake H100"

    def get_device_capability(self, device=None) -> tuple[int, int]:
        return (9, 0)


@pytest.fixture
def fake_cuda(monkeypatch) -> FakeCuda:
    fake = FakeCuda()
    for name in ("synchronize", "reset_peak_memory_stats", "max_memory_allocated", "get_device_name",
                 "get_device_capability"):
        monkeypatch.setattr(torch.cuda, name, getattr(fake, name))
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91002)
    return fake


def test_cuda_timer_synchronises_before_every_clock_read(fake_cuda, monkeypatch) -> None:
    device = Device(torch.device("cuda", 0))
    clock = iter([1.0, 2.5])
    monkeypatch.setattr("bench.device.time.perf_counter", lambda: next(clock))
    first = device.time()
    assert fake_cuda.calls == ["synchronize"]
    second = device.time()
    assert fake_cuda.calls == ["synchronize", "synchronize"] and second - first == 1.5
    timing.set_active_device(device)
    try:
        monkeypatch.setattr("bench.device.time.perf_counter", lambda: 7.0)
        assert timing.device_timer() == 7.0 and fake_cuda.calls.count("synchronize") == 3
    finally:
        timing.set_active_device(resolve_device("cpu"))


def test_cuda_peak_memory_and_flags_are_read(fake_cuda) -> None:
    device = Device(torch.device("cuda", 0))
    device.reset_peak_memory()
    assert device.peak_memory_bytes() == 123_456
    assert fake_cuda.calls == ["reset", "peak"]
    info = device.info(torch.float16)
    assert info["device_name"] == "Fake H100" and info["cudnn"] == 91002 and info["capability"] == "9.0"
    assert info["dtype"] == "float16"
    assert {"tf32_matmul", "tf32_cudnn", "cudnn_benchmark", "cudnn_deterministic", "torch", "cuda"} <= set(info)


def test_cpu_device_never_touches_cuda(fake_cuda) -> None:
    device = resolve_device("cpu")
    device.time()
    device.reset_peak_memory()
    assert device.peak_memory_bytes() is None
    assert fake_cuda.calls == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_missing_cuda_is_a_clear_error() -> None:
    with pytest.raises(DeviceError, match="CUDA is not available"):
        resolve_device("cuda")
    assert resolve_device("auto").torch_device.type == "cpu"


def test_unknown_device_is_a_clear_error() -> None:
    with pytest.raises(DeviceError, match="unknown device 'tpu0'"):
        resolve_device("tpu0")


def test_out_of_memory_is_recognised() -> None:
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert not is_out_of_memory(RuntimeError("size mismatch"))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_real_cuda_timer_and_peak_memory() -> None:
    device = resolve_device("cuda")
    device.reset_peak_memory()
    a = torch.randn(2048, 2048, device=device.torch_device)
    start = device.time()
    (a @ a).sum()
    assert device.time() > start
    assert device.peak_memory_bytes() >= a.numel() * 4
