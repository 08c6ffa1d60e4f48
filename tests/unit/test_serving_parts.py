"""Bar messages, ops flags, the outbox and pair assignment of the serving stage."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from mlcore.serving import (
    Bar,
    BarRejected,
    FileBarSource,
    FlagReader,
    OpsFlags,
    Outbox,
    assign_pairs,
    bar_message,
    parse_bar,
    parse_flags,
    write_flags,
)

GOOD = {"symbol": "XAU/USD", "ts": "2024-01-02T03:00:00Z", "open": 2000.0, "high": 2001.0,
        "low": 1999.0, "close": 2000.5, "volume": 10.0}  # fmt: skip


def test_bar_round_trips_through_its_message() -> None:
    bar = parse_bar(json.dumps(GOOD).encode())
    assert bar == Bar("XAU/USD", 1_704_164_400_000_000_000, 2000.0, 2001.0, 1999.0, 2000.5, 10.0)
    fields = {k.encode(): v.encode() for k, v in bar_message(bar).items()}
    assert parse_bar(fields) == bar


@pytest.mark.parametrize(
    ("change", "reason", "text"),
    [
        ({"close": "abc"}, "malformed", "close 'abc' is not a number"),
        ({"ts": "2024-01-02 03:00"}, "malformed", "must be UTC"),
        ({"ts": "yesterday"}, "malformed", "not an ISO-8601"),
        ({"high": 1.0}, "ohlc_inconsistent", "high/low do not bound"),
        ({"low": -5.0}, "bad_price", "finite and > 0"),
        ({"close": float("nan")}, "bad_price", "finite and > 0"),
        ({"volume": -1}, "bad_price", "volume"),
        ({"symbol": ""}, "malformed", "symbol"),
    ],
)
def test_malformed_bars_are_rejected_with_a_reason(change: dict, reason: str, text: str) -> None:
    with pytest.raises(BarRejected, match=text) as info:
        parse_bar(json.dumps({**GOOD, **change}).encode())
    assert info.value.reason == reason


def test_not_json_and_missing_fields() -> None:
    with pytest.raises(BarRejected, match="not JSON"):
        parse_bar(b"{oops")
    with pytest.raises(BarRejected, match=r"missing field\(s\) \['volume'\]"):
        parse_bar(json.dumps({k: v for k, v in GOOD.items() if k != "volume"}).encode())
    with pytest.raises(BarRejected, match="JSON object"):
        parse_bar(b"[1, 2]")


def test_file_source_reads_whole_lines_only_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "bars.jsonl"
    line = json.dumps(GOOD).encode()
    path.write_bytes(line + b"\n" + line[:10])
    src = FileBarSource(path)
    got = src.read(100, 0)
    assert [r.payload for r in got] == [line]
    assert src.read(100, 0) == []  # the half line waits
    with path.open("ab") as fh:
        fh.write(line[10:] + b"\n")
    assert [r.payload for r in src.read(100, 0)] == [line]
    again = FileBarSource(path)
    again.seek({"file:bars.jsonl": got[0].position})
    assert [r.payload for r in again.read(100, 0)] == [line]


def test_flags_parse_and_name_the_bad_field() -> None:
    doc = b'{"global_halt": false, "halted_pairs": ["A"], "leverage_scale": 0.5}'
    f = parse_flags(doc, "x", complete=False)  # as the audit trail's documents are read
    assert f == OpsFlags(halted_pairs=frozenset({"A"}), leverage_scale=0.5)
    with pytest.raises(ValueError, match="x: ops flags must state every flag, hard_halt, "):
        parse_flags(doc, "x")  # the store's document: whole, as flags_json writes it
    assert parse_flags(None, "x") == OpsFlags()
    with pytest.raises(ValueError, match="x: ops flag 'leverage_scale'"):
        parse_flags(b'{"leverage_scale": 2}', "x")
    with pytest.raises(ValueError, match="x: ops flag 'halt'"):
        parse_flags(b'{"halt": true}', "x")
    with pytest.raises(ValueError, match="not JSON"):
        parse_flags(b"{", "x")


def test_bad_flags_keep_the_last_good_ones(tmp_path: Path) -> None:
    path = tmp_path / "ops_flags.json"
    reader = FlagReader(None, "k", path)
    assert reader.read() == OpsFlags()
    write_flags(None, "k", path, OpsFlags(global_halt=True))
    assert reader.read().global_halt
    path.write_text('{"global_halt": "yes"}')
    assert reader.read().global_halt  # a typo does not lift the halt
    assert reader.errors == 1


def test_outbox_commits_atomically_and_ignores_known_ids(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "w.db")
    box.commit(
        [("a", "P", 1, b"1", 0), ("b", "P", 2, b"2", 0)], {"P": ("v1", b"E", "{}")}, {"k": "1"}
    )
    box.commit([("b", "P", 2, b"other", 0), ("c", "P", 3, b"3", 1)], {}, {"k": "2"})
    assert box.payloads() == [b"1", b"2", b"3"]
    assert box.states() == {"P": ("v1", b"E", "{}")}
    assert box.kv() == {"k": "2"}
    rows = box.pending("delivered", 10)
    assert [r[1] for r in rows] == ["a", "b"]  # c went to Redis before its commit
    box.mark("delivered", rows[0][0])
    assert [r[1] for r in box.pending("delivered", 10)] == ["b"]
    assert box.count("aggregated") == 3
    with pytest.raises(ValueError, match="unknown outbox column"):
        box.pending("payload; DROP TABLE signals", 1)
    with pytest.raises(sqlite3.ProgrammingError):
        box.commit([("d", "P", 4, b"4", 0), ("e", "P", 5)], {}, {})  # type: ignore[list-item]
    assert box.count() == 3  # the failed commit left nothing behind


def test_assign_pairs() -> None:
    pairs = [f"P{i}" for i in range(12)]
    groups = assign_pairs(pairs, 5)
    assert len(groups) == 3 and sorted(p for g in groups for p in g) == sorted(pairs)
    assert max(len(g) for g in groups) <= 5
    assert len(assign_pairs(pairs, 5, workers=2)) == 2
    assert len(assign_pairs(["A"], 5, workers=4)) == 1
    with pytest.raises(ValueError, match="no pairs"):
        assign_pairs([], 5)


def test_a_file_replaced_by_a_shorter_one_is_read_from_its_start(tmp_path: Path) -> None:
    """Review finding: after a rotation the source stalled, then skipped the new file's first
    lines once it grew past the old offset."""
    path = tmp_path / "bars.jsonl"
    line = json.dumps(GOOD).encode() + b"\n"
    path.write_bytes(line * 3)
    src = FileBarSource(path)
    assert len(src.read(100, 0)) == 3
    other = json.dumps({**GOOD, "close": 2000.7}).encode() + b"\n"
    path.write_bytes(other)  # rotated: shorter than the offset
    assert [r.payload for r in src.read(100, 0)] == [other.strip()]
    broken = FileBarSource(path)
    broken.seek({"file:bars.jsonl": "9" * 19})  # a damaged checkpoint
    assert [r.payload for r in broken.read(100, 0)] == [other.strip()]


def test_a_message_is_known_by_its_place_and_its_bytes(tmp_path: Path) -> None:
    """The same message read again has the same id; another message at the same place (a file
    replaced by a shorter one) has another, so neither its dead letter nor a death on the old
    one is mixed up with it."""
    from mlcore.serving._bars import RawBar
    from mlcore.serving._dead import InflightMark, count_death, message_id

    one = RawBar("file:bars.jsonl", "13", b"\x00garbage-one", 12)
    assert message_id(one) == message_id(RawBar("file:bars.jsonl", "13", b"\x00garbage-one", 12))
    other = RawBar("file:bars.jsonl", "13", b"\x00garbage-two", 12)
    assert message_id(other) != message_id(one)
    entry_1, entry_2 = RawBar("s", "1-0", {"ts": "1"}), RawBar("s", "1-0", {"ts": "2"})
    assert message_id(entry_1) != message_id(entry_2)
    deaths: dict[str, int] = {}
    mark = InflightMark(tmp_path / "w.mark")
    mark.set(one, message_id(one))
    again = InflightMark(tmp_path / "w.mark")  # the worker died on ``one``
    assert again.left_behind == ("file:bars.jsonl", "13", message_id(one))
    count_death(deaths, again.left_behind[2])
    assert deaths.get(message_id(other), 0) == 0
    (tmp_path / "w.mark").write_bytes(b'1["file:bars.jsonl", "13"]')  # a mark of an older release
    assert InflightMark(tmp_path / "w.mark").left_behind is None
