"""/api/stats/stream with a real HTTP client on a real server: events arrive, streams are bounded and freed."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from aggregator.embedded import free_port
from aggregator.settings import Settings
from api.main import create_app


def _events(lines: Iterator[str], n: int, kind: str | None = None) -> list[tuple[str, Any]]:
    """The next ``n`` events (of ``kind`` only, if given). ``lines`` must outlive the call:
    a dropped iter_lines() generator closes the response, which is a disconnect."""
    out, event = [], ""
    for line in lines:
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: ") and kind in (None, event):
            out.append((event, json.loads(line[6:])))
            if len(out) == n:
                break
    return out


@pytest.mark.slow
def test_stream_pushes_overview_events(demo_url: str) -> None:
    with httpx.stream("GET", demo_url + "/api/stats/stream", timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        first_two = _events(lines, 2)
        overviews = [first_two[0][1]] + [data for _, data in _events(lines, 3, "overview")]
    assert [event for event, _ in first_two] == ["overview", "alerts"]  # alerts are sent once, then on change
    assert all(o["total_jobs"] > 0 for o in overviews)
    assert overviews[-1]["total_jobs"] > overviews[0]["total_jobs"]  # the demo keeps enqueuing


@pytest.fixture
def one_stream_server(settings: Settings) -> Iterator[str]:
    """The API on a real uvicorn, allowing one live stream and updating every 0.1 s."""
    app = create_app(settings.model_copy(update={"stream_max_clients": 1, "stream_interval_s": 0.1}))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_streams_are_bounded_and_freed_on_disconnect(one_stream_server: str) -> None:
    url = one_stream_server + "/api/stats/stream"
    with httpx.stream("GET", url, timeout=10) as first:
        lines = first.iter_lines()
        assert _events(lines, 1)[0][0] == "overview"
        refused = httpx.get(url, timeout=5)
        assert refused.status_code == 503 and "too many live streams" in refused.json()["error"]
    deadline = time.monotonic() + 10  # the server notices the disconnect at its next update
    while True:
        with httpx.stream("GET", url, timeout=10) as again:
            if again.status_code == 200:
                assert _events(again.iter_lines(), 1)[0][0] == "overview"
                break
        assert time.monotonic() < deadline, "the slot of a closed stream was never freed"
        time.sleep(0.1)
