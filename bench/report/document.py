"""A report as a list of blocks, rendered to Markdown and HTML by separate modules: the content is
decided once, so the two formats cannot drift apart."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import pandas as pd


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Code:
    text: str
    language: str = ""


@dataclass
class Table:
    """A table of strings; the index is shown as the first column when ``show_index``."""

    frame: pd.DataFrame
    caption: str = ""
    show_index: bool = True


@dataclass
class Image:
    """A figure, ``path`` relative to the run directory."""

    path: str
    caption: str


Block = Union[Heading, Paragraph, Bullets, Code, Table, Image]
