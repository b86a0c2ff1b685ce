"""The Ray executor on a local 2-CPU cluster with 2 logical GPUs: same scores as the local executor,
resume, retries then error rows, one worker per GPU, dynamic dispatch, clear errors.

Slow (a Ray cluster and two torch worker processes start once for the module, ~30 s on a busy
2-core machine) but part of ``make test``; ``-m "not slow"`` leaves it out of the quick path."""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ray = pytest.importorskip("ray")

from bench import cli  # noqa: E402
from bench.device import DeviceError  # noqa: E402
from bench.executor import ExecutorError, get_executor  # noqa: E402
from bench.grid import Group, _load_subject, load_subject  # noqa: E402
from bench.ray_executor import Layout, RayExecutor, plan_workers  # noqa: E402
from bench.runner import run  # noqa: E402
from test_runner import _config  # noqa: E402  (the same tiny grid as the local runner's tests)

pytestmark = pytest.mark.slow

# Workers cannot import this test module: its callables travel by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def executor():
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, logging_level="WARNING")
    pool = RayExecutor(retries=2)  # joins the cluster above; its actors live for the whole module
    yield pool
    pool.close()
    ray.shutdown()


def _quiet(*_):
    pass


def test_ray_scores_are_bit_identical_to_local(executor, tmp_path) -> None:
    torch.set_num_threads(1)  # Ray workers run one intra-op thread per CPU slot; the local run matches it
    local = run(_config(tmp_path / "local"), echo=_quiet)
    distributed = run(_config(tmp_path / "ray"), executor=executor, echo=_quiet)
    assert (distributed / "scores.csv").read_bytes() == (local / "scores.csv").read_bytes()
    assert (distributed / "curves.csv").read_bytes() == (local / "curves.csv").read_bytes()
    for maps in (local / "maps").glob("*.pt"):
        assert torch.equal(torch.load(maps)["maps"], torch.load(distributed / "maps" / maps.name)["maps"])
    assert sorted(p.name for p in (distributed / "cells").iterdir()) == sorted(p.name for p in (local / "cells").iterdir())
    assert json.loads((distributed / "metadata.json").read_text())["cells"] == {"computed": 6, "reused": 0, "errors": 0}


def test_a_rerun_skips_finished_cells_and_computes_only_missing_ones(executor, tmp_path) -> None:
    config = _config(tmp_path, methods={"saliency": {}, "random": {}})
    run_dir = run(config, executor=executor, echo=_quiet)
    stamps = {p: p.stat().st_mtime_ns for p in (run_dir / "cells").iterdir()}
    again = run(config, executor=executor, echo=_quiet)
    assert json.loads((again / "metadata.json").read_text())["cells"] == {"computed": 0, "reused": 4, "errors": 0}
    assert {p: p.stat().st_mtime_ns for p in (run_dir / "cells").iterdir()} == stamps

    missing = next(p for p in stamps if "random" in p.name and "deletion" in p.name)
    missing.unlink()
    resumed = run(config, executor=executor, echo=_quiet)
    assert json.loads((resumed / "metadata.json").read_text())["cells"] == {"computed": 1, "reused": 3, "errors": 0}
    assert missing.is_file() and all(p.stat().st_mtime_ns == t for p, t in stamps.items() if p != missing)


@dataclass(frozen=True)
class FailOn:
    """Wraps the runner's group task: the first try of ``method``'s group kills its worker, later tries raise."""

    task: object
    method: str
    attempts: Path

    def __call__(self, group: Group):
        if group.method != self.method:
            return self.task(group)
        with self.attempts.open("a") as log:
            log.write(f"{os.getpid()}\n")
        if len(self.attempts.read_text().split()) == 1:
            os._exit(1)  # a crashed worker process: Ray reports the actor dead
        raise RuntimeError("injected failure")


@dataclass
class Faulty:
    """The Ray executor with a fault injected into the task it is given."""

    inner: RayExecutor
    method: str
    attempts: Path

    def map(self, fn, items, on_error=None):
        return self.inner.map(FailOn(fn, self.method, self.attempts), items, on_error)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_failing_group_is_retried_then_recorded_as_error_rows(executor, tmp_path) -> None:
    attempts = tmp_path / "attempts.txt"
    run_dir = run(_config(tmp_path), executor=Faulty(executor, "random", attempts), echo=_quiet)
    assert len(attempts.read_text().split()) == 1 + executor.retries
    assert json.loads((run_dir / "metadata.json").read_text())["cells"] == {"computed": 4, "reused": 0, "errors": 2}
    import pandas as pd

    scores = pd.read_csv(run_dir / "scores.csv", keep_default_na=False)
    failed = scores[scores.method == "random"]
    assert set(failed.status) == {"error"} and set(failed.metric) == {"deletion", "pointing_game"}
    assert set(failed.error) == {"RuntimeError: injected failure"}
    assert (scores[scores.method != "random"].status == "ok").all()
    cell = json.loads(next((run_dir / "cells").glob("*random*deletion*.json")).read_text())["content"]
    assert "failed 3 time(s) on the Ray executor" in cell["traceback"]
    assert len(executor._actors) == 2  # the dead worker was replaced


@dataclass(frozen=True)
class WhereAmI:
    config: object
    delay: float = 0.2

    def __call__(self, item):
        load_subject(self.config, "small_cnn", "synthetic", torch.device("cpu"))
        time.sleep(self.delay)
        return os.getpid(), tuple(str(i) for i in ray.get_gpu_ids()), _load_subject.cache_info().misses


def test_one_worker_per_logical_gpu_each_keeps_its_models_loaded(executor, tmp_path) -> None:
    assert executor.layout == Layout(workers=2, cpus=1, gpus=1, node_cpus=2)
    results = list(executor.map(WhereAmI(_config(tmp_path)), range(8)))
    gpus_by_pid: dict[int, set] = {}
    misses_by_pid: dict[int, set] = {}
    for pid, gpus, misses in results:
        gpus_by_pid.setdefault(pid, set()).add(gpus)
        misses_by_pid.setdefault(pid, set()).add(misses)
    assert len(gpus_by_pid) == 2 and all(len(g) == 1 and len(next(iter(g))) == 1 for g in gpus_by_pid.values())
    assert {next(iter(g)) for g in gpus_by_pid.values()} == {("0",), ("1",)}
    assert all(len(m) == 1 for m in misses_by_pid.values())  # loaded before, or on the first call: never again
    assert len(executor.exclusive(lambda: ray.get_gpu_ids())) == 1  # timing holds one whole GPU


def test_a_slow_group_does_not_hold_up_the_others(executor) -> None:
    order = list(executor.map(lambda item: time.sleep(3 if item == "slow" else 0.05) or item,
                              ["slow", "a", "b", "c", "d", "e"]))
    assert order[-1] == "slow" and sorted(order[:-1]) == ["a", "b", "c", "d", "e"]


def test_worker_layouts_follow_the_cluster() -> None:
    assert plan_workers([{"CPU": 8.0}, {"CPU": 4.0}]) == Layout(12, 1, 0, 8)
    gpu_cluster = [{"CPU": 16.0, "GPU": 4.0}, {"CPU": 8.0, "GPU": 4.0}, {"CPU": 4.0}]
    assert plan_workers(gpu_cluster) == Layout(8, 2, 1, 16)


def test_unreachable_address_and_missing_ray_are_clear_errors(monkeypatch, capsys, tmp_path) -> None:
    with pytest.raises(ExecutorError, match="cannot reach a Ray cluster at 127.0.0.1:1"):
        get_executor("ray", address="127.0.0.1:1")
    with pytest.raises(ExecutorError, match="HOST:PORT"):
        get_executor("ray", address="no-port")
    code = cli.main(["run", "--config", "quick", "--executor", "ray", "--address", "127.0.0.1:1",
                     "--output", str(tmp_path)])
    assert code == 2 and "cannot reach a Ray cluster" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing was started
    assert cli.main(["run", "--config", "quick", "--executor", "spark"]) == 2
    assert "unknown executor 'spark'" in capsys.readouterr().err

    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    monkeypatch.delitem(sys.modules, "bench.ray_executor")
    with pytest.raises(ExecutorError, match=r"pip install -e \.\[ray\]"):
        get_executor("ray")


def test_a_cpu_cluster_gets_one_worker_per_cpu_and_exclusive_work_holds_the_whole_node(executor) -> None:
    executor._release()  # the GPU pool's actors hold both CPUs
    cpu_pool = RayExecutor(retries=0)  # joins the module's cluster (and leaves it running on close)
    cpu_pool.layout = plan_workers([{"CPU": 2.0}])  # as if the cluster had no GPUs
    try:
        with pytest.raises(DeviceError, match="no GPUs"):
            cpu_pool.check_device("cuda")
        resources, threads = cpu_pool.exclusive(
            lambda: (ray.get_runtime_context().get_assigned_resources(), torch.get_num_threads()))
        assert resources.get("CPU") == 2.0 and not resources.get("GPU") and threads == 2
        results = list(cpu_pool.map(lambda _: (os.getpid(), tuple(ray.get_gpu_ids())), range(4)))
        assert len({pid for pid, _ in results}) == 2 and {gpus for _, gpus in results} == {()}
    finally:
        cpu_pool.close()
    assert ray.is_initialized()
