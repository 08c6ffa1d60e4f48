"""The send frontier's comparisons: file offsets and stream ids, sources named on one side only,
and values that are not positions."""

from __future__ import annotations

from mlcore.serving._frontier import ahead, furthest


def test_ahead_compares_offsets_and_stream_ids() -> None:
    assert ahead({"file:b": "120"}, {"file:b": "100"})
    assert not ahead({"file:b": "100"}, {"file:b": "100"})
    assert ahead({"s:A": "1700-3"}, {"s:A": "1700-2", "s:B": "9-0"})
    assert not ahead({"s:A": "1699-9"}, {"s:A": "1700-0"})
    assert not ahead({}, {"file:b": "0"})
    assert not ahead({"s:gone": "5-0"}, {"s:A": "1-0"})  # a source no longer read
    assert not ahead({"file:b": "x1"}, {"file:b": "0"})  # not a position: never recovering


def test_furthest_never_moves_back() -> None:
    assert furthest({"s:A": "5-0", "s:B": "1-0"}, {"s:A": "4-9", "s:B": "2-0"}) == {
        "s:A": "5-0", "s:B": "2-0"
    }  # fmt: skip
    assert furthest({"s:old": "3-0"}, {"s:A": "1-0"}) == {"s:A": "1-0", "s:old": "3-0"}
