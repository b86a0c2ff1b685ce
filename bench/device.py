"""A small device interface: placement, synchronised timing, peak memory and numeric flags.

Everything CUDA-specific lives here so that it can be unit-tested on a CPU-only machine (the
tests replace ``torch.cuda`` functions and check that the timer synchronises and the readings are
taken), and so that the first GPU run is not the first time this code runs.
"""
from __future__ import annotations

import platform
import time
from dataclasses import dataclass

import torch

from .allocator import allocator_info


class DeviceError(ValueError):
    """A device that is not there (e.g. ``cuda`` on a machine without a GPU)."""


@dataclass(frozen=True)
class Device:
    """A resolved torch device with the operations timing needs."""

    torch_device: torch.device

    @property
    def is_cuda(self) -> bool:
        return self.torch_device.type == "cuda"

    def synchronize(self) -> None:
        """Wait for queued kernels: on CUDA a clock read before this measures only the launch."""
        if self.is_cuda:
            torch.cuda.synchronize(self.torch_device)

    def time(self) -> float:
        """A clock reading taken after synchronising (use as a pytest-benchmark timer)."""
        self.synchronize()
        return time.perf_counter()

    def reset_peak_memory(self) -> None:
        if self.is_cuda:
            torch.cuda.reset_peak_memory_stats(self.torch_device)

    def peak_memory_bytes(self) -> int | None:
        """Peak allocated device memory since the last reset; None on the CPU (no allocator statistics)."""
        if self.is_cuda:
            return int(torch.cuda.max_memory_allocated(self.torch_device))
        return None

    def name(self) -> str:
        if self.is_cuda:
            return torch.cuda.get_device_name(self.torch_device)
        return _cpu_model() or platform.processor() or platform.machine() or "cpu"

    def info(self, dtype: torch.dtype = torch.float32) -> dict:
        """What a timing depends on: device name, dtype, TF32 and cuDNN settings, versions."""
        info = {
            "device": str(self.torch_device), "device_name": self.name(), "dtype": str(dtype).replace("torch.", ""),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
            "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
            "cuda": torch.version.cuda, "cudnn": None, **allocator_info(),
        }
        if self.is_cuda:
            info["cudnn"] = torch.backends.cudnn.version()
            info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(self.torch_device)))
        return info


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def resolve_device(name: str = "auto") -> Device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``; a missing GPU is a clear error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} requested but CUDA is not available on this machine "
                              "(use --device cpu or auto)")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
        device = torch.device("cuda", index)
    elif device.type != "cpu":
        raise DeviceError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    return Device(device)


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA (and CPU allocator) out-of-memory errors, which the runner retries with smaller batches."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()
