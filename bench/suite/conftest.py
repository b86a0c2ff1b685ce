"""pytest-benchmark plugin glue: the run's configuration, and machine info for torch/CUDA/cuDNN."""
from __future__ import annotations

import os

import pytest
import torch

from bench.allocator import allocator_info, tune_host_allocator


def pytest_addoption(parser) -> None:
    parser.addoption("--bench-config", default=None,
                     help="JSON or TOML run configuration (or a shipped name) that the grid timing reads")


def pytest_configure(config) -> None:
    # The suite times on the host allocator the benchmark command line uses (bench/allocator.py).
    tune_host_allocator()


def pytest_benchmark_update_machine_info(config, machine_info: dict) -> None:
    machine_info["torch"] = torch.__version__
    machine_info["cuda"] = torch.version.cuda
    machine_info["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    machine_info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    machine_info["torch_threads"] = torch.get_num_threads()
    machine_info.update(allocator_info())


@pytest.fixture(scope="module", autouse=True)
def bench_threads():
    """``BENCH_THREADS`` sets torch's intra-op threads for each benchmark module (default: torch's own
    choice); the caller's setting is restored afterwards. One thread is the fair choice on a shared CPU."""
    saved = torch.get_num_threads()
    if os.environ.get("BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
    yield torch.get_num_threads()
    torch.set_num_threads(saved)
