"""``jobpulse top``: the overview and the queues in a terminal, refreshed every second."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

STATUS_STYLE = {"healthy": "bold green", "degraded": "bold yellow", "critical": "bold red"}


class ApiError(RuntimeError):
    """The API could not be read."""


def fetch(base_url: str, path: str) -> Any:
    """The ``data`` of one API envelope."""
    try:
        with urllib.request.urlopen(base_url.rstrip("/") + path, timeout=5) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            message = json.load(exc).get("error") or str(exc)
        except ValueError:
            message = str(exc)
        raise ApiError(f"{path}: HTTP {exc.code}: {message}") from None
    except (OSError, ValueError) as exc:
        raise ApiError(f"cannot read {base_url}{path}: {exc}") from None
    return body["data"]


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} ms" if value < 1000 else f"{value / 1000:.2f} s"


def render(overview: dict[str, Any], queues: list[dict[str, Any]], base_url: str) -> Group:
    """One frame: header, figures, alerts, the queue table."""
    health = overview["system_health"]
    title = Text.assemble(("jobpulse ", "bold"), (health["status"], STATUS_STYLE.get(health["status"], "")),
                          f"  {base_url}  {time.strftime('%H:%M:%S')}")
    figures = Table.grid(padding=(0, 3))
    p = overview["processing_time_ms"]
    cells = [
        ("pending", f"{overview['pending_jobs']:,}"), ("running", f"{overview['running_jobs']:,}"),
        ("throughput/min", f"{overview['overall_throughput']:.1f}"),
        ("error rate", f"{overview['overall_error_rate'] * 100:.2f} %"),
        ("p50/p95/p99", f"{_ms(p['p50'])} / {_ms(p['p95'])} / {_ms(p['p99'])}"),
        ("workers", str(overview.get("active_workers", "–"))),
        ("lag", f"{overview['aggregator_lag_seconds']:.1f} s"),
    ]
    figures.add_row(*(Text(label, style="dim") for label, _ in cells))
    figures.add_row(*(Text(value, style="bold") for _, value in cells))
    table = Table(expand=True, header_style="dim")
    for name in ("queue", "pending", "running", "thr/min", "err %", "p95", "oldest", "completed", "failed"):
        table.add_column(name, justify="left" if name == "queue" else "right")
    for q in sorted(queues, key=lambda q: (-q["pending"], q["name"])):
        oldest = q["oldest_pending_age_seconds"]
        table.add_row(q["name"], f"{q['pending']:,}", f"{q['running']:,}", f"{q['throughput_per_minute']:.1f}",
                      f"{q['error_rate'] * 100:.1f}", _ms(q["processing_time_ms"]["p95"]),
                      "–" if oldest is None else f"{oldest} s", f"{q['completed_total']:,}", f"{q['failed_total']:,}")
    alerts = [Text(f"{a['severity']}: {a['message']}", style="red" if a["severity"] == "critical" else "yellow")
              for a in health["alerts"]]
    return Group(Panel(figures, title=title, title_align="left"), *alerts, table)


def frame(base_url: str) -> Group:
    """Read the API once and render it."""
    overview = fetch(base_url, "/api/stats/overview")
    queues = fetch(base_url, "/api/stats/detailed")["queue_stats"]
    return render(overview, queues, base_url)


def run(base_url: str, interval_s: float = 1.0, once: bool = False) -> int:
    """Show the view until Ctrl-C (or one frame with ``once``); exit status."""
    console = Console()
    if once:
        try:
            console.print(frame(base_url))
        except ApiError as exc:
            console.print(f"[red]jobpulse top: {exc}[/red]")
            return 1
        return 0
    with Live(console=console, auto_refresh=False, screen=False) as live:
        try:
            while True:
                try:
                    live.update(frame(base_url), refresh=True)
                except ApiError as exc:  # keep trying: the API may be restarting
                    live.update(Text(f"jobpulse top: {exc} (retrying)", style="red"), refresh=True)
                time.sleep(interval_s)
        except KeyboardInterrupt:
            return 0
