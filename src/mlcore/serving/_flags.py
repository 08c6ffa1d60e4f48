"""Runtime ops flags (spec 002 運用 Runbook・Ops API), read from Redis ``core:ops:flags`` (a JSON
document) or, without Redis, from ``ops_flags.json``: soft halt (``global_halt``,
``halted_pairs``: no new entries, exits go on), hard halt (``hard_halt``, ``hard_halted_pairs``:
no signals at all), the flatten latch (``flatten_all``, ``flatten_pairs``: reduce-only, the exit
signalled once, then halted until cleared), ``leverage_scale`` and ``seq`` (bumped by every
:func:`update_flags`; workers report the seq they apply). A worker reads them before every batch
of bars, so every bar is decided under the flags in force when it is processed.

They fail closed (spec 000 §7): a malformed document keeps the flags in force; an absent one
(Redis restarted without persistence, a ``DEL``) never lifts them: the worker keeps the flags in
force in its outbox, across restarts, and writes them back; a store that cannot be read for
longer than ``flags_max_age_seconds`` stops new entries until it can."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import redis
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlcore._flock import wait_for_flock
from mlcore.config import AppConfig
from mlcore.data import write_atomic
from mlcore.errors import FatalError, RetryableError
from mlcore.serving._bars import unique_keys

log = logging.getLogger("mlcore.serving")


class FlagsInvalid(FatalError, ValueError):
    """The flags document in the store is refused (``SERVING_FLAGS_INVALID``); it is not
    overwritten by a change, as nobody knows what it meant."""

    str_with_code = False


MAX_SEQ = 2**63 - 1
_SETS = ("halted_pairs", "hard_halted_pairs", "flatten_pairs")


class Control(StrEnum):
    """The control a pair's bar is decided under (said in every signal's core_policy)."""

    NONE = "none"
    SOFT_HALT = "soft_halt"  # no new entries; exits go on
    FLATTEN = "flatten"  # reduce-only: the exit once, no entry
    HARD_HALT = "hard_halt"  # no signal at all


class OpsFlags(BaseModel):
    """The flags in force; with no document ever written, none (trading as usual)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    global_halt: bool = False
    halted_pairs: frozenset[str] = frozenset()
    hard_halt: bool = False
    hard_halted_pairs: frozenset[str] = frozenset()
    flatten_all: bool = False
    flatten_pairs: frozenset[str] = frozenset()
    leverage_scale: Annotated[float, Field(ge=0, le=1)] = 1.0
    seq: Annotated[int, Field(ge=0, le=MAX_SEQ)] = 0

    def control(self, pair_id: str) -> Control:
        """The control that applies to ``pair_id`` (hard halt > flatten > soft halt)."""
        if self.hard_halt or pair_id in self.hard_halted_pairs:
            return Control.HARD_HALT
        if self.flatten_all or pair_id in self.flatten_pairs:
            return Control.FLATTEN
        if self.global_halt or pair_id in self.halted_pairs:
            return Control.SOFT_HALT
        return Control.NONE


NO_FLAGS = OpsFlags()


MAX_FLAGS_BYTES = 65_536


def parse_flags(raw: bytes | str | None, where: str, *, complete: bool = True) -> OpsFlags:
    """Flags from their JSON; ``ValueError`` naming ``where`` and the field at fault (and
    nothing else, whatever the document holds). ``complete``: every flag must be stated (the
    store's document, which :func:`flags_json` always writes whole): a flag left out is refused,
    never read as off — ``{}`` or ``{"halted_pairs": [...]}`` would otherwise lift a
    ``global_halt``. Documents kept elsewhere (the audit trail, the outbox) may be partial."""
    if raw is None:
        return NO_FLAGS
    if len(raw) > MAX_FLAGS_BYTES:
        raise ValueError(f"{where}: ops flags of {len(raw)} bytes, over {MAX_FLAGS_BYTES}")
    try:
        doc = json.loads(raw, object_pairs_hook=unique_keys)
    except RecursionError:
        raise ValueError(f"{where}: ops flags are not JSON (nested too deeply)") from None
    except ValueError as exc:
        raise ValueError(f"{where}: ops flags are not JSON ({str(exc)[:120]!r})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{where}: ops flags must be a JSON object, got {type(doc).__name__}")
    try:
        flags = OpsFlags.model_validate(_coerced(doc, where))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top)"
        raise ValueError(f"{where}: ops flag {field[:60]!r}: {first['msg']}") from None
    missing = [k for k in OpsFlags.model_fields if k not in doc] if complete else []
    if missing:
        raise ValueError(f"{where}: ops flags must state every flag, {', '.join(missing)} "
                         "missing (a flag left out is not read as off)")  # fmt: skip
    return flags


def _coerced(doc: dict[str, Any], where: str) -> dict[str, Any]:
    """JSON's lists as sets and integers as floats, where the flags take them."""
    for key in _SETS:
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
        "hard_halt": flags.hard_halt, "hard_halted_pairs": sorted(flags.hard_halted_pairs),
        "flatten_all": flags.flatten_all, "flatten_pairs": sorted(flags.flatten_pairs),
        "leverage_scale": flags.leverage_scale, "seq": flags.seq,
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


# -- changing the flags -----------------------------------------------------------------------
UPDATE_ATTEMPTS = 100  # Redis WATCH conflicts tolerated before giving up
LOCK_WAIT_S = 10.0  # how long a file writer waits for the lock beside ops_flags.json


@dataclass(frozen=True)
class FlagStore:
    """Where the flags live: Redis ``key`` when ``client`` is set, else the file ``path``."""

    client: redis.Redis | None
    key: str
    path: Path

    @property
    def where(self) -> str:
        return f"redis {self.key}" if self.client is not None else str(self.path)


def flag_store(cfg: AppConfig) -> FlagStore:
    """The store the workers of ``cfg`` read (REDIS_URL set: Redis, else the serving folder's
    ``ops_flags.json``)."""
    from mlcore.serving._setup import serving_dir

    url = cfg.env.redis_url
    client = redis.Redis.from_url(url, socket_timeout=5) if url else None
    return FlagStore(client, cfg.serving.redis.ops_flags_key, serving_dir(cfg) / "ops_flags.json")


def _unreachable(store: FlagStore, exc: Exception) -> RetryableError:
    return RetryableError(
        "SERVING_FLAGS_UNREACHABLE", f"ops flags {store.where} cannot be read or written: {exc}"
    )


def read_flags(store: FlagStore) -> OpsFlags:
    """The document now (none written: no flags); ``FlagsInvalid`` (a ``ValueError``) when it
    is refused, ``RetryableError`` when the store does not answer."""
    try:
        if store.client is not None:
            return _parsed(store.client.get(store.key), store)
        try:
            return _parsed(store.path.read_bytes(), store)
        except FileNotFoundError:
            return NO_FLAGS
    except (redis.RedisError, OSError) as exc:
        raise _unreachable(store, exc) from None


def _parsed(raw: Any, store: FlagStore) -> OpsFlags:
    try:
        return parse_flags(raw, store.where)
    except ValueError as exc:
        raise FlagsInvalid("SERVING_FLAGS_INVALID", str(exc)) from None


def flags_from_doc(doc: dict[str, Any] | None, where: str) -> OpsFlags:
    """Flags from a document kept elsewhere (the audit trail's ``after``); none: no flags."""
    return NO_FLAGS if doc is None else parse_flags(json.dumps(doc), where, complete=False)


def _next(before: OpsFlags, change: Callable[[OpsFlags], OpsFlags]) -> OpsFlags:
    changed = change(before)
    doc = changed.model_dump() | {"seq": before.seq + 1}
    return OpsFlags.model_validate(doc, strict=False)  # validated again: leverage in [0, 1]


def update_flags(
    store: FlagStore, change: Callable[[OpsFlags], OpsFlags], *,
    absent: Callable[[], OpsFlags] | None = None,
) -> tuple[OpsFlags, OpsFlags]:  # fmt: skip
    """Apply ``change`` to the flags atomically (Redis: WATCH/MULTI, retried on a conflict;
    file: ``flock`` on ``ops_flags.json.lock`` and an atomic rename), bump ``seq``; return
    (before, after). A refused document is not overwritten (``FlagsInvalid``): a person must
    look at it; a store that does not answer raises ``RetryableError``.

    ``absent``: the flags to start from when there is no document (Redis restarted without
    persistence, a ``DEL``), e.g. the last ones the audit trail recorded: a change must not
    lift, by starting from no flags, a halt that only the lost document held."""
    if store.client is None:
        return _update_file(store, change, absent)
    try:
        for _ in range(UPDATE_ATTEMPTS):
            with store.client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(store.key)  # type: ignore[no-untyped-call]
                    raw = pipe.get(store.key)
                    if raw is None and absent is not None:
                        before = absent()
                    else:
                        before = _parsed(raw, store)
                    after = _next(before, change)
                    pipe.multi()
                    pipe.set(store.key, flags_json(after))
                    pipe.execute()
                    return before, after
                except redis.WatchError:
                    time.sleep(random.uniform(0, 0.005))  # noqa: S311 - jitter, not secrets
    except redis.RedisError as exc:
        raise _unreachable(store, exc) from None
    raise RetryableError(
        "SERVING_FLAGS_CONTENDED",
        f"ops flags {store.where}: changed by others {UPDATE_ATTEMPTS} times in a row; try again",
    )


def _update_file(
    store: FlagStore, change: Callable[[OpsFlags], OpsFlags],
    absent: Callable[[], OpsFlags] | None,
) -> tuple[OpsFlags, OpsFlags]:  # fmt: skip
    lock = store.path.with_name(store.path.name + ".lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise _unreachable(store, exc) from None
    try:
        wait_for_flock(fd, LOCK_WAIT_S, lambda: RetryableError(
            "SERVING_FLAGS_CONTENDED", f"ops flags {lock} held by another writer for "
            f"{LOCK_WAIT_S:g} s; try again"))  # fmt: skip
        if absent is not None and not store.path.exists():
            before = absent()
        else:
            before = read_flags(store)
        after = _next(before, change)
        try:
            write_atomic(store.path, flags_json(after).encode())
        except OSError as exc:
            raise _unreachable(store, exc) from None
        return before, after
    finally:
        os.close(fd)  # releases the lock
