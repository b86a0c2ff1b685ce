"""Render a report document to one self-contained HTML page: figures embedded as data URIs (the
file opens offline, mailed or moved alone), a table of contents beside the text, sortable tables
with sticky headers (readable at 30 methods), and folded sections for what is rarely read."""
from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from .document import Block, Bullets, Code, Contents, Details, Heading, Image, Paragraph, Table, anchor, contents

STYLE = """
body { font-family: system-ui, sans-serif; margin: 0; color: #222; }
nav { position: fixed; top: 0; left: 0; bottom: 0; width: 13em; overflow-y: auto; padding: 1em 0.8em;
      background: #f6f6f6; border-right: 1px solid #ddd; font-size: 0.85em; }
nav ol { padding-left: 1.2em; margin: 0.3em 0; } nav li { margin: 0.25em 0; }
nav a { color: #234; text-decoration: none; } nav a:hover { text-decoration: underline; }
main { margin-left: 15em; max-width: 1250px; padding: 0.5em 1.5em 3em; }
@media (max-width: 900px) { nav { position: static; width: auto; border: 0; } main { margin-left: 0; } }
h1 { font-size: 1.5em; margin: 0.4em 0; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
.table { max-height: 38em; overflow: auto; margin: 0.5em 0 1.5em; border: 1px solid #ddd; width: fit-content;
         max-width: 100%; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.55em; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; position: sticky; left: 0; background: #fff; }
thead th { background: #eee; position: sticky; top: 0; cursor: pointer; z-index: 1; }
thead th:first-child { z-index: 2; background: #eee; }
thead th[aria-sort="ascending"]::after { content: " ▲"; } thead th[aria-sort="descending"]::after { content: " ▼"; }
tbody tr:nth-child(even) td { background: #fafafa; }
caption { caption-side: top; text-align: left; font-style: italic; padding: 0.3em; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; }
figure { margin: 1em 0; } figure img { max-width: 100%; }
figcaption { font-style: italic; font-size: 0.9em; }
details { margin: 0.8em 0; } summary { cursor: pointer; font-weight: 600; }
#summary + p, #summary ~ ul { font-size: 0.95em; }
"""

# Click a header to sort by that column (numbers by their leading value, "–" last); click again to reverse.
SCRIPT = """
document.querySelectorAll('table').forEach(function (table) {
  table.querySelectorAll('thead th').forEach(function (th, column) {
    th.addEventListener('click', function () {
      var up = th.getAttribute('aria-sort') !== 'ascending';
      table.querySelectorAll('thead th').forEach(function (h) { h.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', up ? 'ascending' : 'descending');
      var key = function (row) {
        var text = row.children[column].textContent.trim().replace(/^~/, '').replace(/,/g, '');
        var value = parseFloat(text);
        return isNaN(value) ? text : value;
      };
      var rows = Array.prototype.slice.call(table.tBodies[0].rows);
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (typeof x !== typeof y) { return typeof x === 'number' ? -1 : 1; }
        return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1);
      });
      rows.forEach(function (row) { table.tBodies[0].appendChild(row); });
    });
  });
});
"""


def table(block: Table) -> str:
    frame = block.frame.reset_index() if block.show_index else block.frame
    head = "".join(f"<th>{escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    caption = f"<caption>{escape(block.caption)}</caption>" if block.caption else ""
    return f'<div class="table"><table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def image_source(path: str, base: Path | None) -> str:
    """A data URI of the PNG when it is readable under ``base``; the relative path otherwise."""
    file = base / path if base is not None else None
    if file is not None and file.is_file():
        return "data:image/png;base64," + base64.b64encode(file.read_bytes()).decode("ascii")
    return escape(path)


def _contents(headings: list[Heading]) -> str:
    items = "".join(f'<li><a href="#{escape(anchor(h))}">{escape(h.text)}</a></li>' for h in headings)
    return f"<nav><strong>Contents</strong><ol>{items}</ol></nav>"


class _Renderer:
    def __init__(self, base: Path | None) -> None:
        self.base = base
        self.ids: set[str] = set()

    def unique(self, name: str) -> str:
        candidate, k = name, 2
        while candidate in self.ids:
            candidate, k = f"{name}-{k}", k + 1
        self.ids.add(candidate)
        return candidate

    def blocks(self, blocks: list[Block]) -> list[str]:
        parts = []
        for block in blocks:
            if isinstance(block, Heading):
                level = min(max(block.level, 1), 6)
                parts.append(f'<h{level} id="{escape(self.unique(anchor(block)))}">{escape(block.text)}</h{level}>')
            elif isinstance(block, Paragraph):
                parts.append(f"<p>{escape(block.text)}</p>")
            elif isinstance(block, Bullets):
                parts.append("<ul>" + "".join(f"<li>{escape(i)}</li>" for i in block.items) + "</ul>")
            elif isinstance(block, Code):
                parts.append(f"<pre><code>{escape(block.text)}</code></pre>")
            elif isinstance(block, Table):
                parts.append(table(block))
            elif isinstance(block, Image):
                parts.append(f'<figure><img src="{image_source(block.path, self.base)}" alt="{escape(block.caption)}" '
                             f'loading="lazy"><figcaption>{escape(block.caption)}</figcaption></figure>')
            elif isinstance(block, Details):
                parts.append(f"<details><summary>{escape(block.summary)}</summary>"
                             + "\n".join(self.blocks(block.blocks)) + "</details>")
        return parts


def render(blocks: list[Block], title: str, base: Path | None = None) -> str:
    """The page; text is escaped, so error messages from the run cannot break it. ``base``: the run
    directory that figure paths are relative to (their bytes are embedded)."""
    headings = contents(blocks)
    nav = _contents(headings) if any(isinstance(b, Contents) for b in blocks) else ""
    body = "\n".join(_Renderer(base).blocks(blocks))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>\n{nav}<main>\n"
            + body + f"\n</main><script>{SCRIPT}</script></body></html>\n")
