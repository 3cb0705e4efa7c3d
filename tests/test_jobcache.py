"""The partition owner's memory of job states: what it trusts, what it forgets."""

from __future__ import annotations

from aggregator.jobcache import JobCache, JobRecord, Known


def _record(state: str = "R") -> JobRecord:
    return JobRecord(state, 1_000, 1, "q", ["e1", "e,2"])


def test_a_record_round_trips_through_its_stored_form() -> None:
    record = _record()
    assert JobRecord.decode(record.encode()) == record


def test_a_job_whose_stored_key_may_have_expired_is_read_again() -> None:
    cache = JobCache(10)
    cache.put("fresh", Known(_record(), expires_at_s=1_000.0))
    cache.put("expiring", Known(_record(), expires_at_s=110.0))  # within the safety margin of now=100
    cache.put("unknown-ttl", Known(None))
    assert cache.missing(["fresh", "expiring", "unknown-ttl", "never-seen"], now_s=100.0) == [
        "expiring", "never-seen"]
    assert cache.get("expiring") is None  # dropped, so the read's answer replaces it


def test_trim_forgets_finished_jobs_then_the_oldest_beyond_capacity() -> None:
    cache = JobCache(2)
    cache.put("done", Known(_record("F")), finished=True)
    for job in ("a", "b", "c"):
        cache.put(job, Known(_record()))
    cache.put("b", Known(_record()))  # touched again: now the newest
    cache.trim()
    assert cache.get("done") is None and cache.get("a") is None
    assert cache.get("c") is not None and cache.get("b") is not None and len(cache) == 2


def test_a_finished_job_that_came_back_is_kept() -> None:
    cache = JobCache(10)
    cache.put("j", Known(_record("F")), finished=True)
    cache.put("j", Known(_record("P")))  # restored before the trim
    cache.trim()
    assert cache.get("j") is not None


def test_forgotten_since_names_what_was_forgotten_after_a_generation() -> None:
    cache = JobCache(1)
    before = cache.generation
    cache.put("a", Known(_record()))
    cache.put("b", Known(_record()))
    cache.trim()  # "a" is beyond the capacity
    middle = cache.generation
    cache.put("done", Known(_record("F")), finished=True)
    cache.trim()
    assert cache.forgotten_since(before) == [{"a"}, {"done"}]
    assert cache.forgotten_since(middle) == [{"done"}]
    assert cache.forgotten_since(cache.generation) == []
    cache.clear()
    assert cache.forgotten_since(middle) is None  # cleared: nothing read before can be trusted
    assert cache.forgotten_since(cache.generation) == []


def test_forgotten_since_is_unknown_for_a_generation_older_than_it_remembers() -> None:
    cache = JobCache(0)
    start = cache.generation
    for n in range(100):
        cache.put(f"j{n}", Known(_record()))
        cache.trim()
    assert cache.forgotten_since(start) is None
    recent = cache.forgotten_since(cache.generation - 3)
    assert recent == [{"j97"}, {"j98"}, {"j99"}]


def test_a_record_with_the_job_fields_round_trips_and_the_five_field_form_still_decodes() -> None:
    full = JobRecord("A", 2_000, 2, "q", ["e1"], "failed", "high", 1_000, 1_500, None, 2_000, "boom", 2_000, 40,
                     2, 1)
    assert JobRecord.decode(full.encode()) == full
    assert JobRecord.decode(b'["P",1000,0,"q",["e1"]]') == JobRecord("P", 1_000, 0, "q", ["e1"])
