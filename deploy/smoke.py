"""The deploy test's workload and its checks (run by deploy/test.sh).

  python smoke.py send              in a container of the deployment: emits the workload (JOBPULSE_* settings)
  python smoke.py check URL KEY [hammerwork]   on the host (standard library only): the API's counts equal
                                    the workload's (plus the hammerwork deliveries')
  python smoke.py hammerwork URL SECRET   on the host: signed webhook deliveries to the bridge (and a forged one)
  python smoke.py owners N          in a container: N live aggregators share every partition's lease fairly
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

JOBS, OPEN_JOBS, QUEUES = 60, 5, ("deploy-email", "deploy-billing")
TIMEOUT_S = 90.0
HAMMERWORK_QUEUE, HAMMERWORK_JOBS = "deploy-hammerwork", 3  # all enqueued, the first two completed


def script() -> list[tuple[str, str, str]]:
    """(event type, job id, queue) in order: completions, dead jobs, a failure that is retried, pending jobs."""
    events = []
    for i in range(JOBS + OPEN_JOBS):
        job, queue = f"smoke-{i}", QUEUES[i % 2]
        events.append(("enqueued", job, queue))
        if i >= JOBS:
            continue  # still pending
        events.append(("started", job, queue))
        if i % 10 == 0:
            events += [("failed", job, queue), ("retried", job, queue), ("started", job, queue)]
        events.append(("dead" if i % 10 == 5 else "completed", job, queue))
    return events


def expected() -> dict[str, int]:
    """The overview's counts for the script."""
    n = Counter(kind for kind, _, _ in script())
    return {"total_queues": len(QUEUES), "total_jobs": n["enqueued"], "pending_jobs": OPEN_JOBS, "running_jobs": 0,
            "completed_jobs": n["completed"], "failed_jobs": n["failed"], "dead_jobs": n["dead"],
            "retried_jobs": n["retried"], "lost_events": 0, "dead_letters": 0}


def with_hammerwork(counts: dict[str, int]) -> dict[str, int]:
    """The counts once the hammerwork deliveries are in too."""
    done = HAMMERWORK_JOBS - 1
    return {**counts, "total_queues": counts["total_queues"] + 1, "total_jobs": counts["total_jobs"] + HAMMERWORK_JOBS,
            "pending_jobs": counts["pending_jobs"] + 1, "completed_jobs": counts["completed_jobs"] + done}


def hammerwork(bridge_url: str, secret: str) -> int:
    """Deliver hammerwork JobLifecycleEvents to the bridge as hammerwork does (signed), and a forged one."""
    at = datetime.now(UTC) - timedelta(seconds=60)
    events = []
    for i in range(HAMMERWORK_JOBS):
        job = str(uuid.uuid4())
        kinds = ["enqueued"] if i == HAMMERWORK_JOBS - 1 else ["enqueued", "started", "completed"]
        for k, kind in enumerate(kinds):
            events.append({"event_id": str(uuid.uuid4()), "job_id": job, "queue_name": HAMMERWORK_QUEUE,
                           "event_type": kind, "priority": "Normal",
                           "timestamp": (at + timedelta(milliseconds=10 * i + k)).isoformat(),
                           "processing_time_ms": 12 if kind == "completed" else None, "error": None,
                           "payload": {}, "metadata": {}})
    body = json.dumps(events).encode()

    def post(signature: str) -> int:
        request = urllib.request.Request(f"{bridge_url}/hammerwork/events", data=body, method="POST", headers={
            "Content-Type": "application/json", "X-Hammerwork-Signature": signature})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    deadline, status = time.monotonic() + TIMEOUT_S, 0
    while time.monotonic() < deadline:  # the bridge may still be starting
        try:
            status = post("sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest())
            break
        except OSError:
            time.sleep(0.25)
    forged = post("sha256=" + "0" * 64)
    if (forged, status) != (401, 202):
        print(f"smoke: the bridge answered {forged} to a forged delivery (want 401), {status} (want 202)",
              file=sys.stderr)
        return 1
    print(f"smoke: the bridge accepted {len(events)} signed hammerwork events and refused a forged one")
    return 0


def send() -> int:
    """Emit the script through the emitter and wait until Redis has it all."""
    from aggregator.emitter import Emitter
    from aggregator.settings import Settings

    t0_s = time.time() - 60  # one millisecond apart, so that each job's events keep their order
    with Emitter(Settings(), worker_id="deploy-smoke", queues=QUEUES, concurrency=1) as emitter:
        for i, (kind, job, queue) in enumerate(script()):
            at_s = t0_s + i / 1000
            if kind in ("failed", "dead", "completed"):
                error = None if kind == "completed" else "smoke test failure"
                emitter.emit(kind, job, queue, timestamp_s=at_s, error=error, processing_time_ms=7)
            else:
                emitter.emit(kind, job, queue, timestamp_s=at_s)
        if not emitter.flush(timeout_s=TIMEOUT_S):
            print("smoke: the emitter could not send everything", file=sys.stderr)
            return 1
    print(f"smoke: sent {len(script())} events")
    return 0


def check(base_url: str, api_key: str, hammerwork_too: bool = False) -> int:
    """Poll the overview until it shows exactly the expected counts, and still does a second later."""
    want = with_hammerwork(expected()) if hammerwork_too else expected()
    deadline, got, matched_at = time.monotonic() + TIMEOUT_S, {}, None
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(f"{base_url}/api/stats/overview", headers={"X-API-Key": api_key})
            with urllib.request.urlopen(request, timeout=5) as response:
                data = json.load(response)["data"]
            got = {k: data[k] for k in want}
        except OSError as exc:
            got = {"error": str(exc)}  # type: ignore[dict-item]
        if got == want:
            matched_at = matched_at or time.monotonic()
            if time.monotonic() - matched_at >= 1.0:
                print(f"smoke: the API counts exactly {want}")
                return 0
        elif matched_at is not None:
            break  # it moved past the expected numbers: counted twice
        time.sleep(0.25)
    print(f"smoke: expected {want}\n       the API says {got}", file=sys.stderr)
    return 1


def owners(n: int) -> int:
    """Wait until ``n`` live aggregators hold every partition's lease between them, none more than its share."""
    from aggregator.connection import RedisTarget
    from aggregator.keys import Keys
    from aggregator.settings import Settings

    settings = Settings()
    client, keys = RedisTarget(settings.redis_url).sync(), Keys(settings.key_prefix)
    deadline, held = time.monotonic() + TIMEOUT_S, Counter[str]()
    while time.monotonic() < deadline:
        values = [client.get(keys.lease(p)) for p in range(settings.partitions)]
        held = Counter(v.decode().rsplit(":", 1)[0] for v in values if v is not None)
        live = client.zcard(keys.aggregators)
        fair_share = -(-settings.partitions // n)
        if live == n and len(held) == n and sum(held.values()) == settings.partitions \
                and max(held.values()) <= fair_share:
            print(f"smoke: {n} aggregators share the {settings.partitions} partitions: {sorted(held.values())}")
            return 0
        time.sleep(0.5)
    print(f"smoke: partitions held {dict(held)}, wanted {n} owners", file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    """Dispatch on the first argument."""
    if argv[:1] == ["send"]:
        return send()
    if argv[:1] == ["check"] and len(argv) in (3, 4):
        return check(argv[1], argv[2], argv[3:] == ["hammerwork"])
    if argv[:1] == ["hammerwork"] and len(argv) == 3:
        return hammerwork(argv[1], argv[2])
    if argv[:1] == ["owners"] and len(argv) == 2:
        return owners(int(argv[1]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
