"""The grid on a Ray cluster: a pool of actors, one per GPU (or per CPU slot on a CPU-only cluster).

Actors live as long as the executor, so each keeps its models loaded (``grid.load_subject``'s
cache lives in the actor's process) across groups and runs. A group goes to whichever actor is
free, so a slow LIME group holds up one actor, not the grid. A group whose task raises or whose
actor dies is retried (on a fresh actor if it died), then handed to ``on_error``.

Workers write results into the run directory themselves, so every node must see it, the
checkout and the zoo cache at the same paths (a shared filesystem).
"""
from __future__ import annotations

import os
import socket
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, TypeVar

import ray
from ray.exceptions import RayError, RayTaskError

from .device import DeviceError
from .executor import DEFAULT_RETRIES, ExecutorError

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Layout:
    """How many workers the cluster holds and what each one asks Ray for."""

    workers: int
    cpus: int  # per worker; also its torch intra-op thread count
    gpus: int  # per worker: 1 on a GPU cluster, 0 otherwise
    node_cpus: int  # the largest node's CPUs: what a CPU-only exclusive task holds


def plan_workers(nodes: list[dict[str, float]]) -> Layout:
    """One worker per GPU, with the CPUs of its node shared out; one per CPU slot without GPUs."""
    node_cpus = max((int(n.get("CPU", 0)) for n in nodes), default=0)
    gpu_nodes = [n for n in nodes if int(n.get("GPU", 0)) >= 1]
    if gpu_nodes:
        # The scarcest node sets the share, so every GPU's worker fits on its own node.
        cpus = min(int(n.get("CPU", 0)) // int(n["GPU"]) for n in gpu_nodes)
        return Layout(sum(int(n["GPU"]) for n in gpu_nodes), cpus, 1, node_cpus)
    return Layout(sum(int(n.get("CPU", 0)) for n in nodes), 1, 0, node_cpus)


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds with a clear message instead of Ray's long connection retries."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"--address must be HOST:PORT (e.g. 10.0.0.1:6379), 'auto' or ray://..., got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        raise ExecutorError(f"cannot reach a Ray cluster at {address} ({error}); start one there with "
                            "`ray start --head`, or leave --address out to start a local one") from error


def connect(address: str | None) -> bool:
    """Join the cluster at ``address`` (None: a running local one, else start one); True if this call connected."""
    if address and address != "auto" and not address.startswith("ray://"):
        check_reachable(address)
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, logging_level="WARNING", log_to_driver=True)
    except (ConnectionError, RuntimeError) as error:
        raise ExecutorError(f"cannot connect to the Ray cluster at {address or 'local'}: {error}") from error
    return True


def _enter(cwd: str, threads: int) -> None:
    # Relative paths in a configuration mean what they meant on the driver (shared filesystem).
    if os.path.isdir(cwd):
        os.chdir(cwd)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # for subprocesses, e.g. the timing suite
    import torch

    torch.set_num_threads(threads)


@ray.remote
class _Worker:
    def __init__(self, cwd: str, threads: int) -> None:
        _enter(cwd, threads)

    def call(self, fn: Callable, *args):
        return fn(*args)


@ray.remote
def _alone(cwd: str, threads: int, fn: Callable):
    _enter(cwd, threads)
    return fn()


def _cause(error: RayError) -> BaseException:
    """The worker's own exception (e.g. ValueError), so error rows read as they do locally."""
    cause = getattr(error, "cause", None) if isinstance(error, RayTaskError) else None
    if isinstance(cause, BaseException):
        cause.add_note(f"raised on a Ray worker:\n{error}")  # str() of a task error is its remote traceback
        return cause
    return error


class RayExecutor:
    """Groups on a pool of Ray actors; see the module docstring."""

    def __init__(self, address: str | None = None, retries: int = DEFAULT_RETRIES) -> None:
        if retries < 0:
            raise ExecutorError(f"retries must be >= 0, got {retries}")
        self.retries = retries
        self._connected = connect(address)
        self.layout = plan_workers([n["Resources"] for n in ray.nodes() if n.get("Alive")])
        if self.layout.workers < 1:
            raise ExecutorError("the Ray cluster has no CPU or GPU to run workers on")
        self._actors: list = []
        self._cwd = os.getcwd()

    def check_device(self, name: str) -> None:
        if name.startswith("cuda") and not self.layout.gpus:
            raise DeviceError(f"device {name!r} requested but the Ray cluster has no GPUs (use --device cpu or auto)")

    def _new_actor(self):
        return _Worker.options(num_cpus=self.layout.cpus, num_gpus=self.layout.gpus).remote(
            self._cwd, max(1, self.layout.cpus))

    def _grow(self, size: int) -> None:
        while len(self._actors) < size:
            self._actors.append(self._new_actor())

    def _replace(self, actor):
        ray.kill(actor)
        self._actors[self._actors.index(actor)] = fresh = self._new_actor()
        return fresh

    def map(self, fn: Callable[[T], R], items: Iterable[T],
            on_error: Callable[[T, BaseException], R] | None = None) -> Iterator[R]:
        queue = deque((item, 1) for item in items)
        if not queue:
            return
        fn_ref = ray.put(fn)  # shipped once, not once per group
        self._grow(min(self.layout.workers, len(queue)))
        idle, running = list(self._actors), {}
        while queue or running:
            while queue and idle:
                item, attempt = queue.popleft()
                actor = idle.pop()
                running[actor.call.remote(fn_ref, item)] = (actor, item, attempt)
            [done], _ = ray.wait(list(running), num_returns=1)
            actor, item, attempt = running.pop(done)
            try:
                result = ray.get(done)
            except RayTaskError as error:  # fn raised: the actor itself is fine
                idle.append(actor)
                failure: BaseException = _cause(error)
            except RayError as error:  # the actor died (crash, host out of memory, lost node)
                idle.append(self._replace(actor))
                failure = error
            else:
                idle.append(actor)
                yield result
                continue
            if attempt <= self.retries:
                queue.append((item, attempt + 1))  # behind the other groups: a transient fault may pass
            elif on_error is None:
                raise failure
            else:
                failure.add_note(f"failed {attempt} time(s) on the Ray executor")
                yield on_error(item, failure)

    def exclusive(self, fn: Callable[[], R]) -> R:
        """On a GPU cluster, on one pool actor (it holds a whole GPU); otherwise a task holding all of a node's CPUs."""
        try:
            if self.layout.gpus:
                self._grow(1)
                return ray.get(self._actors[0].call.remote(fn))
            self._release()  # the pool holds CPU slots that the task needs
            return ray.get(_alone.options(num_cpus=self.layout.node_cpus).remote(self._cwd, self.layout.node_cpus, fn))
        except RayTaskError as error:
            raise _cause(error) from None

    def _release(self) -> None:
        for actor in self._actors:
            ray.kill(actor)
        self._actors = []

    def close(self) -> None:
        self._release()
        if self._connected:
            ray.shutdown()
