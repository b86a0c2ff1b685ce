"""Executors: how groups of cells are run. The local one runs them serially in this process; the
Ray one (``bench.ray_executor``, an optional extra) spreads the same groups, with the same
function, over the GPUs or CPU slots of a cluster."""
from __future__ import annotations

import inspect
from typing import Callable, Iterable, Iterator, Protocol, TypeVar

from .device import resolve_device

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_RETRIES = 2


class ExecutorError(ValueError):
    """An executor that cannot run here (unknown name, missing extra, unreachable cluster)."""


class Executor(Protocol):
    def map(self, fn: Callable[[T], R], items: Iterable[T],
            on_error: Callable[[T, BaseException], R] | None = None) -> Iterator[R]:
        """Apply ``fn`` to every item, yielding results as they finish (order not guaranteed).

        An item whose ``fn`` raises (after the executor's retries) yields ``on_error(item, error)``,
        or raises when ``on_error`` is None."""

    def exclusive(self, fn: Callable[[], R]) -> R:
        """Run ``fn`` alone on one whole device (timing, training): never packed with other work."""

    def check_device(self, name: str) -> None:
        """Raise ``DeviceError`` when the workers cannot have device ``name`` (auto, cpu, cuda[:N])."""

    def close(self) -> None:
        """Release workers and connections."""


class LocalExecutor:
    """Serial execution in this process (models stay cached between groups)."""

    def map(self, fn: Callable[[T], R], items: Iterable[T],
            on_error: Callable[[T, BaseException], R] | None = None) -> Iterator[R]:
        for item in items:
            try:
                result = fn(item)
            except Exception as error:  # a retry in the same process would fail the same way
                if on_error is None:
                    raise
                result = on_error(item, error)
            yield result

    def exclusive(self, fn: Callable[[], R]) -> R:
        return fn()

    def check_device(self, name: str) -> None:
        resolve_device(name)

    def close(self) -> None:
        pass


def _ray_executor(address: str | None = None, retries: int = DEFAULT_RETRIES) -> Executor:
    """Imported on demand: Ray is an optional extra, and its import costs seconds."""
    try:
        from .ray_executor import RayExecutor
    except ModuleNotFoundError as error:
        if error.name != "ray":
            raise
        raise ExecutorError("the ray executor needs Ray, an optional extra: pip install -e .[ray]") from error
    return RayExecutor(address=address, retries=retries)


EXECUTORS: dict[str, Callable[..., Executor]] = {"local": LocalExecutor, "ray": _ray_executor}


def get_executor(name: str, **options) -> Executor:
    """The executor ``name`` with ``options`` (e.g. ``address``, ``retries`` for ray); checked before any work."""
    if name not in EXECUTORS:
        raise ExecutorError(f"unknown executor {name!r}; available: {', '.join(EXECUTORS)}")
    factory = EXECUTORS[name]
    unknown = sorted(set(options) - set(inspect.signature(factory).parameters))
    if unknown:
        raise ExecutorError(f"executor {name!r} takes no option(s) {', '.join(unknown)}")
    return factory(**options)
