"""The audit chain's pure parts: the canonical serialisation and hash, the chain check (any
single change in any column of any row is found and named), the state in force at a time,
and the TIMESTAMP parser of ``mlcore audit at``."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlcore.cli._audit import parse_at
from mlcore.errors import ConfigError
from mlcore.registry import ActionRecord, ActionResult, AuditEvent, StatusChange, state_at
from mlcore.registry._chain import GENESIS, Break, canonical, check_chain, row_hash, stored

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NAME = "audit.config_changes"


def _chain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` linked and hashed as ``append`` does."""
    prev = GENESIS
    out = []
    for i, row in enumerate(rows, start=1):
        linked = {k: stored(k, v) for k, v in row.items()} | {"change_id": i, "prev_hash": prev}
        linked["row_hash"] = prev = row_hash(linked)
        out.append(linked)
    return out


def test_canonical_is_sorted_utc_microseconds_and_repr_floats() -> None:
    naive = {
        "b": 0.1,
        "a": datetime(2026, 1, 1, 9, tzinfo=UTC).replace(tzinfo=None),
        "row_hash": "x",
    }
    tokyo = {"a": datetime(2026, 1, 1, 18, tzinfo=timezone(timedelta(hours=9))), "b": 0.1}
    assert (
        canonical(naive) == canonical(tokyo) == b'{"a":"2026-01-01T09:00:00.000000+00:00","b":0.1}'
    )
    assert canonical({"x": 1e16, "y": [True, None]}) == b'{"x":1e+16,"y":[true,null]}'
    with pytest.raises(ValueError, match="Out of range float values"):
        canonical({"x": float("nan")})


def test_stored_round_trips_documents_and_refuses_what_cannot_be_stored() -> None:
    assert stored("d", {"t": (0.7, 0.3), 1: "a"}) == {"t": [0.7, 0.3], "1": "a"}
    pairs = {"halted_pairs": frozenset({"B_C", "A_B"}), "n": np.int64(3), "x": np.float64(0.5)}
    assert stored("d", pairs) == {"halted_pairs": ["A_B", "B_C"], "n": 3, "x": 0.5}
    for bad in ({"x": float("inf")}, {"s": {1, "a"}}, "nul\x00", {"k": "a\x00"}, "\udcff",
                {"o": object()}, {"a": np.array([1, 2])}):  # fmt: skip
        with pytest.raises(ValueError, match=r"^d: cannot be recorded"):
            stored("d", bad)


_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12)
_FLOAT = st.floats(allow_nan=False, allow_infinity=False, max_value=1e300, min_value=-1e300)
_ROW = st.fixed_dictionaries({
    # Hypothesis takes naive bounds for aware datetimes.
    "changed_at": st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)),  # noqa: DTZ001
    "actor": _TEXT, "event": _TEXT, "notes": _TEXT,
    "details": st.none() | st.dictionaries(_TEXT, _FLOAT | _TEXT, max_size=3),
})  # fmt: skip


def _changed(value: Any) -> Any:
    """``value`` with one small change: a character, a microsecond, a float's last bit."""
    if isinstance(value, str):
        return value[:-1] + chr((ord(value[-1]) % 0x7F) + 1 if ord(value[-1]) < 0x7F else 0x41)
    if isinstance(value, datetime):
        return value + timedelta(microseconds=1)
    if isinstance(value, float):
        return math.nextafter(value, math.inf)
    if isinstance(value, int):
        return value + 1
    if isinstance(value, dict) and value:
        key = next(iter(value))
        return {**value, key: _changed(value[key])}
    return {"was": value}


@given(rows=st.lists(_ROW, min_size=1, max_size=5), data=st.data())
def test_any_change_in_any_column_of_any_row_is_found(
    rows: list[dict[str, Any]], data: st.DataObject
) -> None:
    chain = _chain(rows)
    assert check_chain(NAME, "change_id", chain) == (len(rows), [])
    at = data.draw(st.integers(0, len(chain) - 1))
    column = data.draw(st.sampled_from(sorted(set(chain[at]) - {"row_hash"})))
    edited = [dict(r) for r in chain]
    edited[at][column] = _changed(edited[at][column])
    assert edited[at][column] != chain[at][column]
    _, breaks = check_chain(NAME, "change_id", edited)
    assert breaks and breaks[0].row_id == edited[at]["change_id"]


def test_a_removed_or_swapped_row_is_named() -> None:
    chain = _chain([{"actor": f"a{i}", "changed_at": T0} for i in range(4)])
    assert check_chain(NAME, "change_id", chain[:1] + chain[2:])[1] == [
        Break(NAME, 3, "prev_hash does not match row 1's hash (a row was removed or reordered)")
    ]
    assert check_chain(NAME, "change_id", chain[1:])[1] == [
        Break(NAME, 2, "prev_hash is not the chain's first value (rows before it were removed)")
    ]
    swapped = [chain[0], chain[2], chain[1], chain[3]]
    assert [b.row_id for b in check_chain(NAME, "change_id", swapped)[1]] == [3, 2, 4]
    no_hash = [dict(chain[0], row_hash=None)]
    assert check_chain(NAME, "change_id", no_hash)[1] == [
        Break(NAME, 1, "it has no hash (written around the chain)")
    ]


def _change(
    i: int, minutes: int, event: str, version: str | None = None, old: str | None = None,
    new: str | None = None, details: dict[str, Any] | None = None, actor: str = "ops",
) -> StatusChange:  # fmt: skip
    return StatusChange(i, T0 + timedelta(minutes=minutes), actor, event, version, old, new, "n",
                        details)  # fmt: skip


def _action(
    i: int, minutes: int, after: Any, result: ActionResult = ActionResult.OK
) -> ActionRecord:
    return ActionRecord(i, T0 + timedelta(minutes=minutes), f"u{i}", "editor", "ops.halt", "r",
                        "why", None, after, result, None, GENESIS, GENESIS)  # fmt: skip


E = AuditEvent
ROLLBACK = {"from": "v2", "to": "v1"}
CHANGES = [
    _change(1, 0, E.MODEL_REGISTERED, "v1", None, "draft", {"theta": [0.7, 0.3]}),
    _change(2, 10, E.MODEL_STATUS, "v1", "approved", "deployed", actor="alice"),
    _change(3, 20, E.CONFIG_APPLIED, details={"git_sha": "s1", "rendered_sha256": "r1"}),
    _change(4, 30, E.MODEL_REGISTERED, "v2", None, "draft", {"theta": [0.6, 0.4]}),
    _change(5, 40, E.MODEL_STATUS, "v1", "deployed", "approved"),
    _change(6, 40, E.MODEL_STATUS, "v2", "approved", "deployed", actor="bob"),
    _change(7, 50, E.CONFIG_ROLLBACK, "v2", "deployed", "rolled_back", ROLLBACK),
    _change(8, 50, E.CONFIG_ROLLBACK, "v1", "approved", "deployed", ROLLBACK, "carol"),
    _change(9, 60, E.THETA_ROLLBACK, None, details={"theta": [0.75, 0.25]}, actor="dave"),
    # As mlcore.ops records a θ rollback: from and to.
    _change(11, 80, E.THETA_ROLLBACK, "v1", details={"from": [0.75, 0.25], "to": [0.7, 0.3],
                                                     "named": False}, actor="fay"),
    _change(10, 70, E.CONFIG_ROLLBACK, details={"git_sha": "s0", "rendered_sha256": "r0"},
            actor="erin"),
]  # fmt: skip
ACTIONS = [
    _action(1, 5, {"global_halt": True, "seq": 1}),
    _action(2, 15, {"global_halt": False, "seq": 2}, ActionResult.DENIED),
    _action(3, 25, {"not": "flags"}),
    _action(4, 35, {"global_halt": False, "leverage_scale": 0.5, "seq": 3}),
]


@pytest.mark.parametrize(
    ("minutes", "version", "by", "theta", "config", "seq"),
    [
        (-1, None, None, None, None, None),
        (0, None, None, None, None, None),
        (10, "v1", "alice", (0.7, 0.3), None, 1),
        (29, "v1", "alice", (0.7, 0.3), "s1", 1),
        (45, "v2", "bob", (0.6, 0.4), "s1", 3),
        (55, "v1", "carol", (0.7, 0.3), "s1", 3),
        (65, "v1", "carol", (0.75, 0.25), "s1", 3),
        (75, "v1", "carol", (0.75, 0.25), "s0", 3),
        (99, "v1", "carol", (0.7, 0.3), "s0", 3),
    ],
)
def test_state_at_replays_the_rows_up_to_the_time(
    minutes: int, version: str | None, by: str | None, theta: tuple[float, float] | None,
    config: str | None, seq: int | None,
) -> None:  # fmt: skip
    when = T0 + timedelta(minutes=minutes)
    state = state_at(when, reversed(CHANGES), reversed(ACTIONS))
    assert state.model_version == version and state.theta == theta
    assert (state.model_changed.by if state.model_changed else None) == by
    assert (state.config.git_sha if state.config else None) == config
    assert (state.flags["seq"] if state.flags else None) == seq
    if state.flags_changed:
        assert state.flags_changed.row.startswith("audit.analytics_actions row ")
    assert state.as_json()["at"] == when.isoformat()


def test_a_deployed_version_taken_out_leaves_none_in_force() -> None:
    rows = [*CHANGES[:2], _change(3, 20, E.MODEL_STATUS, "v1", "deployed", "rolled_back")]
    assert state_at(T0 + timedelta(hours=1), rows, []).model_version is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-31", datetime(2026, 1, 31, tzinfo=UTC)),
        ("2026-01-31T09:30:00Z", datetime(2026, 1, 31, 9, 30, tzinfo=UTC)),
        ("2026-01-31T18:30+09:00", datetime(2026, 1, 31, 9, 30, tzinfo=UTC)),
    ],
)
def test_parse_at_reads_iso_8601_as_utc(text: str, expected: datetime) -> None:
    assert parse_at(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2026-13-01",
        "0001-01-01T00:00+14:00",
        "2026-01-01T25:00",
        "2026-01-01 09:00 UTC",
    ],
)
def test_parse_at_refuses_what_is_not_a_time(text: str) -> None:
    with pytest.raises(ConfigError, match="is not an ISO 8601 time") as caught:
        parse_at(text)
    assert caught.value.code == "AUDIT_REQUEST_TIMESTAMP_INVALID"


def test_the_flags_keys_are_those_of_the_flags_document() -> None:
    from mlcore.registry._state_at import FLAG_KEYS
    from mlcore.serving._flags import OpsFlags

    assert set(OpsFlags.model_fields) == FLAG_KEYS
