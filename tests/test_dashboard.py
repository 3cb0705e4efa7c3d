"""The dashboard in headless Chromium against `jobpulse serve --demo`."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# as the machine's own probe starts it: no sandbox as root, no network beyond localhost
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("CI needs Chromium at /usr/bin/chromium (.ci/run installs it)")
        pytest.skip("no chromium")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


def _card(page: Any, card: str) -> float:
    return float(page.get_attribute(f"#card-{card}", "data-value"))


@pytest.mark.slow
def test_dashboard_shows_the_api_numbers_live(browser: Any, demo_url: str) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(demo_url + "/")
    page.wait_for_function("window.jobpulse && window.jobpulse.lastOverview !== null", timeout=15_000)
    page.wait_for_selector("#queues tbody tr", timeout=15_000)

    # counters only grow: the card lies between two API reads that bracket it
    before = httpx.get(demo_url + "/api/stats/overview").json()["data"]
    page.wait_for_function(f"window.jobpulse.lastOverview.total_jobs >= {before['total_jobs']}", timeout=10_000)
    shown = {"total": _card(page, "total")}
    after = httpx.get(demo_url + "/api/stats/overview").json()["data"]
    assert before["total_jobs"] <= shown["total"] <= after["total_jobs"]
    rendered = page.evaluate("window.jobpulse.lastOverview")
    assert _card(page, "pending") == rendered["pending_jobs"] and _card(page, "running") == rendered["running_jobs"]
    assert page.text_content("#status") == rendered["system_health"]["status"]
    queue_names = {q["name"] for q in httpx.get(demo_url + "/api/stats/detailed").json()["data"]["queue_stats"]}
    assert set(page.locator("#queues tbody td:first-child").all_text_contents()) == queue_names

    first_total = _card(page, "total")  # the demo keeps enqueuing: the card follows the stream
    page.wait_for_function(f"Number(document.querySelector('#card-total').dataset.value) > {first_total}",
                           timeout=10_000)

    with page.expect_request(lambda r: "/api/stats/trends" in r.url and "granularity=minute" in r.url) as req:
        page.click("#ranges button[data-range='3600']")
    start = req.value.url.split("start=")[1].split("&")[0]
    assert abs(time.time() - 3600 - _epoch(start)) < 30  # the chart now asks for the last hour
    page.wait_for_function("document.querySelectorAll('.uplot').length === 2")

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    page.close()
    assert not problems, problems


def _epoch(iso: str) -> float:
    from datetime import datetime
    from urllib.parse import unquote

    return datetime.fromisoformat(unquote(iso).replace("Z", "+00:00")).timestamp()
