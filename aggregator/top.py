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


WIDE_COLUMNS = 120  # at this terminal width and above, full labels; below, short ones


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} ms" if value < 1000 else f"{value / 1000:.2f} s"


def _percentiles(values: list[float | None]) -> str:
    """p50/p95/p99 in one cell and one unit: ``12/40/88 ms`` or ``0.12/1.12/1.96 s``."""
    known = [v for v in values if v is not None]
    if not known:
        return "–"
    seconds = max(known) >= 1000
    cells = ["–" if v is None else f"{v / 1000:.2f}" if seconds else f"{v:.0f}" for v in values]
    return "/".join(cells) + (" s" if seconds else " ms")


def shorten(name: str, width: int) -> str:
    """``name`` whole if it fits in ``width`` characters, else its start and end around an ellipsis."""
    if len(name) <= width:
        return name
    head = width // 2
    return name[:head] + "…" + name[len(name) - (width - 1 - head):]


def render(overview: dict[str, Any], queues: list[dict[str, Any]], base_url: str, width: int = 200) -> Group:
    """One frame (header, figures, alerts, the queue table) for a terminal ``width`` columns wide."""
    wide = width >= WIDE_COLUMNS
    health = overview["system_health"]
    title = Text.assemble(("jobpulse ", "bold"), (health["status"], STATUS_STYLE.get(health["status"], "")),
                          f"  {base_url}  {time.strftime('%H:%M:%S')}")
    figures = Table.grid(padding=(0, 3 if wide else 2))
    p = overview["processing_time_ms"]
    cells = [
        ("pending", f"{overview['pending_jobs']:,}"), ("running", f"{overview['running_jobs']:,}"),
        ("throughput/min" if wide else "thr/min", f"{overview['overall_throughput']:.1f}"),
        ("error rate" if wide else "errors", f"{overview['overall_error_rate'] * 100:.2f} %"),
        ("p50/p95/p99", _percentiles([p["p50"], p["p95"], p["p99"]])),
        ("workers", str(overview.get("active_workers", "–"))),
        ("lag", f"{overview['aggregator_lag_seconds']:.1f} s"),
    ]
    figures.add_row(*(Text(label, style="dim") for label, _ in cells))
    figures.add_row(*(Text(value, style="bold") for _, value in cells))
    ordered = sorted(queues, key=lambda q: (-q["pending"], q["name"]))
    rows = [
        [f"{q['pending']:,}", f"{q['running']:,}", f"{q['throughput_per_minute']:.1f}", f"{q['error_rate'] * 100:.1f}",
         _ms(q["processing_time_ms"]["p95"]),
         "–" if q["oldest_pending_age_seconds"] is None else f"{q['oldest_pending_age_seconds']} s",
         f"{q['completed_total']:,}", f"{q['failed_total']:,}"]
        for q in ordered
    ]
    headers = (["pending", "running", "thr/min", "err %", "p95", "oldest", "completed", "failed"] if wide
               else ["pend", "run", "thr/m", "err%", "p95", "oldest", "done", "failed"])
    # the numbers keep their width; the queue name gets the rest (2 columns between cells)
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    room = max(8, width - sum(widths) - 2 * len(headers) - 1)  # a longer name is shortened in the middle
    table = Table(header_style="dim underline", box=None, padding=(0, 1), pad_edge=False)
    table.add_column("queue", justify="left", no_wrap=True)
    for name, min_width in zip(headers, widths, strict=True):
        table.add_column(name, justify="right", no_wrap=True, min_width=min_width)
    for q, row in zip(ordered, rows, strict=True):
        table.add_row(shorten(q["name"], room), *row)
    alerts = [Text(f"{a['severity']}: {a['message']}", style="red" if a["severity"] == "critical" else "yellow")
              for a in health["alerts"]]
    return Group(Panel(figures, title=title, title_align="left"), *alerts, table)


def frame(base_url: str, width: int = 200) -> Group:
    """Read the API once and render it for a terminal ``width`` columns wide."""
    overview = fetch(base_url, "/api/stats/overview")
    queues = fetch(base_url, "/api/stats/detailed")["queue_stats"]
    return render(overview, queues, base_url, width)


def run(base_url: str, interval_s: float = 1.0, once: bool = False) -> int:
    """Show the view until Ctrl-C (or one frame with ``once``); exit status."""
    console = Console()
    if once:
        try:
            console.print(frame(base_url, console.width))
        except ApiError as exc:
            console.print(f"[red]jobpulse top: {exc}[/red]")
            return 1
        return 0
    with Live(console=console, auto_refresh=False, screen=False) as live:
        try:
            while True:
                try:
                    live.update(frame(base_url, console.width), refresh=True)
                except ApiError as exc:  # keep trying: the API may be restarting
                    live.update(Text(f"jobpulse top: {exc} (retrying)", style="red"), refresh=True)
                time.sleep(interval_s)
        except KeyboardInterrupt:
            return 0
