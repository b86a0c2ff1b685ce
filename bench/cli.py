"""The harness's command line. Each sub-command is a small function; errors print one clear line."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Callable, NoReturn

from .allocator import tune_host_allocator

INTERRUPTED = 130  # the shell's code for a process ended by SIGINT (128 + 2)

COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], Callable[[argparse.ArgumentParser], None], str]] = {}


def command(name: str, help_text: str, arguments: Callable[[argparse.ArgumentParser], None] = lambda p: None):
    def decorator(fn: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (fn, arguments, help_text)
        return fn

    return decorator


@command("list", "print the registered models, datasets, methods and metrics")
def _list(args: argparse.Namespace) -> int:
    import adapters
    import metrics

    from .datasets import list_datasets
    from .models import get_spec, list_models
    from .zoo import ENTRIES

    print("models:")
    for name in list_models():
        spec = get_spec(name)
        size = "x".join(map(str, spec.input_size)) + (" tokens" if spec.modality == "text" else "")
        print(f"  {name:<20} {spec.family:<12} {spec.num_classes:>5} classes  {size}"
              f"  grad-cam: {spec.gradcam_layer}")
    print("datasets:\n  " + ", ".join(list_datasets()))
    print("methods:\n  " + ", ".join(adapters.names()))
    print("metrics:")
    for name in metrics.names():
        spec = metrics.get(name)
        print(f"  {name:<34} {spec.category:<13} {spec.direction} is better")
    print("zoo entries:\n  " + ", ".join(ENTRIES))
    return 0


def _zoo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="default", help="zoo configuration (default, small)")
    parser.add_argument("--format", choices=("table", "json"), default="table")


def _print_zoo(rows: list[dict], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(rows, indent=2))
        return
    print(f"{'entry':<30} {'role':<16} {'held-out acc':>12} {'train acc':>10} {'train s':>8}  notes")
    for row in rows:
        notes = ", ".join(f"{k.replace('accuracy_', '')}: {v:.3f}" for k, v in row.items()
                          if k.startswith(("accuracy_watermark", "accuracy_marker")))
        print(f"{row['name']:<30} {row['role']:<16} {row['accuracy']:>12.3f} {row['train_accuracy'] or 0:>10.3f} "
              f"{row['train_seconds'] or 0:>8.1f}  {notes}")


@command("train", "train (or load from the cache) the embedded zoo and print its accuracy table", _zoo_arguments)
def _train(args: argparse.Namespace) -> int:
    from . import zoo

    _print_zoo(zoo.table(zoo.ensure(args.config)), args.format)
    return 0


@command("zoo", "print the embedded zoo (training what is missing)", _zoo_arguments)
def _zoo(args: argparse.Namespace) -> int:
    return _train(args)


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="default", help="shipped configuration (default, quick, gpu) or a TOML path")
    parser.add_argument("--models", type=_names, help="comma-separated zoo entries or model names")
    parser.add_argument("--datasets", type=_names, help="comma-separated dataset names (or auto)")
    parser.add_argument("--methods", type=_names, help="comma-separated method names")
    parser.add_argument("--metrics", type=_names, help="comma-separated metric names")
    parser.add_argument("--n-images", dest="n_images", type=int, help="inputs per model: images, or sentences for a "
                                                                      "text model")
    parser.add_argument("--batch-size", dest="batch_size", type=int)
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--output", help="directory that holds run directories (default results/)")
    parser.add_argument("--name", help="run name (the run directory is OUTPUT/NAME; re-running resumes it)")
    parser.add_argument("--no-timing", dest="timing_enabled", action="store_const", const=False)
    parser.add_argument("--executor", default="local", help="local (serial, this process) or ray (a Ray cluster)")
    parser.add_argument("--address", help="ray: the cluster's HOST:PORT (default: a running local cluster, else a new one)")
    parser.add_argument("--retries", type=int, help="ray: times a failed group is retried before its cells become "
                                                    "error rows (default 2)")


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@command("run", "run a benchmark grid: scores, timings, report", _run_arguments)
def _run(args: argparse.Namespace) -> int:
    from .config import apply_overrides, load_config
    from .runner import run

    config = load_config(args.config)
    overrides = {k: getattr(args, k) for k in ("models", "datasets", "methods", "metrics", "n_images", "batch_size",
                                              "device", "seed", "output", "name", "timing_enabled")}
    config = apply_overrides(config, source="command line", **overrides)
    options = {k: getattr(args, k) for k in ("address", "retries") if getattr(args, k) is not None}
    try:
        run(config, executor=args.executor, executor_options=options)
    except KeyboardInterrupt:
        # Every finished cell is its own file: say what is kept and how to go on, not where Python was.
        print(f"interrupted: {_saved_cells(config.run_dir)} cell file(s) saved in {config.run_dir / 'cells'}; "
              f"run the same command again to resume: python -m bench {shlex.join(args.argv)}", file=sys.stderr)
        return INTERRUPTED
    return 0


def _saved_cells(run_dir: Path) -> int:
    cells = run_dir / "cells"
    return sum(1 for _ in cells.glob("*.json")) if cells.is_dir() else 0


@command("report", "rebuild the report of a run directory from its stored results",
         lambda p: p.add_argument("run_dir", help="results/<run>"))
def _report(args: argparse.Namespace) -> int:
    from .collect import collect_run
    from .report import build_report, summary_table

    run_dir = Path(args.run_dir)
    if not (run_dir / "cells").is_dir():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no cells/ folder)")
    collect_run(run_dir)
    path = build_report(run_dir)
    print(summary_table(run_dir))
    print(f"report: {path}")
    return 0


def _compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", help="run directories (results/<run>); scores need exactly two")
    parser.add_argument("--flagged", action="store_true", help="list only the score cells that moved")
    parser.add_argument("--csv", help="also write the score comparison as CSV to this path")


@command("compare", "compare two runs: scores per cell (B - A with its bootstrap interval, flagged when that "
                    "excludes 0) and timings (pytest-benchmark compare)", _compare_arguments)
def _compare(args: argparse.Namespace) -> int:
    import subprocess

    runs = [Path(d) for d in args.run_dirs]
    not_runs = [str(r) for r in runs if not (r / "scores.csv").is_file() and not (r / "benchmark.json").is_file()]
    if not_runs:
        raise FileNotFoundError(f"not a run directory (no scores.csv, no benchmark.json): {', '.join(not_runs)}")
    code = 0
    if len(runs) == 2 and all((r / "scores.csv").is_file() for r in runs):
        from .report.compare import compare_scores, compare_text

        frame = compare_scores(*runs)
        print(f"scores: A = {runs[0]}, B = {runs[1]}")
        print(compare_text(frame, only_flagged=args.flagged))
        if args.csv:
            frame.to_csv(args.csv, index=False)
    elif len(runs) != 2:
        print("scores: compared for exactly two runs; timings only", file=sys.stderr)
    files = [r / "benchmark.json" for r in runs]
    if all(f.is_file() for f in files):
        print("timings:", flush=True)
        code = subprocess.run([sys.executable, "-m", "pytest_benchmark.cli", "compare", "--group-by=group",
                               "--columns=median,iqr,rounds", *map(str, files)]).returncode
    else:
        print(f"timings: not compared (no benchmark.json in {', '.join(str(r) for r, f in zip(runs, files) if not f.is_file())})")
    return code


def _filters_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="zoo entry (e.g. small_cnn-synthetic, trained on first use) or registered "
                                      "model name (random init unless --weights)")
    parser.add_argument("--layer", help="module name, e.g. features.5 (default: the model's Grad-CAM layer)")
    parser.add_argument("--filters", help="comma-separated channel indices (default: the most active on the images)")
    parser.add_argument("--n-filters", dest="n_filters", type=int, default=8, help="how many, without --filters")
    parser.add_argument("--weights", help="registered model only: state-dict path or torchvision weights name")
    parser.add_argument("--n-images", dest="n_images", type=int, default=4, help="images whose activations are shown")
    parser.add_argument("--steps", type=int, default=128, help="gradient-ascent steps")
    parser.add_argument("--seed", type=int, default=0, help="ascent start and jitter (and a registered model's init)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--out", help="PNG path (default results/filters/MODEL.png)")


@command("filters", "visualise filters of a layer (gradient ascent) and their activation maps on images",
         _filters_arguments)
def _filters(args: argparse.Namespace) -> int:
    from .filters.command import run

    print(run(args))
    return 0


def _attention_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a transformer: zoo entry (e.g. vit_slim-synthetic) or registered model "
                                      "(vit_b_16, timm/deit_tiny_patch16_224; random init unless --weights)")
    parser.add_argument("--images", type=int, default=2, help="how many held-out images or sentences (default 2)")
    parser.add_argument("--text", help="text models: the sentence to show (default: held-out sentences)")
    parser.add_argument("--weights", help="registered model only: state-dict path or torchvision weights name")
    parser.add_argument("--seed", type=int, default=0, help="a registered model's init and its images")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--out", help="PNG path (default results/attention/MODEL.png)")


@command("attention", "draw a transformer's class-token attention per layer and head, and its rollout",
         _attention_arguments)
def _attention(args: argparse.Namespace) -> int:
    from adapters import AttributionError

    from .device import resolve_device
    from .figures.attention import attention_figure
    from .filters.command import load_model

    if args.images < 1:
        raise ValueError("--images must be at least 1")
    device = resolve_device(args.device).torch_device
    model, spec, x = load_model(args.model, args.weights, args.images, args.seed)
    if args.text is not None:
        if spec.modality != "text":
            raise ValueError(f"--text is for text models; {args.model} takes images")
        x = model.encode_text([args.text])
    model, x = model.to(device), x.to(device)
    out = Path(args.out) if args.out else Path("results") / "attention" / f"{args.model.replace('/', '_')}.png"
    try:
        summary = attention_figure(model, spec.unpreprocess(x), x, out)
    except AttributionError as error:
        raise ValueError(str(error)) from None
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(out)
    return 0


def _embeddings_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a text model: zoo entry (e.g. bert_tiny-text) or bert:<local folder>")
    parser.add_argument("--word", required=True, help="the word whose contextual embeddings are compared")
    parser.add_argument("--words", help="comma-separated words for the PCA projection "
                                        "(default: a built-in set and --word)")
    parser.add_argument("--sentences", type=int, default=400, help="held-out sentences read (default 400)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="PNG path of the distance figure (default results/embeddings/"
                                      "embedding_distances_MODEL_WORD.png); the projection and the CSV table "
                                      "go next to it")


@command("embeddings", "contextual embeddings of a word per layer: distances (table + figure) and a PCA projection",
         _embeddings_arguments)
def _embeddings(args: argparse.Namespace) -> int:
    from .figures.embedding_pages import PROJECTION_WORDS
    from .figures.embeddings import embedding_distance_figure, embedding_projection_figure
    from .text_data import text_model_and_sentences

    if args.sentences < 2:
        raise ValueError("--sentences must be at least 2")
    model, spec, ids, labels = text_model_and_sentences(args.model, args.sentences, args.seed)
    stem = args.model.replace("/", "_").replace(":", "_")
    out = Path(args.out) if args.out else Path("results") / "embeddings" / f"embedding_distances_{stem}_{args.word}.png"
    rows = embedding_distance_figure(model, ids, args.word, out, seed=args.seed)
    words = _names(args.words) if args.words else list(dict.fromkeys([args.word, *PROJECTION_WORDS]))
    projection = out.with_name(f"embedding_projection_{stem}.png")
    embedding_projection_figure(model, ids, labels, words, projection, class_names=spec.class_names, seed=args.seed)
    print(f"{'layer':<12} {'same eucl':>10} {'other eucl':>10} {'same cos':>9} {'other cos':>9}")
    for row in rows:
        name = "embeddings" if row["layer"] == 0 else f"layer {row['layer'] - 1}"
        print(f"{name:<12} {row['same_euclidean']:>10.3f} {row['different_euclidean']:>10.3f} "
              f"{row['same_cosine']:>9.3f} {row['different_cosine']:>9.3f}")
    print(out)
    print(out.with_suffix(".csv"))
    print(projection)
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (like every other error), not the usage text then the error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m bench", description="Attribution-method benchmarking harness")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (fn, arguments, help_text) in COMMANDS.items():
        child = sub.add_parser(name, help=help_text, description=help_text)
        arguments(child)
        child.set_defaults(handler=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help (0) or a usage error (2, printed in one line)
        return stop.code if isinstance(stop.code, int) else 2
    args.argv = argv  # for "run the same command again"
    tune_host_allocator()  # bench/allocator.py: the command line's processes only, never the library's users
    try:
        return args.handler(args)
    except (KeyError, ValueError, FileNotFoundError, PermissionError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
