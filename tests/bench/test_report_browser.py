"""The HTML report in a real browser: headless Chromium loads the fake run's report.html offline and
a probe script reports script errors, images that did not decode, and where the summary sits.

Skipped, with the reason, where no Chromium is installed (``make browser`` installs Debian's).
The screenshot is kept next to the report (``report.png``) for a person to look at.
"""
from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.report import build_report
from test_report import _write_run  # the same fake run, in the runner's schema

WIDTH, HEIGHT = 1280, 800  # a laptop's first screen
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Runs before the page's own script (errors are caught from the start) and after load (results).
PROBE_HEAD = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  window.__errors.push(e.message || ('failed to load ' + (e.target && (e.target.src || e.target.href))));
}, true);
</script>"""
PROBE_END = """<script>
window.addEventListener('load', function () {
  var header = document.querySelector('thead th');
  if (header) { header.click(); header.click(); }  // the sorting script runs without errors
  var images = Array.prototype.slice.call(document.images);
  var summary = document.getElementById('summary');
  var first = summary && summary.parentElement.querySelector('#summary ~ ul li');
  document.body.setAttribute('data-probe', JSON.stringify({
    errors: window.__errors,
    images: images.length,
    broken: images.filter(function (i) { return !i.complete || i.naturalWidth === 0; }).map(function (i) { return i.alt; }),
    external: images.filter(function (i) { return i.src.indexOf('data:') !== 0; }).map(function (i) { return i.src; }),
    summaryTop: summary ? summary.getBoundingClientRect().top : null,
    firstFindingBottom: first ? first.getBoundingClientRect().bottom : null,
    viewport: window.innerHeight,
    contents: document.querySelectorAll('nav a').length
  }));
});
</script>"""


def _browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no headless Chromium on the PATH (`make browser` installs Debian's chromium)")


def _chromium(browser: str, *args: str) -> subprocess.CompletedProcess:
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--allow-file-access-from-files", f"--window-size={WIDTH},{HEIGHT}", *args]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as error:
        pytest.skip(f"{browser} cannot run here: {error}")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browser_run")
    _write_run(root)
    build_report(root, n_resamples=100)
    return root / "report.html"


def test_report_loads_offline_without_errors_and_opens_on_the_summary(report: Path) -> None:
    browser = _browser()
    page = report.read_text(encoding="utf-8")
    # Eager images in the probe copy: lazy ones below the fold would not be decoded without scrolling.
    probe = page.replace("<head>", "<head>" + PROBE_HEAD, 1).replace("</body>", PROBE_END + "</body>", 1)
    probe = probe.replace('loading="lazy"', 'loading="eager"')
    probe_path = report.with_name("probe.html")
    probe_path.write_text(probe, encoding="utf-8")
    # The report is moved away from its figures/: it must not need them (self-contained).
    alone = report.parent / "alone"
    alone.mkdir(exist_ok=True)
    shutil.move(probe_path, alone / "probe.html")
    done = _chromium(browser, "--virtual-time-budget=15000", "--dump-dom", (alone / "probe.html").as_uri())
    found = re.search(r'data-probe="([^"]*)"', done.stdout)
    assert found, f"the probe did not run; chromium said: {done.stderr[-2000:]}"
    probe_result = json.loads(html.unescape(found.group(1)))
    assert probe_result["errors"] == [], probe_result["errors"]
    assert probe_result["images"] == page.count("<figure>") > 5
    assert probe_result["broken"] == [] and probe_result["external"] == [], probe_result
    assert probe_result["contents"] >= 8  # the table of contents lists the sections
    assert probe_result["summaryTop"] is not None and probe_result["summaryTop"] < probe_result["viewport"] / 3
    assert probe_result["firstFindingBottom"] < probe_result["viewport"], "the first finding is below the first screen"

    screenshot = report.with_name("report.png")
    _chromium(browser, f"--screenshot={screenshot}", report.as_uri())
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
