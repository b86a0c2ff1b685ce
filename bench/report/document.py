"""A report as a list of blocks, rendered to Markdown and HTML by separate modules: the content is
decided once, so the two formats cannot drift apart."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import pandas as pd


@dataclass
class Heading:
    """A section title; level-2 headings make the table of contents."""

    text: str
    level: int = 2
    anchor: str = ""  # a fixed id (e.g. "summary"); otherwise derived from the text


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


@dataclass
class Details:
    """Blocks folded away under a one-line summary (HTML ``<details>``): what a reader rarely needs
    (configuration, every timed round) stays in the file without pushing the findings down."""

    summary: str
    blocks: list


@dataclass
class Contents:
    """Where the table of contents goes (one entry per level-2 heading)."""


Block = Union[Heading, Paragraph, Bullets, Code, Table, Image, Details, Contents]


def anchor(heading: Heading) -> str:
    """The id of a heading: its fixed anchor, else its text made URL-safe."""
    if heading.anchor:
        return heading.anchor
    # GitHub's rule, so the Markdown links work there too: punctuation dropped, spaces to hyphens.
    kept = "".join(c for c in heading.text.lower() if c.isalnum() or c in " -_")
    return kept.strip().replace(" ", "-") or "section"


def contents(blocks: list) -> list[Heading]:
    """The level-2 headings of a document, in order; folded ones are left out (a link into a closed
    section would land on nothing visible)."""
    return [block for block in blocks if isinstance(block, Heading) and block.level == 2]
