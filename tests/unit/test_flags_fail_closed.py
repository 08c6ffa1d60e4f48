"""Ops flags fail closed: an absent document never lifts a halt (the flags in force are kept and
written back), a store unreadable for longer than the limit halts new entries, and no document,
however hostile, makes the parser raise anything but ValueError."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlcore.serving import Control, FlagReader, OpsFlags, flags_json, parse_flags, write_flags

HALT = OpsFlags(global_halt=True, halted_pairs=frozenset({"XAU_XAG"}))


def test_an_absent_document_keeps_the_halt_and_writes_it_back(tmp_path: Path) -> None:
    path = tmp_path / "ops_flags.json"
    reader = FlagReader(None, "k", path)
    assert reader.read() == OpsFlags()  # never written: nothing to lift
    assert not path.exists()
    write_flags(None, "k", path, HALT)
    assert reader.read() == HALT
    path.unlink()  # lost: a restore from an old backup, a clean-up, a DEL
    assert reader.read() == HALT
    assert parse_flags(path.read_bytes(), "file") == HALT  # written back
    write_flags(None, "k", path, OpsFlags())  # lifting a halt takes a document that says so
    assert reader.read() == OpsFlags()


def test_flags_kept_by_a_restarted_worker_survive_the_loss_of_the_document(tmp_path: Path) -> None:
    path = tmp_path / "ops_flags.json"
    reader = FlagReader(None, "k", path, flags=HALT)  # as the worker's outbox kept them
    assert reader.read() == HALT and parse_flags(path.read_bytes(), "file") == HALT


def test_a_store_unreadable_for_longer_than_the_limit_halts_new_entries(tmp_path: Path) -> None:
    path = tmp_path / "ops_flags.json"
    reader = FlagReader(None, "k", path, max_age_s=0.2)
    path.mkdir()  # unreadable: reading a directory is an OSError
    assert reader.read() == OpsFlags() and not reader.stale  # within the limit: as before
    time.sleep(0.25)
    reader.read()
    assert reader.stale and reader.in_force().global_halt
    assert not reader.flags.global_halt  # the document's own flags are not rewritten
    path.rmdir()
    write_flags(None, "k", path, OpsFlags(leverage_scale=0.5))
    assert reader.read().leverage_scale == 0.5 and not reader.stale
    assert reader.in_force() == OpsFlags(leverage_scale=0.5)


HOSTILE = {
    "deep": b"[" * 5000 + b"]" * 5000,
    "unhashable pair": b'{"halted_pairs": [{"a": 1}]}',
    "huge int": b'{"leverage_scale": 1' + b"0" * 500 + b"}",
    "escape in a key": b'{"global_halt": true, "\\u001b[2J": 1}',
    "not UTF-8": b"\xff\xfe",
    "huge": b" " * 70_000,
    "nested list": b'{"halted_pairs": [[1]]}',
    # Found by review: json kept the last of two equal keys, so this lifted the halt.
    "a halt and its lifting": b'{"global_halt": true, "global_halt": false}',
}


@pytest.mark.parametrize("raw", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_documents_are_one_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError, match=r"^x: ") as info:
        parse_flags(raw, "x")
    assert "\x1b" not in str(info.value) and len(str(info.value)) < 300


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "global_halt",
                "halted_pairs",
                "hard_halt",
                "hard_halted_pairs",
                "flatten_all",
                "flatten_pairs",
                "leverage_scale",
                "seq",
                "other",
            ]
        ),
        _values,
        max_size=5,
    )
)
def test_any_document_is_flags_or_a_value_error(doc: dict[str, object]) -> None:
    try:
        flags = parse_flags(json.dumps(doc).encode(), "x")
    except ValueError:
        return
    assert 0.0 <= flags.leverage_scale <= 1.0
    assert isinstance(flags.seq, int) and 0 <= flags.seq < 2**63
    assert parse_flags(flags_json(flags), "again") == flags  # the JSON says it all
    assert set(doc) <= set(OpsFlags.model_fields)  # an unknown key is never taken


@given(
    st.builds(
        OpsFlags,
        global_halt=st.booleans(), halted_pairs=st.frozensets(st.text(max_size=8), max_size=3),
        hard_halt=st.booleans(), hard_halted_pairs=st.frozensets(st.text(max_size=8), max_size=3),
        flatten_all=st.booleans(), flatten_pairs=st.frozensets(st.text(max_size=8), max_size=3),
        leverage_scale=st.floats(0, 1), seq=st.integers(0, 2**63 - 1),
    ),
    st.text(max_size=8),
)  # fmt: skip
def test_flags_round_trip_and_the_control_follows_precedence(flags: OpsFlags, pair: str) -> None:
    assert parse_flags(flags_json(flags), "x") == flags
    control = flags.control(pair)
    if flags.hard_halt or pair in flags.hard_halted_pairs:
        assert control == Control.HARD_HALT
    elif flags.flatten_all or pair in flags.flatten_pairs:
        assert control == Control.FLATTEN
    elif flags.global_halt or pair in flags.halted_pairs:
        assert control == Control.SOFT_HALT
    else:
        assert control == Control.NONE


NEW_FIELDS = {
    "hard_halt as text": (b'{"hard_halt": "yes"}', "hard_halt"),
    "hard pairs not a list": (b'{"hard_halted_pairs": "XAU_XAG"}', "hard_halted_pairs"),
    "flatten_all as 1": (b'{"flatten_all": 1}', "flatten_all"),
    "negative seq": (b'{"seq": -1}', "seq"),
    "seq as float": (b'{"seq": 1.0}', "seq"),
    "seq as bool": (b'{"seq": true}', "seq"),
    "seq too big": (b'{"seq": 9223372036854775808}', "seq"),
    "unknown key": (b'{"hard_halt": true, "halt_level": "hard"}', "halt_level"),
}


@pytest.mark.parametrize(("raw", "field"), NEW_FIELDS.values(), ids=NEW_FIELDS.keys())
def test_the_new_fields_are_strict(raw: bytes, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^x: ops flag '?{field}") as info:
        parse_flags(raw, "x")
    assert len(str(info.value)) < 300


@given(st.binary(max_size=300))
def test_any_bytes_are_flags_or_a_value_error(raw: bytes) -> None:
    try:
        parse_flags(raw, "x")
    except ValueError:
        pass


# Found by review: every flag defaulted to off, so a document that left one out lifted it.
PARTIAL = {
    "empty": b"{}",
    "one pair halted": b'{"halted_pairs": ["EUR_GBP"]}',
    "all but the halt": flags_json(OpsFlags()).replace('"global_halt": false, ', ""),
}


@pytest.mark.parametrize("raw", PARTIAL.values(), ids=PARTIAL.keys())
def test_a_partial_document_never_lifts_a_halt(tmp_path: Path, raw: bytes | str) -> None:
    path = tmp_path / "ops_flags.json"
    reader = FlagReader(None, "k", path)
    write_flags(None, "k", path, OpsFlags(global_halt=True, seq=3))
    assert reader.read().global_halt
    path.write_text(raw if isinstance(raw, str) else raw.decode())
    assert reader.read() == OpsFlags(global_halt=True, seq=3) and reader.errors == 1
    with pytest.raises(ValueError, match="must state every flag"):
        parse_flags(raw, "x")
