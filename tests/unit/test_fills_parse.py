"""The fill parser: every well-formed fill reads back as itself; any bytes at all give a fill
or a rejection with its reason, never an exception."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlcore.feedback import (
    Fill,
    FillAction,
    FillLeg,
    Reason,
    Rejection,
    encode_fill,
    parse_fill,
)

from ._feedback_support import fill_doc, signal

PAIRS = frozenset({"EUR_GBP", "XAU_XAG", "BTC_ETH"})
MAX = 65_536


def _parse(doc: object, max_bytes: int = MAX) -> Fill | Rejection:
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return parse_fill(raw, max_bytes=max_bytes, known_pairs=PAIRS)


def _reason(doc: object, **kw: int) -> Reason:
    got = _parse(doc, **kw)
    assert isinstance(got, Rejection), got
    return got.reason


def test_a_good_fill_parses() -> None:
    doc = fill_doc(signal())
    fill = _parse(doc)
    assert isinstance(fill, Fill)
    assert fill.action == FillAction.ENTRY and fill.side == 1
    assert fill.filled_at == datetime(2025, 1, 6, 9, 0, 2, tzinfo=UTC)
    assert fill.legs[0].symbol == "EUR/USD" and fill.legs[0].price == pytest.approx(1.10)


def _with(path: tuple[object, ...], value: object) -> dict[str, object]:
    doc: dict[str, object] = fill_doc(signal())
    node: object = doc
    for key in path[:-1]:
        node = node[key]  # type: ignore[index]
    node[path[-1]] = value  # type: ignore[index]
    return doc


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        (("legs", 0, "qty"), -1.0, Reason.BAD_NUMBER),
        (("legs", 0, "qty"), 0.0, Reason.BAD_NUMBER),
        (("legs", 1, "price"), -2.5, Reason.BAD_NUMBER),
        (("legs", 1, "price"), 10**400, Reason.BAD_NUMBER),
        (("legs", 0, "fee_usd"), -0.1, Reason.BAD_NUMBER),
        (("legs", 0, "qty"), "100", Reason.BAD_SCHEMA),
        (("legs", 0, "qty"), True, Reason.BAD_SCHEMA),
        (("legs", 0, "side"), "LONG", Reason.BAD_SCHEMA),
        (("side",), 2, Reason.BAD_SCHEMA),
        (("side",), 1.0, Reason.BAD_SCHEMA),
        (("action",), "hold", Reason.BAD_SCHEMA),
        (("pair_id",), "NOPE_PAIR", Reason.UNKNOWN_PAIR),
        (("signal_id",), "x" * 32, Reason.BAD_SCHEMA),
        (("fill_id",), "", Reason.BAD_SCHEMA),
        (("filled_at",), "2025-01-06T09:00:02", Reason.BAD_SCHEMA),
        (("filled_at",), "yesterday", Reason.BAD_SCHEMA),
        (("legs",), [], Reason.BAD_SCHEMA),
        (("schema",), "mlcore.fill.v0", Reason.BAD_SCHEMA),
        (("surprise",), 1, Reason.BAD_SCHEMA),
    ],
)
def test_a_bad_field_is_refused_with_its_reason(
    path: tuple[object, ...], value: object, reason: Reason
) -> None:
    assert _reason(_with(path, value)) == reason


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_bad_numbers(constant: str) -> None:
    text = json.dumps(fill_doc(signal())).replace('"qty": 10000.0', f'"qty": {constant}', 1)
    assert constant in text
    assert _reason(text.encode()) == Reason.BAD_NUMBER


def test_bytes_that_are_no_fill() -> None:
    assert _reason(b"\xff\xfe{}") == Reason.NOT_UTF8
    assert _reason(b"{not json") == Reason.BAD_JSON
    assert _reason(b"[" * 100_000 + b"]" * 100_000, max_bytes=10**6) == Reason.BAD_JSON
    assert _reason(b"[1, 2]") == Reason.BAD_SCHEMA
    assert _reason(b" " * (MAX + 1)) == Reason.TOO_LARGE


def test_the_fill_id_is_kept_when_readable() -> None:
    got = _parse(_with(("legs", 0, "qty"), -1))
    assert isinstance(got, Rejection) and got.fill_id == "EA-1"


def test_an_offset_time_is_read_as_utc() -> None:
    got = _parse(_with(("filled_at",), "2025-01-06T18:00:02+09:00"))
    assert isinstance(got, Fill)
    assert got.filled_at == datetime(2025, 1, 6, 9, 0, 2, tzinfo=UTC)


_finite = st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False)
_legs = st.builds(
    FillLeg, symbol=st.text(min_size=1, max_size=20), side=st.sampled_from(["BUY", "SELL"]),
    qty=_finite, price=_finite, fee_usd=st.floats(0, 1e6, allow_nan=False),
)  # fmt: skip
_fills = st.builds(
    Fill,
    fill_id=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}", fullmatch=True),
    signal_id=st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
    pair_id=st.sampled_from(sorted(PAIRS)),
    model_version=st.none() | st.text(min_size=1, max_size=40),
    action=st.sampled_from(list(FillAction)),
    side=st.sampled_from([1, -1]),
    filled_at=st.datetimes(
        min_value=datetime(2000, 1, 1),  # noqa: DTZ001 (hypothesis wants naive bounds)
        max_value=datetime(2100, 1, 1),  # noqa: DTZ001
        timezones=st.just(UTC),
    ),
    legs=st.tuples(_legs, _legs),
)


@settings(max_examples=300, deadline=None)
@given(_fills)
def test_an_encoded_fill_reads_back_as_itself(fill: Fill) -> None:
    assert _parse(encode_fill(fill)) == fill


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_give_a_fill_or_a_reason(raw: bytes) -> None:
    got = parse_fill(raw, max_bytes=1000, known_pairs=PAIRS)
    assert isinstance(got, Fill | Rejection)
    if len(raw) > 1000:
        assert isinstance(got, Rejection) and got.reason == Reason.TOO_LARGE


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["legs", "side", "qty", "price", "filled_at", "fill_id", "action"]), _json)
def test_a_mutated_good_fill_never_crashes(key: str, value: object) -> None:
    doc = fill_doc(signal())
    target = doc["legs"][0] if key in ("qty", "price") else doc
    target[key] = value
    text = json.dumps(doc, allow_nan=True).encode()
    got = parse_fill(text, max_bytes=MAX, known_pairs=PAIRS)
    if isinstance(got, Fill):  # whatever passed is a usable fill
        assert all(math.isfinite(g.qty) and g.qty > 0 and g.price > 0 for g in got.legs)
        assert got.side in (1, -1)
