"""bench.allocator: glibc's thresholds raised once per process, opted out by BENCH_ALLOCATOR=default,
and recorded in the device information every timing carries."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

SCRIPT = ("import json; from bench.allocator import tune_host_allocator, allocator_info; "
          "before = allocator_info(); first = tune_host_allocator(); second = tune_host_allocator(); "
          "from bench.device import resolve_device; "
          "print(json.dumps([before, first, second, resolve_device('cpu').info()['allocator']]))")


def _run(**env: str) -> list:
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True,
                            env={**os.environ, **env})
    return json.loads(result.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the thresholds are glibc's")
def test_tuning_raises_glibcs_thresholds_once_and_is_recorded():
    before, first, second, recorded = _run(BENCH_ALLOCATOR="")
    assert before == {"allocator": "glibc defaults (not tuned)"}
    assert "mmap threshold 32 MiB" in first["allocator"] and "trim threshold 1024 MiB" in first["allocator"]
    assert second == first and recorded == first["allocator"]


def test_default_leaves_the_allocator_alone():
    _, first, _, recorded = _run(BENCH_ALLOCATOR="default")
    assert first == {"allocator": "glibc defaults (BENCH_ALLOCATOR=default)"} and recorded == first["allocator"]


def test_the_library_does_not_tune_on_import():
    script = "import adapters, metrics; from bench.allocator import allocator_info; print(allocator_info()['allocator'])"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "glibc defaults (not tuned)"
