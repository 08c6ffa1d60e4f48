"""Runtime ops flags (spec 002 運用 Runbook・Ops API): ``global_halt``, ``halted_pairs``,
``flatten_pairs`` and ``leverage_scale``, read from Redis ``core:ops:flags`` (a JSON document) or,
without Redis, from ``ops_flags.json``. A worker reads them before every batch of bars, so every
bar is decided under the flags in force when it is processed.

They fail closed (spec 000 §7): a malformed document keeps the flags in force; an absent one
(Redis restarted without persistence, a ``DEL``) never lifts them: the worker keeps the flags in
force in its outbox, across restarts, and writes them back; a store that cannot be read for
longer than ``flags_max_age_seconds`` stops new entries until it can."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Annotated, Any

import redis
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlcore.data import write_atomic

log = logging.getLogger("mlcore.serving")


class OpsFlags(BaseModel):
    """The flags in force; with no document ever written, none (trading as usual)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    global_halt: bool = False
    halted_pairs: frozenset[str] = frozenset()
    flatten_pairs: frozenset[str] = frozenset()
    leverage_scale: Annotated[float, Field(ge=0, le=1)] = 1.0


NO_FLAGS = OpsFlags()


MAX_FLAGS_BYTES = 65_536


def parse_flags(raw: bytes | str | None, where: str) -> OpsFlags:
    """Flags from their JSON; ``ValueError`` naming ``where`` and the field at fault (and
    nothing else, whatever the document holds)."""
    if raw is None:
        return NO_FLAGS
    if len(raw) > MAX_FLAGS_BYTES:
        raise ValueError(f"{where}: ops flags of {len(raw)} bytes, over {MAX_FLAGS_BYTES}")
    try:
        doc = json.loads(raw)
    except RecursionError:
        raise ValueError(f"{where}: ops flags are not JSON (nested too deeply)") from None
    except ValueError as exc:
        raise ValueError(f"{where}: ops flags are not JSON ({str(exc)[:120]!r})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{where}: ops flags must be a JSON object, got {type(doc).__name__}")
    try:
        return OpsFlags.model_validate(_coerced(doc, where))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top)"
        raise ValueError(f"{where}: ops flag {field[:60]!r}: {first['msg']}") from None


def _coerced(doc: dict[str, Any], where: str) -> dict[str, Any]:
    """JSON's lists as sets and integers as floats, where the flags take them."""
    for key in ("halted_pairs", "flatten_pairs"):
        value = doc.get(key)
        if isinstance(value, list):
            if not all(isinstance(v, str) for v in value):
                raise ValueError(f"{where}: ops flag {key}: every item must be a pair id (text)")
            doc[key] = frozenset(value)
    scale = doc.get("leverage_scale")
    if isinstance(scale, int) and not isinstance(scale, bool):
        doc["leverage_scale"] = float(scale) if abs(scale) <= 10 else math.inf
    return doc


def flags_json(flags: OpsFlags) -> str:
    """The JSON document of ``flags`` (lists sorted)."""
    return json.dumps({
        "global_halt": flags.global_halt, "halted_pairs": sorted(flags.halted_pairs),
        "flatten_pairs": sorted(flags.flatten_pairs), "leverage_scale": flags.leverage_scale,
    })  # fmt: skip


class FlagReader:
    """Reads the flags (see the module docstring); ``flags`` are those in force, ``stale`` is
    true while the store has not been read for longer than ``max_age_s``."""

    def __init__(
        self, client: redis.Redis | None, key: str, path: Path, *, max_age_s: float = math.inf,
        flags: OpsFlags = NO_FLAGS,
    ) -> None:  # fmt: skip
        self.client, self.key, self.path, self.max_age_s = client, key, path, max_age_s
        self.flags = flags
        self.stale = False
        self.errors = 0
        self._read_at = time.monotonic()  # the last successful read
        self._bad: bytes | None = None
        self._absent_said = False

    def _raw(self) -> tuple[bytes | None, str]:
        if self.client is not None:
            value = self.client.get(self.key)
            return (value if isinstance(value, bytes) or value is None else str(value).encode(),
                    f"redis {self.key}")  # fmt: skip
        try:
            return self.path.read_bytes(), str(self.path)
        except FileNotFoundError:
            return None, str(self.path)

    def _unreadable(self, exc: Exception) -> OpsFlags:
        self.errors += 1
        age = time.monotonic() - self._read_at
        if age > self.max_age_s and not self.stale:
            self.stale = True
            log.error("ops flags unreadable for %.0f s (flags_max_age_seconds %g): no new entries "
                      "until they are read again: %s", age, self.max_age_s, exc)  # fmt: skip
        elif self.errors == 1 or not self.stale:
            log.warning("ops flags unreadable, keeping the last ones: %s", exc)
        return self.flags

    def _write_back(self, where: str) -> None:
        """The document is absent: keep the flags in force and write them back."""
        if not self._absent_said:
            log.error("ops flags %s absent: keeping those in force (%s) and writing them back",
                      where, flags_json(self.flags))  # fmt: skip
            self._absent_said = True
        try:
            if self.client is not None:
                self.client.set(self.key, flags_json(self.flags), nx=True)
            else:
                write_atomic(self.path, flags_json(self.flags).encode())
        except (redis.RedisError, OSError) as exc:
            log.warning("ops flags not written back: %s", exc)

    def read(self) -> OpsFlags:
        """The flags in force now."""
        try:
            raw, where = self._raw()
        except (redis.RedisError, OSError) as exc:
            return self._unreadable(exc)
        self._read_at = time.monotonic()
        if self.stale:
            log.warning("ops flags readable again: new entries allowed by them")
            self.stale = False
        if raw is None:
            if self.flags != NO_FLAGS:
                self._write_back(where)
            return self.flags
        self._absent_said = False
        try:
            self.flags = parse_flags(raw, where)
            self._bad = None
        except ValueError as exc:
            self.errors += 1
            if raw != self._bad:
                log.error("ops flags refused, keeping the last good ones: %s", exc)
                self._bad = raw
        return self.flags

    def in_force(self) -> OpsFlags:
        """The flags to decide by: those in force, with a halt of new entries while stale."""
        return self.flags.model_copy(update={"global_halt": True}) if self.stale else self.flags


def write_flags(client: redis.Redis | None, key: str, path: Path, flags: OpsFlags) -> None:
    """Set the flags (Redis key, or the file written atomically)."""
    if client is not None:
        client.set(key, flags_json(flags))
    else:
        write_atomic(path, flags_json(flags).encode())
