"""Run configuration: a TOML file (standard-library reader) plus command-line overrides.

One source of truth for scoring and timing: the grid of models, datasets, methods (with their
parameters) and metrics (with their protocol parameters), and the timing settings. Everything is
validated before any work starts: unknown keys, the type and range of every key (declared next to
its field with :func:`setting`, checked in one pass by :meth:`RunConfig.check`, for files and
command-line overrides alike), and (in ``bench.grid.validate``) unknown names and parameters, an
output directory that cannot be written, a device that is not there.
"""
from __future__ import annotations

import copy
import hashlib
import json
import numbers
import os
import re
import tomllib
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

CONFIG_DIR = Path(__file__).parent / "configs"


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the offending key."""

    @classmethod
    def about(cls, kind: str, name: str, error: BaseException) -> ConfigError:
        """A method's or metric's refusal of its parameters, naming it once (its message may already)."""
        message = str(error)
        return cls(message if repr(name) in message else f"{kind} {name!r}: {message}")


# Upper bounds: far above any sensible run, low enough that a typo (an extra zero or three) is refused
# before it allocates or loops for hours.
MAX_IMAGES = 100_000
MAX_BATCH = 4096
MAX_ROUNDS = 10_000
MAX_STEPS = 100_000
MAX_MAPS = 1_000
MAX_SEED = 2**63 - 1  # adapters.seeding keys its per-image seeds with a signed 64-bit integer


# ---- what a key accepts: declared once, next to its field (see ``setting``) -------------------------

def _kind(value: Any) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "a list",
             tuple: "a list", dict: "a table", type(None): "nothing"}
    return kinds.get(type(value), f"a {type(value).__name__}")


def _show(value: Any) -> str:
    """A value as the user wrote it in TOML ("4", true, [0]), shortened."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Accepts:
    """What one configuration key accepts. ``what`` completes "KEY must be ..." and ``many`` is its
    plural (for a list of such values); ``problem(value)`` is None for an accepted value, else why it
    is refused ("" when the value itself says it); ``canonical`` gives an accepted value the form the
    harness uses."""

    what: str
    problem: Callable[[Any], str | None]
    many: str = ""
    canonical: Callable[[Any], Any] = _same


def integer(low: int, high: int, what: str = "") -> Accepts:
    def problem(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # TOML true is no count
            return _kind(value)
        return None if low <= value <= high else "out of range"

    return Accepts(what or f"an integer from {low} to {high}", problem, f"integers from {low} to {high}", int)


def fraction(low: float, high: float) -> Accepts:
    """A finite number in (low, high]; an integer is accepted (TOML ``1`` for ``1.0``)."""
    def problem(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return _kind(value)
        return None if low < float(value) <= high else "out of range"

    return Accepts(f"a number in ({low:g}, {high:g}]", problem, f"numbers in ({low:g}, {high:g}]", float)


def boolean() -> Accepts:
    return Accepts("true or false", lambda value: None if isinstance(value, bool) else _kind(value), "booleans")


def text(pattern: str = r".+", what: str = "a non-empty string", many: str = "strings") -> Accepts:
    def problem(value: Any) -> str | None:
        if not isinstance(value, str):
            return _kind(value)
        return None if re.fullmatch(pattern, value, re.DOTALL) else ""

    return Accepts(what, problem, many)


def one_of(*choices: str) -> Accepts:
    def problem(value: Any) -> str | None:
        if not isinstance(value, str):
            return _kind(value)
        return None if value in choices else ""

    return Accepts(" or ".join(f'"{choice}"' for choice in choices), problem)


def list_of(item: Accepts, *, non_empty: bool = False) -> Accepts:
    def problem(value: Any) -> str | None:
        if isinstance(value, str):  # iterated, a bare string would be read letter by letter
            return f"a string: write a list, [{_show(value)}]"
        if not isinstance(value, (list, tuple)):
            return _kind(value)
        if non_empty and not value:
            return "an empty list"
        return next((_item_problem(f"item {index}", element, why) for index, element in enumerate(value, 1)
                     if (why := item.problem(element)) is not None), None)

    return Accepts(f"{'a non-empty' if non_empty else 'a'} list of {item.many}", problem,
                   canonical=lambda value: [item.canonical(element) for element in value])


def _item_problem(where: str, element: Any, why: str) -> str:
    return f"{where} is {_show(element)}" + (f", {why}" if why else "")


def table_of(item: Accepts, what: str) -> Accepts:
    def problem(value: Any) -> str | None:
        if not isinstance(value, dict):
            return _kind(value)
        return next((_item_problem(repr(key), element, why) for key, element in value.items()
                     if (why := item.problem(element)) is not None), None)

    return Accepts(what, problem, canonical=lambda value: {key: item.canonical(v) for key, v in value.items()})


def parameters() -> Accepts:
    """A table of parameters: their values are checked by whoever takes them (a method, a metric, a dataset)."""
    return Accepts("a table", lambda value: None if isinstance(value, dict) else _kind(value), "tables",
                   canonical=dict)


def names_or_tables(noun: str) -> Accepts:
    """``["a", "b"]`` (default parameters) or ``{a = {...}, b = {}}``; canonical: the table."""
    names = list_of(text())
    tables = table_of(parameters(), "")

    def problem(value: Any) -> str | None:
        return names.problem(value) if isinstance(value, (str, list, tuple)) else tables.problem(value)

    def canonical(value: Any) -> dict[str, dict[str, Any]]:
        return {name: {} for name in value} if isinstance(value, (list, tuple)) else tables.canonical(value)

    return Accepts(f"a list of {noun} names or a table of {noun} = parameter table", problem, canonical=canonical)


def optional(accepts: Accepts, absent: str) -> Accepts:
    return Accepts(f"{accepts.what} (or absent: {absent})",
                   lambda value: None if value is None else accepts.problem(value),
                   canonical=lambda value: None if value is None else accepts.canonical(value))


def setting(accepts: Accepts, default: Any = MISSING, *, factory: Callable[[], Any] | Any = MISSING) -> Any:
    """A dataclass field that carries what it accepts (read by :meth:`RunConfig.check`)."""
    return field(default=default, default_factory=factory, metadata={"accepts": accepts})


NAMES = list_of(text())
ONLY_PATTERN = text(r"[^:]+:[^:]+", 'a "method:metric" pattern', '"method:metric" patterns (shell wildcards)')
EXCLUDE_PATTERN = text(r"[^:]+(:[^:]+){1,2}", 'a "method:metric" or "model:method:metric" pattern',
                       '"method:metric" or "model:method:metric" patterns (shell wildcards)')


@dataclass
class TimingConfig:
    enabled: bool = setting(boolean(), True)
    batch_sizes: list[int] = setting(list_of(integer(1, MAX_BATCH), non_empty=True), factory=lambda: [8])
    # Adaptive rounds (bench.timing.RoundPolicy): at least ``rounds`` interleaved method/roofline
    # rounds, then more until the IQR of both is at most ``target_iqr`` of their median, stopping at
    # ``max_rounds`` or after ``max_seconds`` per cell; a cell that never settles is marked noisy.
    rounds: int = setting(integer(1, MAX_ROUNDS), 5)
    warmup_rounds: int = setting(integer(0, MAX_ROUNDS), 1)
    max_rounds: int = setting(integer(1, MAX_ROUNDS), 30)
    target_iqr: float = setting(fraction(0.0, 10.0), 0.1)
    max_seconds: float = setting(fraction(0.0, 86_400.0), 60.0)
    methods: list[str] | None = setting(optional(NAMES, "every method of the grid"), None)
    models: list[str] | None = setting(optional(NAMES, "every model of the grid"), None)


@dataclass
class RunConfig:
    # The run directory is OUTPUT/NAME: no separators, no "..", nothing a shell needs quoted.
    name: str = setting(text(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}", "a safe directory name (letters, digits, "
                                                               "'.', '_', '+', '-'; starting with a letter or "
                                                               "digit; at most 100 characters)"), "run")
    models: list[str] = setting(NAMES, factory=list)
    datasets: list[str] = setting(NAMES, factory=lambda: ["auto"])
    methods: dict[str, dict[str, Any]] = setting(names_or_tables("method"), factory=dict)
    metrics: dict[str, dict[str, Any]] = setting(names_or_tables("metric"), factory=dict)
    # "method:metric" (every model) or "model:method:metric" patterns (shell wildcards) left out of the grid
    exclude: list[str] = setting(list_of(EXCLUDE_PATTERN), factory=list)
    # "method:metric" pattern -> the models and/or methods its cells run with (elsewhere they are left
    # out, and listed): how a configuration runs a breadth of methods or scores on a few cells only
    only: dict[str, list[str]] = setting(table_of(NAMES, 'a table of "method:metric" pattern = [model and/or '
                                                         'method names]'), factory=dict)
    # model spec -> weights (a state-dict path or a torchvision weights member)
    weights: dict[str, str] = setting(table_of(text(), "a table of model = weights (a state-dict path or a "
                                                       "torchvision weights name)"), factory=dict)
    dataset_params: dict[str, dict[str, Any]] = setting(table_of(parameters(), "a table of dataset = "
                                                                               "parameter table"), factory=dict)
    n_images: int = setting(integer(1, MAX_IMAGES), 16)
    batch_size: int = setting(integer(1, MAX_BATCH), 16)
    device: str = setting(text(r"auto|cpu|cuda(:[0-9]+)?", '"auto", "cpu", "cuda" or "cuda:N"'), "auto")
    seed: int = setting(integer(0, MAX_SEED, "an integer from 0 to 2**63 - 1"), 0)
    target: str = setting(one_of("predicted", "label"), "predicted")
    output: str = setting(text(what="a directory path (a non-empty string)"), "results")
    report: bool = setting(boolean(), True)
    maps_per_model: int = setting(integer(1, MAX_MAPS), 6)
    filters: bool = setting(boolean(), False)  # add a filters page (gradient-ascent filter views) per architecture
    filters_steps: int = setting(integer(1, MAX_STEPS), 128)
    timing: TimingConfig = field(default_factory=TimingConfig, metadata={"section": TimingConfig})  # timing.KEY
    notes: list[str] = setting(NAMES, factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:12]

    @property
    def run_dir(self) -> Path:
        return Path(self.output) / self.name

    def check(self, source: str = "configuration") -> RunConfig:
        """Check the type and range of every key (what each accepts is declared next to its field) in
        one pass, making accepted values canonical in place; one ConfigError names ``source`` and the
        first bad key (and which others are bad)."""
        problems = _problems(self)
        if problems:
            more = f"; also refused: {', '.join(key for key, _ in problems[1:])}" if len(problems) > 1 else ""
            raise ConfigError(f"{source}: {problems[0][1]}{more}")
        return self

    def timing_warnings(self) -> list[str]:
        """Names in ``timing.models`` / ``timing.methods`` that are not in the grid: they are not timed."""
        if not self.timing.enabled:
            return []
        warnings = []
        for key in ("models", "methods"):
            outside = [name for name in getattr(self.timing, key) or () if name not in getattr(self, key)]
            if outside and len(outside) == len(getattr(self.timing, key)):
                warnings.append(f"timing.{key} selects none of the grid's {key}: nothing will be timed")
            elif outside:
                warnings.append(f"timing.{key}: {', '.join(outside)} not in the grid's {key} (not timed)")
        return warnings


def _problems(section: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, message) for every refused value of ``section``; accepted ones made canonical in place."""
    found = []
    for spec in fields(section):
        key, value = prefix + spec.name, getattr(section, spec.name)
        if "section" in spec.metadata:
            found += (_problems(value, f"{key}.") if isinstance(value, spec.metadata["section"])
                      else [(key, f"{key} must be a table, got {_show(value)} ({_kind(value)})")])
            continue
        accepts: Accepts = spec.metadata["accepts"]
        why = accepts.problem(value)
        if why is None:
            setattr(section, spec.name, accepts.canonical(value))
        else:
            found.append((key, f"{key} must be {accepts.what}, got {_show(value)}" + (f" ({why})" if why else "")))
    return found


def _refuse_unknown(data: dict[str, Any], cls: type, source: str, prefix: str = "") -> None:
    known = [prefix + name for name in cls.__dataclass_fields__]
    unknown = sorted(prefix + key for key in set(data) - set(cls.__dataclass_fields__))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown}; known keys: {sorted(known)}")


def from_dict(data: dict[str, Any], source: str = "<dict>") -> RunConfig:
    data = copy.deepcopy(data)
    _refuse_unknown(data, RunConfig, source)
    timing = data.pop("timing", {})
    if not isinstance(timing, dict):
        raise ConfigError(f"{source}: timing must be a table ([timing]), got {_show(timing)} ({_kind(timing)})")
    _refuse_unknown(timing, TimingConfig, source, "timing.")
    return RunConfig(**data, timing=TimingConfig(**timing)).check(source)


def load_config(name_or_path: str) -> RunConfig:
    """A shipped configuration by name (``default``, ``quick``, ``gpu``) or a TOML file path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.toml"
        if not path.is_file():
            shipped = sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))
            raise ConfigError(f"unknown configuration {name_or_path!r}; shipped: {shipped} (or pass a .toml path)")
    if not path.is_file():
        raise ConfigError(f"configuration file not found: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"malformed configuration {path}: {error}") from error
    return from_dict(data, source=str(path))


def apply_overrides(config: RunConfig, *, source: str = "overrides", **overrides: Any) -> RunConfig:
    """Command-line flags win over the file; ``None`` means 'not given'. The result passes the same
    checks as a file (``source`` names where the values came from in an error)."""
    config = copy.deepcopy(config)
    for key, value in overrides.items():
        if value is None:
            continue
        if key in ("methods", "metrics") and isinstance(value, (list, tuple)):
            current = getattr(config, key)  # a name the file has keeps its parameters
            value = {name: current.get(name, {}) for name in value}
        section, name = (config.timing, "enabled") if key == "timing_enabled" else (config, key)
        if name not in section.__dataclass_fields__:
            raise ConfigError(f"unknown override {key!r}")
        setattr(section, name, value)
    return config.check(source)


def check_output_writable(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"output directory {path} cannot be created: {error.strerror or error}") from error
    if not os.access(path, os.W_OK):
        raise ConfigError(f"output directory {path} is not writable")
