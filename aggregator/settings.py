"""All configuration, read once from ``JOBPULSE_*`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """jobpulse settings; build once at start-up and pass down."""

    model_config = SettingsConfigDict(env_prefix="JOBPULSE_", extra="ignore")

    redis_url: str | None = Field(
        default=None,
        description="Redis to use; unset means an embedded store (serve only).",
    )
    key_prefix: str = Field(default="jp", min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")
    partitions: int = Field(default=4, ge=1, le=1024, description="P, fixed at first start.")

    # aggregator
    batch_size: int = Field(default=2000, ge=1, le=100_000, description="Stream entries read at a time.")
    flush_interval_ms: int = Field(
        default=50, ge=1, le=400, description="Longest a read entry waits to be applied (freshness budget: 500 ms)."
    )
    max_flush_entries: int = Field(default=20_000, ge=1, description="Entries folded into one apply, at most.")
    job_cache_size: int = Field(default=100_000, ge=0, description="Job states the partition owner keeps in memory.")
    idle_sleep_ms: int = Field(default=50, ge=1, le=10_000)
    lease_ttl_ms: int = Field(default=10_000, ge=500)
    stream_maxlen: int = Field(default=2_000_000, ge=100)
    deadletter_maxlen: int = Field(default=100_000, ge=10)
    max_entry_bytes: int = Field(default=64 * 1024, ge=1024)
    dedup_window_s: int = Field(default=600, ge=1)
    job_ttl_s: int = Field(default=7 * 86_400, ge=60, description="Expiry of an unfinished job's state.")
    recent_jobs_per_queue: int = Field(
        default=100, ge=0, le=100_000,
        description="Jobs per queue whose latest state and times are kept for /api/jobs (0: none).")
    recent_failures_per_queue: int = Field(
        default=50, ge=0, le=100_000, description="Failures per queue kept with their error message (0: none).")
    future_tolerance_s: int = Field(default=300, ge=0)
    # At least an hour: a minute is rolled up into its hour and day a few minutes after it ends, and
    # one an aggregator outage leaves unrolled must still be there when the next owner rolls it up.
    minute_retention_s: int = Field(default=48 * 3600, ge=3600)
    hour_retention_s: int = Field(default=90 * 86_400, ge=3600)
    day_retention_s: int = Field(default=730 * 86_400, ge=86_400)
    worker_retention_s: int = Field(
        default=86_400, ge=60, description="A worker silent this long is removed from the workers hash."
    )

    # emitter
    emit_batch_size: int = Field(default=500, ge=1)
    emit_flush_interval_ms: int = Field(default=100, ge=1)
    emit_buffer_max: int = Field(default=100_000, ge=1)
    heartbeat_interval_s: float = Field(default=10.0, gt=0)
    emit_spool_dir: str | None = Field(
        default=None, description="Directory where a closing emitter leaves unsent events for the next one."
    )

    # api
    api_host: str = "127.0.0.1"
    api_keys: str = Field(default="", description="Comma-separated SHA-256 hex digests of the accepted API keys.")
    api_key_header: str = Field(default="X-API-Key", min_length=1)
    basic_users: str = Field(default="", description="Comma-separated user:<bcrypt hash> pairs for HTTP Basic.")
    auth_max_failures: int = Field(default=5, ge=1, description="Failed logins from one client before lockout.")
    auth_lockout_s: int = Field(default=900, ge=1, description="How long a locked-out client waits.")
    trusted_proxies: str = Field(
        default="",
        description="Comma-separated addresses or networks of reverse proxies whose X-Forwarded-For is believed "
        "(the auth lockout then sees the client's address); empty: none, '*': any.",
    )
    insecure: bool = Field(default=False, description="Allow serving off loopback without authentication.")
    api_port: int = Field(default=8000, ge=0, le=65_535)
    rate_window_s: int = Field(default=300, ge=60)
    stale_after_s: float = Field(default=30.0, gt=0, description="Aggregator lag that is critical.")
    error_rate_warning: float = 0.1
    error_rate_critical: float = 0.2
    backlog_warning: int = 1000
    slow_processing_ms: float = 30_000.0
    stream_interval_s: float = Field(default=1.0, gt=0, description="Seconds between live-stream updates.")
    hammerwork_secret: str = Field(
        default="", description="HMAC secret shared with hammerwork's webhook; empty accepts unsigned deliveries."
    )
    bridge_port: int = Field(default=8001, ge=0, le=65_535, description="Port of `jobpulse hammerwork-bridge`.")
    stream_max_clients: int = Field(default=100, ge=1, description="Live streams open at once, at most.")
