"""Which group each test belongs to, in one place (tests/conftest.py applies it as a marker):

* ``unit``: pure, no Redis, no processes; the whole group runs in seconds;
* ``integration``: against the local Redis (``JOBPULSE_TEST_REDIS_URL``), in this process;
* ``system``: real processes (jobpulse commands, redis-servers of the test's own, Redis Cluster,
  Celery/RQ/Dramatiq/arq workers, a browser), fault injection and benchmarks.

A test that asks for the ``demo_url`` fixture (a ``jobpulse serve --demo`` process) is a system
test. A test that asks for the ``redis_url`` fixture (directly or through ``settings``/``client``) is an
integration test unless listed below as a system test; a module whose tests reach Redis without the
fixture is listed in ``INTEGRATION_MODULES``. A new test module of processes goes in ``SYSTEM_MODULES``.
"""

from __future__ import annotations

SYSTEM_MODULES = frozenset({
    "test_acl_tls", "test_bench", "test_cli", "test_cluster", "test_dashboard", "test_faults", "test_install",
    "test_integration_arq", "test_integration_celery", "test_integration_dramatiq", "test_integration_errors",
    "test_integration_rq",
    "test_spool", "test_start_order",
})
# system tests inside modules that are otherwise unit or integration tests (module::function)
SYSTEM_TESTS = frozenset({
    "test_auth::test_refuses_a_public_address_without_auth",
    "test_auth::test_insecure_overrides_with_a_warning_and_auth_needs_no_override",
    "test_consumer::test_kill_9_at_random_points_loses_and_repeats_nothing",
    "test_emitter::test_emitter_buffers_through_an_outage_and_delivers_after",
    "test_integration_hammerwork::test_the_bridge_refuses_a_public_address_without_a_secret",
    "test_top::test_top_without_an_api_says_so",
})
INTEGRATION_MODULES = frozenset({"test_fuzz"})  # reaches Redis through REDIS_URL inside hypothesis examples
GROUPS = ("unit", "integration", "system")


def group_of(module: str, function: str, fixtures: list[str]) -> str:
    """The group of one test, from its module name, function name and the fixtures it uses."""
    if module in SYSTEM_MODULES or f"{module}::{function}" in SYSTEM_TESTS or "demo_url" in fixtures:
        return "system"
    if module in INTEGRATION_MODULES or "redis_url" in fixtures:
        return "integration"
    return "unit"
