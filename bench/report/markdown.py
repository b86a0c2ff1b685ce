"""Render a report document to GitHub-flavoured Markdown."""
from __future__ import annotations

from .document import Block, Bullets, Code, Contents, Details, Heading, Image, Paragraph, Table, anchor, contents


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(block: Table) -> str:
    """A pipe table; the index becomes the first column when asked."""
    frame = block.frame.reset_index() if block.show_index else block.frame
    header = [_cell(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    if block.caption:
        lines = [f"*{block.caption}*", ""] + lines
    return "\n".join(lines)


def _blocks(blocks: list[Block], everything: list[Block]) -> list[str]:
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append("#" * block.level + " " + block.text)
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Code):
            parts.append(f"```{block.language}\n{block.text}\n```")
        elif isinstance(block, Table):
            parts.append(table(block))
        elif isinstance(block, Image):
            parts.append(f"![{block.caption}]({block.path})\n\n*{block.caption}*")
        elif isinstance(block, Details):  # GitHub renders Markdown inside <details> when blank lines surround it
            parts.append(f"<details><summary>{block.summary}</summary>")
            parts += _blocks(block.blocks, everything)
            parts.append("</details>")
        elif isinstance(block, Contents):
            parts.append("Contents: " + " · ".join(f"[{h.text}](#{anchor(h)})" for h in contents(everything)))
    return parts


def render(blocks: list[Block]) -> str:
    """The whole document, blocks separated by blank lines."""
    return "\n\n".join(_blocks(blocks, blocks)) + "\n"
