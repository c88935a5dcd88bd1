"""The shared reading of a server's ``Retry-After``."""

from __future__ import annotations

import pytest

from mep_kubeedge_adapter.backoff import retry_after


@pytest.mark.parametrize(
    ("value", "expected"),
    [("5", 5.0), ("0", 0.0), ("1.5", 1.5), ("120", 30.0), (" 2 ", 2.0)],
)
def test_a_number_of_seconds_is_followed_up_to_the_cap(value: str, expected: float) -> None:
    assert retry_after(value, 30.0) == expected


@pytest.mark.parametrize(
    "value", [None, "", "soon", "-1", "inf", "nan", "Wed, 21 Oct 2015 07:28:00 GMT"]
)
def test_no_usable_number_asks_for_no_wait(value: str | None) -> None:
    assert retry_after(value, 30.0) is None
