"""How the optimiser's own kernels run: ``eager`` PyTorch ops or ``compiled`` fused kernels.

The mask generator and the pyramid interpolation each have an eager form (plain ops; the float64
reference that agrees with TorchRay bit for bit on the tested sizes) and a fused form compiled by
``torch.compile`` (one pass per iteration over all rows, no per-candidate tensors, the flip folded
into the indexing). Both evaluate the same formulas; results agree to float rounding.

``auto`` picks ``compiled`` for float32 and lower precisions when compilation works here (a C++
compiler on CPU, Triton on GPU) and ``eager`` otherwise; float64 is the verification dtype and
runs eagerly. A compilation failure makes ``auto`` fall back to ``eager`` with a warning (once per
device type and dtype), and makes an explicit ``compiled`` raise.
"""
from __future__ import annotations

import threading
import warnings
from typing import Any, Callable, Sequence

import torch

BACKENDS: tuple[str, ...] = ("auto", "compiled", "eager")

_COMPILED: dict[str, Callable[..., object]] = {}
_LOCK = threading.Lock()
_BROKEN: dict[tuple[str, torch.dtype], str] = {}


def compiled(name: str, fn: Callable[..., object]) -> Callable[..., object]:
    """``torch.compile(fn)``, built once per name."""
    with _LOCK:
        if name not in _COMPILED:
            _COMPILED[name] = torch.compile(fn, fullgraph=True)
        return _COMPILED[name]


def call_rows(fn: Callable[..., Any], rows: Sequence[torch.Tensor], *constants: Any) -> Any:
    """``fn(*rows, *constants)`` for a compiled kernel whose ``rows`` tensors share a first (row) dimension.

    The row dimension is marked dynamic, so one kernel serves every batch size and treats each row
    alike: a row's result does not depend on how many rows share its call. PyTorch specialises
    size-1 dimensions, so a single row is sent twice and the copy dropped, to stay on that kernel.
    """
    single = rows[0].shape[0] == 1
    if single:
        rows = [torch.cat((r, r)) for r in rows]
    for r in rows:
        torch._dynamo.mark_dynamic(r, 0)
    out = fn(*rows, *constants)
    if single:
        out = tuple(o[:1] for o in out) if isinstance(out, tuple) else out[:1]
    return out


class Backend:
    """The kernel choice of one optimisation run: ``"auto"``, ``"compiled"`` or ``"eager"``."""

    def __init__(self, name: str = "auto", eager_block: int | None = None) -> None:
        if name not in BACKENDS:
            raise ValueError(f"unknown backend {name!r}; choose one of {list(BACKENDS)}")
        self.name = name
        #: Phases per eager smooth-max block (None: all phases of a row at once, the exact form).
        self.eager_block = eager_block
        self.resolved: str | None = None if name == "auto" else name
        self._checked = False

    def resolve(self, dtype: torch.dtype, device: torch.device, probe: Callable[[], None]) -> str:
        """Settle the choice for ``dtype`` on ``device``; ``probe`` runs the fused kernels once."""
        if self.resolved is None:
            self.resolved = "compiled" if dtype != torch.float64 and self._works(dtype, device, probe, False) else "eager"
            self._checked = True
        elif self.resolved == "compiled" and not self._checked:
            self._works(dtype, device, probe, True)
            self._checked = True
        return self.resolved

    @staticmethod
    def _works(dtype: torch.dtype, device: torch.device, probe: Callable[[], None], strict: bool) -> bool:
        key = (device.type, dtype)
        if key in _BROKEN and not strict:
            return False
        try:
            probe()
            return True
        except Exception as error:  # noqa: BLE001 - any compiler or toolchain failure means "use eager"
            if strict:
                raise RuntimeError(f"the compiled extremal kernels failed on {key}: {error}") from error
            _BROKEN[key] = f"{type(error).__name__}: {error}"
            warnings.warn(f"torch.compile is unavailable for the extremal kernels on {key} "
                          f"({type(error).__name__}); using the eager backend (slower, same results)",
                          RuntimeWarning, stacklevel=4)
            return False
