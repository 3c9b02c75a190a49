"""The HTML report as a person sees it: rendered by headless Chromium (Debian's package), offline.

Chromium loads the page with every host name unresolvable; a probe script appended to a copy of
the page records, after `load`, what the browser made of each plot image (decoded size, alt
text, laid-out width) and which resources it fetched. A screenshot then must show the plots'
colours. .ci/run installs chromium and sets PILC_REQUIRE_CHROMIUM=1, so there a missing browser
fails the run instead of skipping.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pilc_ray.reports import aggregate as report
from pilc_ray.reports.html import render_html
from tests.pilc_ray.reports.test_report import synthetic_rows, write_index

EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "example-report" / "report.html"
PLOTS = {"plot-bpsp", "plot-codecs", "plot-timeseries", "plot-timesplit", "plot-workers"}
BAR_BLUE = (0x3B, 0x6F, 0xB6)  # the bpsp histogram and time split bars (reports/html.py)

PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images].map(i => ({
    figure: i.closest("figure") ? i.closest("figure").id : null, complete: i.complete,
    w: i.naturalWidth, h: i.naturalHeight, alt: i.alt,
    shown: Math.round(i.getBoundingClientRect().width)}));
  const fetched = performance.getEntriesByType("resource").map(e => e.name);
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify({imgs, fetched, tables: document.querySelectorAll("table")
    .length, title: document.title});
  document.body.appendChild(pre);
});
</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    msg = "headless Chromium is needed to render the report (apt-get install chromium)"
    if os.environ.get("PILC_REQUIRE_CHROMIUM") == "1":
        pytest.fail(msg)
    pytest.skip(msg)


def run_chromium(tmp: Path, *args: str) -> str:
    cmd = [chromium(), "--headless", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
           "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND",  # offline
           f"--user-data-dir={tmp / 'profile'}", *args]
    if os.geteuid() == 0:
        cmd.insert(2, "--no-sandbox")  # Chromium refuses to run its sandbox as root
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.fixture(scope="module")
def fresh_report(tmp_path_factory) -> Path:
    """A report built now, from a synthetic index (every section but the compare sample)."""
    root = tmp_path_factory.mktemp("browser")
    write_index(root, synthetic_rows(600))
    path = root / "report.html"
    path.write_text(render_html(report.build_report(str(root))))
    return path


@pytest.mark.parametrize("which", ["fresh", "docs-example"])
def test_plots_render_offline_in_chromium(which, fresh_report, tmp_path):
    page = fresh_report if which == "fresh" else EXAMPLE
    expected = PLOTS | ({"plot-compare"} if which == "docs-example" else set())
    text = page.read_text()
    probed = tmp_path / "probed.html"
    probed.write_text(text.replace("</body>", PROBE + "</body>"))
    dom = run_chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probed.as_uri())
    m = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert m, "the page did not finish loading in Chromium"
    probe = json.loads(html.unescape(m.group(1)))
    assert probe["title"].startswith("pilc job report") and probe["tables"] >= 8
    assert probe["fetched"] == []  # self-contained: nothing requested beyond the file
    imgs = {i["figure"]: i for i in probe["imgs"]}
    assert set(imgs) == expected and len(probe["imgs"]) == len(expected)
    for fig, i in imgs.items():
        assert i["complete"] and i["w"] > 300 and i["h"] > 150, (fig, i)  # decoded PNG
        assert i["shown"] > 300 and len(i["alt"]) > 30, (fig, i)  # laid out; described


def test_screenshot_shows_the_plots(fresh_report, tmp_path):
    shot = tmp_path / "shot.png"
    run_chromium(tmp_path, "--window-size=1200,1800", f"--screenshot={shot}",
                 fresh_report.as_uri())
    px = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert px.shape[:2] == (1800, 1200)
    blue = (np.abs(px - BAR_BLUE).sum(axis=2) < 30).sum()
    assert blue > 2000  # histogram bars painted (not a blank or broken-image page)
    colours = np.unique((px[..., 0] << 16) | (px[..., 1] << 8) | px[..., 2])
    assert len(colours) > 200  # text, plots, tables: not a blank page
