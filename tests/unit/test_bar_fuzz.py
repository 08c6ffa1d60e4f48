"""The live bar parser under hostile input: whatever bytes or stream fields arrive, parse_bar
returns a Bar or raises BarRejected with a reason; nothing else escapes (a worker would die on
it and re-read it on restart). The regression corpus holds every input that once crashed it."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlcore.serving import BAR_REASONS, Bar, BarRejected, FileBarSource, parse_bar

GOOD = {"symbol": "XAU/USD", "ts": "2024-01-02T03:00:00Z", "open": 2000.0, "high": 2001.0,
        "low": 1999.0, "close": 2000.5, "volume": 10.0}  # fmt: skip


def _line(**change: object) -> bytes:
    return json.dumps({**GOOD, **change}).encode()


# Inputs that crashed a worker (issue 16's fault campaign and the fuzzer), with the reason now.
CORPUS: list[tuple[str, bytes | dict[bytes, bytes], str]] = [
    ("superscript digit ts", _line(ts="²"), "malformed"),
    ("arabic-indic digits ts", _line(ts="١٢٣"), "malformed"),
    ("20-digit ts", _line(ts="12345678901234567890"), "malformed"),
    ("20-digit integer ts", b'{"symbol":"XAU/USD","ts":12345678901234567890,"open":1,"high":1,'
                            b'"low":1,"close":1,"volume":0}', "malformed"),
    ("negative ts", _line(ts=-5), "malformed"),
    ("year 1 ts", _line(ts="0001-01-01T00:00:00Z"), "malformed"),
    ("non-UTF-8 byte", b'{"symbol":"XAU/USD\xff","ts":"2024-01-02T03:00:00Z"}', "malformed"),
    ("non-UTF-8 stream field", {b"symbol": b"\xff\xfe", b"ts": b"1", b"open": b"1",
                                b"high": b"1", b"low": b"1", b"close": b"1", b"volume": b"0"},
     "malformed"),
    ("non-UTF-8 stream ts", {b"symbol": b"XAU/USD", b"ts": b"\xff", b"open": b"1", b"high": b"1",
                             b"low": b"1", b"close": b"1", b"volume": b"0"}, "malformed"),
    ("non-UTF-8 stream price", {b"symbol": b"XAU/USD", b"ts": b"1", b"open": b"\xc3",
                                b"high": b"1", b"low": b"1", b"close": b"1", b"volume": b"0"},
     "malformed"),
    ("deep JSON", b"[" * 3000 + b"]" * 3000, "too_large"),
    ("deep JSON under the size limit", b"[" * 2000 + b"]" * 2000, "malformed"),
    ("huge line", _line(symbol="X" * 300_000), "too_large"),
    ("boolean price", _line(close=True), "malformed"),
    ("boolean ts", _line(ts=True), "malformed"),
    ("price as an object", _line(open={"a": 1}), "malformed"),
    ("4000-digit price", _line(close="9" * 4000), "too_large"),
    ("70-digit price", _line(close="9" * 70), "malformed"),
    ("400-digit JSON integer price", b'{"symbol":"XAU/USD","ts":"2024-01-02T03:00:00Z","open":'
                                     + b"9" * 400 + b',"high":1,"low":1,"close":1,"volume":0}',
     "malformed"),
    ("400-digit JSON integer volume", b'{"symbol":"XAU/USD","ts":"2024-01-02T03:00:00Z",'
                                      b'"open":1,"high":1,"low":1,"close":1,"volume":'
                                      + b"9" * 400 + b"}", "malformed"),
    ("Arabic-Indic digit price", _line(close="\u0661"), "malformed"),
    ("underscored price", _line(high="1_000"), "malformed"),
    ("price 1e400", _line(close="1e400", high="1e400"), "bad_price"),
    # Found by review: a volume of 1e308 overflowed the 20-bar VWAP and volume ratio to inf.
    ("volume 1e308", _line(volume=1e308), "bad_price"),
    ("symbol with a control sequence", _line(symbol="XAU\x1b[2J"), "malformed"),
    ("symbol as a number", _line(symbol=7), "malformed"),
    ("a JSON string", b'"XAU/USD"', "malformed"),
    ("an empty object", b"{}", "malformed"),
    ("a lone surrogate", b'{"symbol":"\\ud800","ts":"2024-01-02T03:00:00Z","open":1,"high":1,'
                         b'"low":1,"close":1,"volume":0}', "malformed"),
    # Found by review: json keeps the last of two equal keys, so one was silently chosen.
    ("a price given twice", _line()[:-1] + b', "close": "1.6"}', "malformed"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "payload", "reason"), CORPUS, ids=[c[0] for c in CORPUS])
def test_the_crash_corpus_is_refused_with_its_reason(
    name: str, payload: bytes | dict[bytes, bytes], reason: str
) -> None:
    with pytest.raises(BarRejected) as info:
        parse_bar(payload)
    assert info.value.reason == reason, (name, str(info.value))
    assert str(info.value) and len(str(info.value)) < 400  # one readable line, not the payload
    assert "\x1b" not in str(info.value)


def _check(payload: bytes | dict[bytes, bytes]) -> None:
    refused: BarRejected | None = None
    try:
        bar = parse_bar(payload)
    except BarRejected as exc:
        refused = exc
    if refused is not None:
        assert refused.reason in BAR_REASONS
        assert "\n" not in str(refused) and "\x1b" not in str(refused)
        return
    assert isinstance(bar, Bar)
    assert 0 <= bar.ts_ns < 2**63
    assert all(math.isfinite(v) and v > 0 for v in (bar.open, bar.high, bar.low, bar.close))
    assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high
    assert bar.symbol.isprintable() and 0 < len(bar.symbol) <= 64


@given(st.binary(max_size=600))
def test_any_bytes_are_a_bar_or_a_refusal(data: bytes) -> None:
    _check(data)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.sampled_from([*GOOD, "extra"]), _json_values, max_size=9))
def test_any_json_object_is_a_bar_or_a_refusal(doc: dict[str, object]) -> None:
    _check(json.dumps(doc).encode())


@given(
    st.fixed_dictionaries({k: st.just(json.dumps(v).strip('"')) for k, v in GOOD.items()}),
    st.sampled_from(list(GOOD)),
    st.binary(max_size=40),
)
def test_any_stream_field_is_a_bar_or_a_refusal(
    fields: dict[str, str], key: str, value: bytes
) -> None:
    raw = {k.encode(): v.encode() for k, v in fields.items()}
    raw[key.encode()] = value
    _check(raw)


def test_a_line_longer_than_the_limit_is_handed_out_whole_and_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A 300 KB line neither stalls the file source nor reaches the parser whole: it is one
    message (its position after its newline) refused as too_large; the next line reads."""
    path = tmp_path / "bars.jsonl"
    big = _line(symbol="X" * 300_000)
    path.write_bytes(big + b"\n" + _line() + b"\n")
    src = FileBarSource(path)
    got = []
    for _ in range(5):
        got += src.read(512, 0)
    assert len(got) == 2
    assert int(got[0].position) == len(big) + 1 and got[0].size == len(big)
    with pytest.raises(BarRejected) as info:
        parse_bar(got[0].payload, size=got[0].size)
    assert info.value.reason == "too_large"
    assert parse_bar(got[1].payload).symbol == "XAU/USD"
