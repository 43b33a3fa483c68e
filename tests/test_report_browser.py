"""The report as a person sees it: Snakemake's HTML report and summary.html in headless Chromium.

Each page must load without console errors, exceptions or failed requests, show its plots
(images decoded, not broken), and leave a full-page screenshot in `test-artifacts/` (or
`$TVTS_TEST_ARTIFACTS`) for a person to look at. Chromium is Debian's `chromium` (.ci/run
installs it); without it the test is skipped, except in CI, where it fails.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from browser import Browser, chromium
from conftest import ROOT, SMOKE

ARTIFACTS = Path(os.environ.get("TVTS_TEST_ARTIFACTS", ROOT / "test-artifacts"))
PLOTS = ("pretrain_curves.png", "retrieval.png", "classification.png", "methods.png", "temporal.png")


@pytest.fixture(scope="module")
def browser():
    binary = chromium()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Chromium for the browser test (.ci/run installs Debian's chromium)")
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    with Browser(binary) as b:
        yield b


# Image loading is asynchronous: wait until every <img> is done before counting the broken ones.
IMAGES = """(async () => {
  const imgs = [...document.images];
  await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => { i.onload = i.onerror = r; })));
  return imgs.map(i => ({alt: i.alt, width: i.naturalWidth, height: i.naturalHeight}));
})()"""


def test_summary_page_shows_every_plot(smoke_dag_done, browser):
    page = smoke_dag_done[0] / "results/report/summary.html"
    browser.open(page.as_uri())
    images = browser.evaluate(IMAGES)  # curves, retrieval, classification (no methods x seeds grid here)
    shot = browser.screenshot(ARTIFACTS / "summary.png")
    assert browser.errors() == []
    assert len(images) == 4 and all(i["width"] > 300 and i["height"] > 150 for i in images), images
    headings = browser.evaluate("[...document.querySelectorAll('h2')].map(h => h.textContent)")
    assert {"Evaluations", "Throughput: where the training time went", "Plots"} <= set(headings)
    assert browser.evaluate("document.querySelectorAll('table').length") >= 4
    assert shot.stat().st_size > 50_000


def test_snakemake_html_report_loads_with_the_plots(smoke_dag_done, browser, tmp_path):
    work = smoke_dag_done[0]
    out = tmp_path / "report.html"
    cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(ROOT / "Snakefile"), "--directory", str(work),
           "--configfile", str(SMOKE), "--cores", "1", "--report", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    browser.open(out.as_uri(), settle=3)
    shot = browser.screenshot(ARTIFACTS / "snakemake-report.png")
    assert browser.errors() == []
    text = browser.evaluate("document.body.innerText")
    assert "Pretraining" in text and "Evaluation" in text and "Summary" in text, text[:2000]
    html = out.read_text()
    assert all(name in html for name in PLOTS + ("summary.html",))
    assert shot.stat().st_size > 20_000
