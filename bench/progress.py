"""Progress bars (tqdm) that stay quiet when the output is not a terminal unless asked."""
from __future__ import annotations

import os
import sys
from typing import Any

from tqdm.auto import tqdm


def progress(**kwargs: Any) -> tqdm:
    quiet = os.environ.get("BENCH_PROGRESS", "auto") == "off" or (
        os.environ.get("BENCH_PROGRESS", "auto") == "auto" and not sys.stderr.isatty())
    return tqdm(disable=quiet, dynamic_ncols=True, **kwargs)
