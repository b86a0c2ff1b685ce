"""``python -m bench run``: validate, train or load the zoo, score every cell, time every
(model, method, batch) cell with pytest-benchmark, collect tidy tables, write the report."""
from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from importlib import metadata as importlib_metadata
from pathlib import Path


from . import zoo
from .cells import GroupOutcome, run_group
from .collect import collect_run
from .config import RunConfig, check_output_writable
from .device import resolve_device
from .executor import get_executor
from .grid import plan, validate
from .progress import progress

LIBRARIES = ("torch", "torchvision", "captum", "lime", "scikit-image", "numpy", "pandas", "pytest-benchmark")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                               timeout=5, cwd=Path(__file__).resolve().parent).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def prepare(config: RunConfig) -> Path:
    """Everything that can fail before work starts: names, parameters, device, output directory."""
    validate(config)
    resolve_device(config.device)
    run_dir = config.run_dir
    check_output_writable(run_dir)
    return run_dir


def run(config: RunConfig, *, executor: str = "local", timing: bool | None = None, echo=print) -> Path:
    run_dir = prepare(config)
    device = resolve_device(config.device)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    echo(f"run {config.name}: {run_dir} on {device.name()} ({device.torch_device})")

    zoo_names = [m for m in config.models if m in zoo.ENTRIES]
    needed = set(zoo_names) | {name for name, e in zoo.ENTRIES.items()
                               if e.role == "shuffled-labels" and any(zoo.ENTRIES[m].model == e.model for m in zoo_names)}
    trained = [zoo.load(name) for name in sorted(needed)]
    (run_dir / "zoo.json").write_text(json.dumps(zoo.table(trained), indent=2))

    groups = plan(config)
    bar = progress(total=len(groups), desc="cells", unit="group")
    outcomes: list[GroupOutcome] = []
    for outcome in get_executor(executor).map(lambda g: run_group(config, g, run_dir, device.torch_device), groups):
        outcomes.append(outcome)
        bar.update(1)
        bar.set_postfix_str(f"{outcome.group.model}/{outcome.group.method}", refresh=False)
    bar.close()
    computed = sum(o.computed for o in outcomes)
    skipped = sum(o.skipped for o in outcomes)
    errors = sum(o.errors for o in outcomes)
    echo(f"cells: {computed} computed, {skipped} reused from an earlier run, {errors} errors")

    if config.filters:
        write_filter_pages(config, run_dir, device, echo)
    if config.timing.enabled if timing is None else timing:
        run_timing(config, run_dir, echo=echo)
    collect_run(run_dir)
    meta = {"run": config.name, "config": config.to_dict(), "git_revision": git_revision(),
            "versions": library_versions(), "device": device.info(), "started": started,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "notes": config.notes,
            "cells": {"computed": computed, "reused": skipped, "errors": errors}}
    (run_dir / "metadata.json").write_text(json.dumps(meta, indent=2, default=str))
    if config.report:
        from .report import build_report, summary_table

        report = build_report(run_dir)
        echo(summary_table(run_dir))
        echo(f"report: {report}")
    return run_dir


def write_filter_pages(config: RunConfig, run_dir: Path, device, echo=print) -> None:
    """One filters page per (model, dataset) of the grid; a failure is reported and the run goes on."""
    from .filters import report_page
    from .grid import load_subject
    from .models import get_spec

    for model_name, dataset in sorted({(g.model, g.dataset) for g in plan(config)}):
        try:
            subject = load_subject(config, model_name, dataset, device.torch_device)
            spec = zoo.ENTRIES[model_name].spec() if model_name in zoo.ENTRIES else get_spec(model_name)
            report_page(subject.model, spec, subject.x, run_dir / "figures", name=f"{model_name}__{dataset}",
                        steps=config.filters_steps, seed=config.seed)
        except Exception as error:  # a view is a nice-to-have: never lose the run for it
            echo(f"filters page for {model_name}/{dataset} failed: {type(error).__name__}: {error}")


def run_timing(config: RunConfig, run_dir: Path, echo=print) -> int:
    """pytest-benchmark over the grid's (model, method, batch size) cells, JSON into the run directory."""
    suite = Path(__file__).parent / "suite" / "test_grid_timing.py"
    json_path = run_dir / "benchmark.json"
    args = [sys.executable, "-m", "pytest", str(suite), "-q", "-p", "no:cacheprovider", "--benchmark-enable",
            "--benchmark-only", f"--benchmark-json={json_path}", "--benchmark-group-by=group",
            "--benchmark-sort=name", "--benchmark-columns=median,iqr,rounds",
            "--benchmark-timer=bench.timing.device_timer", "--bench-config", str(run_dir / "config.json"),
            "-o", "addopts=", "-W", "ignore::DeprecationWarning"]
    echo("timing: " + " ".join(args[3:6]) + " ...")
    result = subprocess.run(args, cwd=Path(__file__).resolve().parents[1])
    if result.returncode not in (0, 5):
        echo(f"timing suite exited with {result.returncode}; failed timing cells are recorded in {json_path}")
    return result.returncode
