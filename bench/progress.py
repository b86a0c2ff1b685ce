"""Progress that a reader sees wherever the output goes.

On a terminal: tqdm bars. Elsewhere (``make bench > log``, CI): plain lines on stdout, beside the
run's other messages: one when a phase starts, one every :data:`LOG_EVERY_S` seconds while it runs
(done / planned, elapsed, ETA; from a timer thread, so a group that takes minutes still shows the
run is alive) and one when it ends. ``BENCH_PROGRESS=off`` silences both, ``on`` forces the bars,
``auto`` (the default) draws bars only when stdout and stderr are both terminals.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import nullcontext
from typing import Any, Callable, ContextManager, TextIO

from tqdm.auto import tqdm

LOG_EVERY_S = 30.0


def mode() -> str:
    """``off``, ``bars`` or ``lines``."""
    setting = os.environ.get("BENCH_PROGRESS", "auto").strip().lower()
    if setting == "off":
        return "off"
    if setting == "on" or (setting == "auto" and sys.stderr.isatty() and sys.stdout.isatty()):
        return "bars"
    return "lines"


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class LineProgress:
    """The part of tqdm's interface the harness uses (update, set_postfix_str, close), as log lines."""

    def __init__(self, total: int | None = None, desc: str = "", unit: str = "it", stream: TextIO | None = None,
                 every_s: float = LOG_EVERY_S, clock: Callable[[], float] = time.monotonic, **_: Any) -> None:
        self.total, self.desc, self.unit = total, desc or "progress", unit
        self.stream, self.every_s, self.clock = stream, every_s, clock
        self.n, self.postfix = 0, ""
        self.started = clock()
        self._stop = threading.Event()
        self._print(f"{self.desc}: started" + (f", {total} {unit}(s) planned" if total is not None else ""))
        self._ticker = threading.Thread(target=self._tick, daemon=True, name=f"progress {self.desc}")
        self._ticker.start()

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stdout, flush=True)

    def _tick(self) -> None:
        while not self._stop.wait(self.every_s):
            self._print(self.status())

    def status(self) -> str:
        elapsed = self.clock() - self.started
        if self.total is None and self.n == 0:  # a heartbeat: nothing is counted, only time passes
            return f"{self.desc}: running, elapsed {duration(elapsed)}"
        line = f"{self.desc}: {self.n}/{self.total if self.total is not None else '?'} {self.unit}(s), " \
               f"elapsed {duration(elapsed)}"
        if self.total and 0 < self.n < self.total:
            line += f", ETA {duration(elapsed / self.n * (self.total - self.n))}"
        return line + (f" ({self.postfix})" if self.postfix else "")

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix = text

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self.postfix = ""
            self._print(self.status().replace(f"{self.desc}:", f"{self.desc}: done,", 1))

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress(**kwargs: Any) -> tqdm | LineProgress:
    """A progress bar on a terminal, log lines elsewhere, nothing with ``BENCH_PROGRESS=off``."""
    chosen = mode()
    if chosen == "lines":
        return LineProgress(**kwargs)
    return tqdm(disable=chosen == "off", dynamic_ncols=True, **kwargs)


def phase(text: str, echo: Callable[[str], None] = print) -> None:
    """One line naming a phase of the run, unless progress is off."""
    if mode() != "off":
        echo(text)


def heartbeat(desc: str) -> ContextManager:
    """Around a phase that reports nothing itself (the timing subprocess, the report): in log mode a
    line at its start, every LOG_EVERY_S seconds and at its end; nothing on a terminal or when off."""
    return LineProgress(desc=desc) if mode() == "lines" else nullcontext()
