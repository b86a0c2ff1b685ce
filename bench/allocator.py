"""The host memory allocator the harness runs under: glibc's malloc, told to keep freed memory.

PyTorch's CPU tensors come from ``malloc``. glibc serves blocks above its mmap threshold (128 KiB
at first, raised dynamically up to 32 MiB) with fresh ``mmap`` calls and hands freed heap memory
back to the system above its trim threshold, so a forward pass whose activations are a few hundred
KiB to a few MiB (the zoo's 64-pixel models at a batch of 8-32) page-faults on memory it freed a
moment before. Measured here, torch 2.14 CPU, 1 thread, the zoo ViT on 32 images: a no-grad forward
39.9 ms -> 33.3 ms with the thresholds raised, and capturing its attention (one more (N, heads, T, T)
tensor per layer kept alive) +6 ms -> +0.5 ms. PyTorch's CPU performance guide recommends jemalloc or
tcmalloc for the same reason; raising glibc's thresholds needs no extra library.

:func:`tune_host_allocator` sets ``M_MMAP_THRESHOLD`` to 32 MiB (glibc's maximum on 64-bit) and
``M_TRIM_THRESHOLD`` to 1 GiB once per process. The benchmark command line and the benchmark suite
call it, never the library (``adapters``, ``metrics``): importing those must not change a user's
process. The method and its roofline run in the same process, so efficiencies compare like with
like; the setting is recorded with every timing (:func:`allocator_info`). ``BENCH_ALLOCATOR=default``
leaves glibc's defaults; on a non-glibc system nothing is changed and the record says so.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 1024 * 1024 * 1024

_state: dict[str, object] = {}


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
        return libc if hasattr(libc, "mallopt") else None
    except (OSError, AttributeError):
        return None


def tune_host_allocator() -> dict[str, object]:
    """Raise glibc's mmap and trim thresholds (once per process); returns :func:`allocator_info`."""
    if _state:
        return allocator_info()
    if os.environ.get("BENCH_ALLOCATOR", "").lower() == "default":
        _state.update(allocator="glibc defaults (BENCH_ALLOCATOR=default)")
        return allocator_info()
    libc = _glibc()
    if libc is None:
        _state.update(allocator="system default (not glibc: left as it is)")
        return allocator_info()
    applied = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(_M_TRIM_THRESHOLD,
                                                                                           TRIM_THRESHOLD))
    version = libc.gnu_get_libc_version().decode()
    _state.update(allocator=f"glibc {version}, mmap threshold {MMAP_THRESHOLD >> 20} MiB, trim threshold "
                            f"{TRIM_THRESHOLD >> 20} MiB" if applied else f"glibc {version} defaults (mallopt refused)")
    return allocator_info()


def allocator_info() -> dict[str, object]:
    """What the host allocator is set to in this process (``{"allocator": ...}``)."""
    return {"allocator": _state.get("allocator", "glibc defaults (not tuned)")}
