"""``python -m bench run``: validate, train or load the zoo, score every cell, time every
(model, method, batch) cell with pytest-benchmark, collect tidy tables, write the report."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from . import cellfile, zoo
from .cells import GroupOutcome, record_error, remove_partial_writes, resume_state, run_group
from .collect import TIMING_STAMP, collect_run
from .config import RunConfig, check_output_writable
from .allocator import tune_host_allocator
from .device import resolve_device
from .executor import Executor, LocalExecutor, get_executor
from .grid import plan, unplanned, validate
from .manifest import PlannedGroup, build_manifest, write_manifest
from .progress import heartbeat, progress
from .settings import library_versions, model_spec

def git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                               timeout=5, cwd=Path(__file__).resolve().parent).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def prepare(config: RunConfig, executor: Executor | None = None) -> Path:
    """Everything that can fail before work starts: names, parameters, device, output directory."""
    validate(config)
    (executor or LocalExecutor()).check_device(config.device)
    run_dir = config.run_dir
    check_output_writable(run_dir)
    return run_dir


@dataclass(frozen=True)
class GroupTask:
    """``run_group`` as a picklable callable: a worker process resolves the device itself (its own GPU)."""

    config: RunConfig
    run_dir: Path  # absolute: a worker's working directory is its own

    def __call__(self, group: PlannedGroup) -> GroupOutcome:
        if not (self.run_dir / "config.json").is_file():
            raise FileNotFoundError(f"run directory {self.run_dir} is not visible on this worker's node: "
                                    "runs on several nodes need it on a shared filesystem")
        tune_host_allocator()  # a Ray worker is a process of its own (once per process)
        return run_group(self.config, group, self.run_dir, resolve_device(self.config.device).torch_device)


def device_info(name: str) -> dict:
    return resolve_device(name).info()


def prepare_zoo(config: RunConfig) -> list[dict]:
    """Train (or load) the zoo entries the grid needs, with the shuffled-label twins the sanity checks use."""
    zoo_names = [m for m in config.models if m in zoo.ENTRIES]
    needed = set(zoo_names) | {name for name, e in zoo.ENTRIES.items()
                               if e.role == "shuffled-labels" and any(zoo.ENTRIES[m].model == e.model for m in zoo_names)}
    return zoo.table(zoo.load_many(sorted(needed)))


def run(config: RunConfig, *, executor: str | Executor = "local", executor_options: dict | None = None,
        timing: bool | None = None, echo=print) -> Path:
    """Score, time and report the grid. ``executor``: a registered name (created and closed here) or an instance."""
    for warning in validate(config):  # before connecting anywhere
        echo(f"warning: {warning}")
    if not isinstance(executor, str):
        return _run(config, executor, timing, echo)
    pool = get_executor(executor, **(executor_options or {}))
    try:
        return _run(config, pool, timing, echo)
    finally:
        pool.close()


def _write_json(path: Path, payload: dict) -> None:
    cellfile.atomic_write(path, json.dumps(payload, indent=2, default=str).encode())


def _run(config: RunConfig, pool: Executor, timing: bool | None, echo) -> Path:
    run_dir = prepare(config, pool).resolve()
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    _write_json(run_dir / "config.json", config.to_dict())
    device = pool.exclusive(partial(device_info, config.device))
    echo(f"run {config.name}: {run_dir} on {device['device_name']} ({device['device']})")
    not_planned = unplanned(config)
    meta = {"run": config.name, "status": "running", "config": config.to_dict(), "git_revision": git_revision(),
            "versions": library_versions(), "device": device, "started": started, "finished": None,
            "notes": config.notes, "not_planned": not_planned}
    _write_json(run_dir / "metadata.json", meta)  # a run killed from here on is still described, as running
    _write_json(run_dir / "zoo.json", pool.exclusive(partial(prepare_zoo, config)))

    # The plan, with every cell's settings resolved (the zoo is trained now, so its weights have a
    # fingerprint), is written before any work: tables and reports are built from it alone.
    manifest = build_manifest(config)
    write_manifest(run_dir, manifest)
    groups = list(manifest.groups)
    remove_partial_writes(run_dir)
    # Finished groups are counted here, so a resumed run ships nothing for them to any worker.
    done, moved_aside = resume_state(groups, run_dir)
    for moved in moved_aside:
        echo(f"warning: {moved['file']} is {moved['problem']}: moved to {moved['moved_to']}, recomputing it")
    outcomes = [GroupOutcome(g, 0, len(g.cells), 0, 0.0) for g in groups if g in done]
    todo = [g for g in groups if g not in done]
    echo(f"scoring: {len(todo)} group(s) of {len(groups)} to compute ({sum(len(g.cells) for g in todo)} cells), "
         f"{len(outcomes)} finished earlier")
    bar = progress(total=len(groups), desc="cells", unit="group")
    bar.update(len(outcomes))
    for outcome in pool.map(GroupTask(config, run_dir), todo,
                            on_error=lambda group, error: record_error(config, group, run_dir, error)):
        outcomes.append(outcome)
        bar.update(1)
        bar.set_postfix_str(f"{outcome.group.model}/{outcome.group.method}", refresh=False)
    bar.close()
    computed = sum(o.computed for o in outcomes)
    skipped = sum(o.skipped for o in outcomes)
    errors = sum(o.errors for o in outcomes)
    refused = sum(o.not_applicable for o in outcomes)
    echo(f"cells: {computed} computed, {skipped} reused from an earlier run, {errors} errors, "
         f"{refused} not applicable (the method refused the architecture), "
         f"{len(not_planned)} not planned (excluded or not applicable: see the report's notes)")

    if config.filters:
        for failure in pool.exclusive(partial(write_filter_pages, config, run_dir)):
            echo(failure)
    for failure in pool.exclusive(partial(write_attention_pages, config, run_dir)):
        echo(failure)
    from .figures.embedding_pages import write_embedding_pages  # text models: the course report's analyses

    for failure in pool.exclusive(partial(write_embedding_pages, config, run_dir)):
        echo(failure)
    from .figures.cascade_strip import write_cascade_strips  # Adebayo et al.'s figure, one image per model

    for failure in pool.exclusive(partial(write_cascade_strips, config, run_dir)):
        echo(failure)
    if config.timing.enabled if timing is None else timing:
        echo(f"timing: pytest-benchmark over bench/suite/test_grid_timing.py, adaptive rounds (IQR at most "
             f"{config.timing.target_iqr:g} of the median; {config.timing.rounds}-{config.timing.max_rounds} rounds, "
             f"{config.timing.max_seconds:g} s per cell at most) ...")
        # An earlier benchmark.json is not this plan's: gone before timing, so that only a file this
        # timing run wrote gets the stamp below.
        (run_dir / TIMING_STAMP).unlink(missing_ok=True)
        (run_dir / "benchmark.json").unlink(missing_ok=True)
        with heartbeat("timing"):
            code = pool.exclusive(partial(run_timing, config, run_dir))
        if code not in (0, 5):
            echo(f"timing suite exited with {code}; failed timing cells are recorded in {run_dir / 'benchmark.json'}")
        if (run_dir / "benchmark.json").is_file():
            _write_json(run_dir / TIMING_STAMP, {"timing_hash": manifest.timing_hash})
    completeness = collect_run(run_dir)
    meta.update(status="complete" if completeness["complete"] else "partial", finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
                cells={"computed": computed, "reused": skipped, "errors": errors}, completeness=completeness)
    _write_json(run_dir / "metadata.json", meta)
    if config.report:
        from .report import build_report, summary_table

        with heartbeat("report"):
            report = build_report(run_dir)
        echo(summary_table(run_dir))
        echo(f"report: {report}")
    return run_dir


def write_filter_pages(config: RunConfig, run_dir: Path) -> list[str]:
    """One filters page per (model, dataset) of the grid; failures are returned (for the driver to print), not raised."""
    from .filters import report_page
    from .grid import load_subject

    device = resolve_device(config.device)
    failures = []
    for model_name, dataset in sorted({(g.model, g.dataset) for g in plan(config)}):
        try:
            subject = load_subject(config, model_name, dataset, device.torch_device)
            spec = model_spec(model_name)
            report_page(subject.model, spec, subject.x, run_dir / "figures", name=f"{model_name}__{dataset}",
                        steps=config.filters_steps, seed=config.seed)
        except Exception as error:  # a view is a nice-to-have: never lose the run for it
            failures.append(f"filters page for {model_name}/{dataset} failed: {type(error).__name__}: {error}")
    return failures


#: Images on a transformer's attention page (one row per layer each).
ATTENTION_PAGE_IMAGES = 2


def write_attention_pages(config: RunConfig, run_dir: Path) -> list[str]:
    """An attention page (class-token attention per layer and head, and the rollout) per transformer
    of the grid, ``figures/attention_<model>__<dataset>.png``; models without attention are skipped.
    Failures are returned (for the driver to print), not raised."""
    from adapters.attention import attention_layers
    from adapters.errors import AttributionError

    from .figures.attention import attention_figure
    from .grid import load_subject

    device = resolve_device(config.device)
    failures = []
    for model_name, dataset in sorted({(g.model, g.dataset) for g in plan(config)}):
        try:
            subject = load_subject(config, model_name, dataset, device.torch_device)
            try:
                attention_layers(subject.model)
            except AttributionError:
                continue  # not a transformer: no page
            out = run_dir / "figures" / f"attention_{model_name.replace('/', '_')}__{dataset}.png"
            attention_figure(subject.model, subject.images[:ATTENTION_PAGE_IMAGES], subject.x[:ATTENTION_PAGE_IMAGES], out)
        except Exception as error:  # a view is a nice-to-have: never lose the run for it
            failures.append(f"attention page for {model_name}/{dataset} failed: {type(error).__name__}: {error}")
    return failures


def run_timing(config: RunConfig, run_dir: Path) -> int:
    """pytest-benchmark over the grid's (model, method, batch size) cells, JSON into the run directory; its exit code.

    Nothing is echoed here: on Ray this runs on a worker, and the driver reports."""
    suite = Path(__file__).parent / "suite" / "test_grid_timing.py"
    json_path = run_dir / "benchmark.json"
    args = [sys.executable, "-m", "pytest", str(suite), "-q", "-p", "no:cacheprovider", "--benchmark-enable",
            "--benchmark-only", f"--benchmark-json={json_path}", "--benchmark-group-by=group",
            "--benchmark-sort=name", "--benchmark-columns=median,iqr,rounds",
            "--benchmark-timer=bench.timing.device_timer", "--bench-config", str(run_dir / "config.json"),
            "-o", "addopts=", "-W", "ignore::DeprecationWarning"]
    return subprocess.run(args, cwd=Path(__file__).resolve().parents[1]).returncode
