"""Run a configuration again and again, each run SIGKILLed at one write, then once to the end.

``python fault_injection.py CONFIG.json KILLS.json``: KILLS is a list of [EVENT, PHASE]. For each,
a child process runs CONFIG, counts the harness's atomic writes (cell files, maps, plan, metadata)
and kills itself at the EVENT-th one (1-based), in PHASE; a last child runs to the end. Children
are forked from this process, which imports the harness once and runs no torch operation itself
(so forking is safe and each run starts in milliseconds). Prints the children's exit statuses as
JSON (-9: killed). PHASE:

- ``before``: before anything of that write reaches the disk (between two writes);
- ``partial``: after half of the bytes went into the temporary file (inside a write);
- ``written``: after the temporary file is complete and flushed, before the rename (inside a write);
- ``after``: right after the rename (the file is in place, nothing after it ran).
"""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

PHASES = ("before", "partial", "written", "after")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def run_killed(config_path: str, event: int, phase: str) -> None:
    """In a child: run the configuration, SIGKILL at the ``event``-th write (0: never)."""
    from bench import cellfile
    from bench.config import from_dict
    from bench.runner import run

    real_write = cellfile.atomic_write
    count = [0]

    def faulty_write(path: Path, data: bytes) -> None:
        count[0] += 1
        if count[0] != event:
            return real_write(path, data)
        if phase == "before":
            _die()
        if phase in ("partial", "written"):
            temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(temporary, "wb") as handle:
                handle.write(data[: len(data) // 2] if phase == "partial" else data)
                handle.flush()
                os.fsync(handle.fileno())
            _die()
        real_write(path, data)
        _die()

    cellfile.atomic_write = faulty_write
    run(from_dict(json.loads(Path(config_path).read_text())), echo=lambda *_: None)


def main(config_path: str, kills_path: str) -> None:
    import bench.runner  # noqa: F401 - imported once here, inherited by every child

    statuses = []
    for event, phase in [*json.loads(Path(kills_path).read_text()), [0, "before"]]:
        pid = os.fork()
        if pid == 0:
            try:
                run_killed(config_path, event, phase)
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        statuses.append(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
    print(json.dumps(statuses))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
