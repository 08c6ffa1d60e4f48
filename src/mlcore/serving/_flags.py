"""Runtime ops flags (spec 002 運用 Runbook・Ops API): ``global_halt``, ``halted_pairs``,
``flatten_pairs`` and ``leverage_scale``, read from Redis ``core:ops:flags`` (a JSON document) or,
without Redis, from ``ops_flags.json``. A worker reads them before every batch of bars, so every
bar is decided under the flags in force when it is processed."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import redis
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlcore.data import write_atomic

log = logging.getLogger("mlcore.serving")


class OpsFlags(BaseModel):
    """The flags in force; an absent document means none (trading as usual)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    global_halt: bool = False
    halted_pairs: frozenset[str] = frozenset()
    flatten_pairs: frozenset[str] = frozenset()
    leverage_scale: Annotated[float, Field(ge=0, le=1)] = 1.0


NO_FLAGS = OpsFlags()


def parse_flags(raw: bytes | str | None, where: str) -> OpsFlags:
    """Flags from their JSON; ``ValueError`` naming ``where`` and the field at fault."""
    if raw is None:
        return NO_FLAGS
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{where}: ops flags are not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{where}: ops flags must be a JSON object, got {type(doc).__name__}")
    for key in ("halted_pairs", "flatten_pairs"):
        if isinstance(doc.get(key), list):
            doc[key] = frozenset(doc[key])
    if isinstance(doc.get("leverage_scale"), int) and not isinstance(doc["leverage_scale"], bool):
        doc["leverage_scale"] = float(doc["leverage_scale"])
    try:
        return OpsFlags.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top)"
        raise ValueError(f"{where}: ops flag {field}: {first['msg']}") from None


def flags_json(flags: OpsFlags) -> str:
    """The JSON document of ``flags`` (lists sorted)."""
    return json.dumps({
        "global_halt": flags.global_halt, "halted_pairs": sorted(flags.halted_pairs),
        "flatten_pairs": sorted(flags.flatten_pairs), "leverage_scale": flags.leverage_scale,
    })  # fmt: skip


class FlagReader:
    """Reads the flags; a malformed document keeps the last good flags and is logged once per
    change (a typo must not lift a halt)."""

    def __init__(self, client: redis.Redis | None, key: str, path: Path) -> None:
        self.client, self.key, self.path = client, key, path
        self.flags = NO_FLAGS
        self._bad: bytes | None = None
        self.errors = 0

    def _raw(self) -> tuple[bytes | None, str]:
        if self.client is not None:
            value = self.client.get(self.key)
            return (value if isinstance(value, bytes) or value is None else str(value).encode(),
                    f"redis {self.key}")  # fmt: skip
        try:
            return self.path.read_bytes(), str(self.path)
        except FileNotFoundError:
            return None, str(self.path)

    def read(self) -> OpsFlags:
        """The flags in force now."""
        try:
            raw, where = self._raw()
        except redis.RedisError as exc:
            self.errors += 1
            log.warning("ops flags unreadable, keeping the last ones: %s", exc)
            return self.flags
        try:
            self.flags = parse_flags(raw, where)
            self._bad = None
        except ValueError as exc:
            self.errors += 1
            if raw != self._bad:
                log.error("ops flags refused, keeping the last good ones: %s", exc)
                self._bad = raw
        return self.flags


def write_flags(client: redis.Redis | None, key: str, path: Path, flags: OpsFlags) -> None:
    """Set the flags (Redis key, or the file written atomically)."""
    if client is not None:
        client.set(key, flags_json(flags))
    else:
        write_atomic(path, flags_json(flags).encode())
