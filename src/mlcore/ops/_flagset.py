"""What halt, flatten and resume do to the ops flags document (pure functions of the flags and
the universe's pairs; the API applies them with ``update_flags``, which bumps ``seq``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from enum import StrEnum

from mlcore.config import AppConfig
from mlcore.errors import FatalError, RetryableError
from mlcore.registry import ActionResult, Registry
from mlcore.serving import OpsFlags, flag_store, flags_from_doc, flags_json, update_flags


class HaltLevel(StrEnum):
    """Soft: no new entries, exits go on. Hard: no signals at all (heartbeats only)."""

    SOFT = "soft"
    HARD = "hard"


def audited(registry: Registry) -> Callable[[], OpsFlags]:
    """For ``update_flags(absent=...)``: the last flags the audit trail recorded as in force
    (a lost document is rebuilt from them, never from no flags)."""
    return lambda: flags_from_doc(
        registry.state_at(datetime.now(UTC)).flags, "the audit trail's last flags"
    )


def halted(flags: OpsFlags, universe: Iterable[str]) -> frozenset[str]:
    """Every pair some halt or flatten latch stops now."""
    out = flags.halted_pairs | flags.hard_halted_pairs | flags.flatten_pairs
    if flags.global_halt or flags.hard_halt or flags.flatten_all:
        out |= frozenset(universe)
    return frozenset(out)


def halt(flags: OpsFlags, level: HaltLevel, pairs: frozenset[str] | None) -> OpsFlags:
    """Halt ``pairs`` (None: the whole book) at ``level``."""
    if level is HaltLevel.HARD:
        if pairs is None:
            return flags.model_copy(update={"hard_halt": True})
        return flags.model_copy(update={"hard_halted_pairs": flags.hard_halted_pairs | pairs})
    if pairs is None:
        return flags.model_copy(update={"global_halt": True})
    return flags.model_copy(update={"halted_pairs": flags.halted_pairs | pairs})


def flatten(flags: OpsFlags, pairs: frozenset[str] | None) -> OpsFlags:
    """Latch a flatten of ``pairs`` (None: the whole book)."""
    if pairs is None:
        return flags.model_copy(update={"flatten_all": True})
    return flags.model_copy(update={"flatten_pairs": flags.flatten_pairs | pairs})


def release(flags: OpsFlags, pairs: frozenset[str], universe: Iterable[str]) -> OpsFlags:
    """Lift every halt and flatten latch from ``pairs``; a book-wide halt or latch becomes one
    per pair on the pairs still stopped."""
    every = frozenset(universe)
    soft = flags.halted_pairs | (every if flags.global_halt else frozenset())
    hard = flags.hard_halted_pairs | (every if flags.hard_halt else frozenset())
    flat = flags.flatten_pairs | (every if flags.flatten_all else frozenset())
    return flags.model_copy(update={
        "global_halt": False, "halted_pairs": soft - pairs,
        "hard_halt": False, "hard_halted_pairs": hard - pairs,
        "flatten_all": False, "flatten_pairs": flat - pairs,
    })  # fmt: skip


def halt_book(
    cfg: AppConfig, registry: Registry, *, actor: str, reason: str,
    level: HaltLevel = HaltLevel.SOFT,
) -> tuple[OpsFlags, OpsFlags]:  # fmt: skip
    """Halt the whole book at ``level`` from inside the system (what ``POST /ops/halt`` does for
    a person), audited as ``ops.halt`` with the flags before and after; a store that cannot be
    written is recorded as failed and raised (``FatalError`` OPS_FLAGS_UNAVAILABLE)."""
    rid = f"{actor}:halt:{datetime.now(UTC).isoformat()}"
    try:
        before, after = update_flags(flag_store(cfg), lambda f: halt(f, level, None),
                                     absent=audited(registry))  # fmt: skip
    except (RetryableError, ValueError) as exc:
        registry.record_action(
            "ops.halt", actor=actor, role="system", reason=reason, request_id=rid, before=None,
            after=None, result=ActionResult.FAILED, details={"error": str(exc)[:300]},
        )  # fmt: skip
        raise FatalError("OPS_FLAGS_UNAVAILABLE", f"the book could not be halted: {exc}") from None
    registry.record_action("ops.halt", actor=actor, role="system", reason=reason, request_id=rid,
                           before=json.loads(flags_json(before)),
                           after=json.loads(flags_json(after)), result=ActionResult.OK,
                           details={"level": level.value, "pairs": None})  # fmt: skip
    return before, after
