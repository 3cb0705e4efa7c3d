"""Error signatures ignore ids, numbers and quoted values, and nothing else."""

from __future__ import annotations

from aggregator.errors import classify, most_frequent_type, normalise, signature


def test_same_failure_with_other_values_shares_a_signature() -> None:
    a = "user 'bob' 550e8400-e29b-41d4-a716-446655440000 timed out after 30s at 0xdeadbeef"
    b = "user 'alice' 123e4567-e89b-12d3-a456-426614174000 timed out after 45s at 0xcafe"
    assert normalise(a) == normalise(b) == "user <str> <uuid> timed out after <n>s at <hex>"
    assert signature(a) == signature(b)
    assert signature("disk full") != signature("disk missing")


def test_classify_guesses_a_type_from_the_message() -> None:
    assert classify("Connection refused") == "ConnectionError"
    assert classify("request timed out") == "TimeoutError"
    assert classify("weird") == "Error"


def test_most_frequent_type_wins_ties_by_name_and_falls_back_to_the_message() -> None:
    assert most_frequent_type({"timeout": 3, "TimeoutError": 2}, "x") == "timeout"
    assert most_frequent_type({"b": 2, "a": 2}, "x") == "a"
    assert most_frequent_type({}, "connection refused") == "ConnectionError"
