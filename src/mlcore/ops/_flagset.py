"""What halt, flatten and resume do to the ops flags document (pure functions of the flags and
the universe's pairs; the API applies them with ``update_flags``)."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from mlcore.serving import OpsFlags


class HaltLevel(StrEnum):
    """Soft: no new entries, exits go on. Hard: no signals at all (heartbeats only)."""

    SOFT = "soft"
    HARD = "hard"


def _get(flags: OpsFlags, name: str, default: Any) -> Any:
    return getattr(flags, name, default)


def _set(flags: OpsFlags, **changes: Any) -> OpsFlags:
    """``flags`` with ``changes`` (validated again)."""
    known = {k: v for k, v in changes.items() if k in type(flags).model_fields}
    if len(known) != len(changes):
        missing = sorted(set(changes) - set(known))
        raise ValueError(f"the ops flags of this build have no {missing}")
    data = flags.model_dump() | known
    return type(flags).model_validate(data)


def halted(flags: OpsFlags, universe: Iterable[str]) -> frozenset[str]:
    """Every pair some halt or flatten latch stops now."""
    pairs = frozenset(universe)
    out = set(flags.halted_pairs) | set(flags.flatten_pairs)
    out |= set(_get(flags, "hard_halted_pairs", frozenset()))
    if flags.global_halt or _get(flags, "hard_halt", False) or _get(flags, "flatten_all", False):
        out |= pairs
    return frozenset(out)


def halt(flags: OpsFlags, level: HaltLevel, pairs: frozenset[str] | None) -> OpsFlags:
    """Halt ``pairs`` (None: the whole book) at ``level``."""
    if level is HaltLevel.HARD:
        if pairs is None:
            return _set(flags, hard_halt=True)
        return _set(
            flags, hard_halted_pairs=frozenset(_get(flags, "hard_halted_pairs", ())) | pairs
        )
    if pairs is None:
        return _set(flags, global_halt=True)
    return _set(flags, halted_pairs=flags.halted_pairs | pairs)


def flatten(flags: OpsFlags, pairs: frozenset[str] | None, universe: Iterable[str]) -> OpsFlags:
    """Latch a flatten of ``pairs`` (None: the whole book)."""
    if pairs is None:
        if "flatten_all" in type(flags).model_fields:
            return _set(flags, flatten_all=True)
        pairs = frozenset(universe)
    return _set(flags, flatten_pairs=flags.flatten_pairs | pairs)


def release(flags: OpsFlags, pairs: frozenset[str], universe: Iterable[str]) -> OpsFlags:
    """Lift every halt and flatten latch from ``pairs``; a book-wide halt or latch becomes one
    per pair on the pairs still stopped."""
    every = frozenset(universe)
    soft = set(flags.halted_pairs) | (every if flags.global_halt else set())
    hard = set(_get(flags, "hard_halted_pairs", ())) | (
        every if _get(flags, "hard_halt", False) else set()
    )
    flat = set(flags.flatten_pairs) | (every if _get(flags, "flatten_all", False) else set())
    changes: dict[str, Any] = {
        "global_halt": False, "halted_pairs": frozenset(soft - pairs),
        "flatten_pairs": frozenset(flat - pairs),
    }  # fmt: skip
    model = type(flags).model_fields
    if "hard_halt" in model:
        changes |= {"hard_halt": False, "hard_halted_pairs": frozenset(hard - pairs)}
    if "flatten_all" in model:
        changes["flatten_all"] = False
    return _set(flags, **changes)
