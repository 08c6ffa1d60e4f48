"""Fills in: the drop folder (``result.json`` files from the executor) and the Redis stream
``core:fills`` (a consumer group; each message acknowledged only after its commit).

Kill-safety: a file moves to ``done/`` or ``quarantine/`` (an atomic rename) only after its
fill is committed, and a fill id lands once, so a run killed between the two re-reads the file
and adds nothing; a message not acknowledged is read again (this consumer's pending messages
first, then those another consumer left idle) and adds nothing either."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import Engine

from mlcore.config import AppConfig
from mlcore.feedback._fills import FillSource, Reason, Rejection
from mlcore.feedback._fills_store import Incoming, Landed, LandRules, land_fills
from mlcore.registry import Alerts

log = logging.getLogger("mlcore.feedback")
Clock = Callable[[], datetime]
_CLAIM_IDLE_MS = 60_000  # a message pending this long on another consumer is taken over


def utc_now() -> datetime:
    """The current UTC time."""
    return datetime.now(UTC)


@dataclass
class IngestCounts:
    """What one ingest run did."""

    new: int = 0
    duplicate: int = 0
    quarantined: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, landed: Landed, bad: Rejection | None) -> None:
        """Count one fill."""
        if landed == Landed.NEW:
            self.new += 1
        elif landed == Landed.DUPLICATE:
            self.duplicate += 1
        else:
            self.quarantined += 1
            key = str(bad.reason) if bad is not None else "unknown"
            self.reasons[key] = self.reasons.get(key, 0) + 1


def alert_quarantined(engine: Engine, where: str, reasons: dict[str, int]) -> None:
    """One alert (``audit.alerts``, warning) for the fills a run quarantined, by reason."""
    if reasons:
        why = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
        Alerts(engine).raise_alert(
            "FEEDBACK_FILL_QUARANTINED", f"{sum(reasons.values())} fills quarantined from {where}: "
            f"{why} (core.fills_quarantine; `mlcore fills show`)", channel="feedback",
            severity="warning", details={"reasons": reasons, "where": where},
        )  # fmt: skip


def land_rules(cfg: AppConfig) -> LandRules:
    """The checks of the configuration (fills policy, the universe's pairs)."""
    fills = cfg.analytics.fills
    return LandRules(
        max_bytes=fills.max_bytes,
        known_pairs=frozenset(p.pair_id for p in cfg.universe.pairs),
        max_clock_skew_seconds=fills.max_clock_skew_seconds,
    )


def fill_folders(cfg: AppConfig) -> tuple[Path, Path, Path]:
    """(drop, done, quarantine) folders, under the archive."""
    f, root = cfg.analytics.fills, cfg.paths.archive
    return root / f.drop_folder, root / f.done_folder, root / f.quarantine_folder


def _pending_files(drop: Path) -> list[Path]:
    # Hidden names and *.tmp are files an executor is still writing (then renames).
    return sorted(
        p for p in drop.rglob("*.json")
        if not p.name.startswith(".") and (p.is_symlink() or p.is_file())
    )  # fmt: skip


def _read(path: Path, max_bytes: int) -> tuple[bytes, Rejection | None]:
    """The file's first ``max_bytes + 1`` bytes, or why it cannot be read (FileNotFoundError
    when another ingest moved it meanwhile)."""
    if path.is_symlink():
        return os.fsencode(os.readlink(path)), Rejection(Reason.NOT_A_FILE, "a symbolic link")
    try:
        with path.open("rb") as fh:
            return fh.read(max_bytes + 1), None
    except FileNotFoundError:
        raise
    except OSError as exc:
        return b"", Rejection(Reason.UNREADABLE, f"cannot be read: {exc.strerror or exc}")


def _move(path: Path, drop: Path, target_root: Path, raw: bytes) -> Path:
    """Rename ``path`` into ``target_root`` (same relative folder; the content's hash in the
    name, so a later file of the same name never overwrites an earlier one)."""
    rel = path.relative_to(drop)
    digest = hashlib.sha256(raw).hexdigest()[:12]
    target = target_root / rel.parent / f"{rel.stem}.{digest}{rel.suffix}"
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, target)
    return target


def _batches(paths: list[Path], size: int) -> list[list[Path]]:
    return [paths[i : i + size] for i in range(0, len(paths), size)]


def ingest_folder(cfg: AppConfig, engine: Engine, clock: Clock = utc_now) -> IngestCounts:
    """Land every ``*.json`` in the drop folder once, then move it to done/ or quarantine/
    (``read_batch`` files per transaction, each moved after the commit)."""
    drop, done, quarantine = fill_folders(cfg)
    rules, counts = land_rules(cfg), IngestCounts()
    if not drop.is_dir():
        return counts
    for batch in _batches(_pending_files(drop), cfg.analytics.fills.read_batch):
        items: list[tuple[Path, Incoming]] = []
        for path in batch:
            try:
                raw, refused = _read(path, rules.max_bytes)
            except FileNotFoundError:  # taken by another ingest since the listing
                continue
            items.append((path, Incoming(raw, FillSource.FILE, str(path.relative_to(drop)),
                                         refused)))  # fmt: skip
        landed = land_fills(engine, [i for _, i in items], rules, clock())
        for (path, item), (outcome, bad) in zip(items, landed, strict=True):
            counts.add(outcome, bad)
            try:
                _move(path, drop, quarantine if outcome == Landed.QUARANTINED else done, item.raw)
            except FileNotFoundError:  # moved by another ingest: it landed once all the same
                pass
            if bad is not None:
                log.warning("FEEDBACK_FILL_QUARANTINED: %s: %s: %s", item.location, bad.reason,
                            bad.message)  # fmt: skip
    alert_quarantined(engine, f"the drop folder {drop}", counts.reasons)
    return counts


# Redis stream -------------------------------------------------------------------------------
def ensure_group(client: redis.Redis, stream: str, group: str) -> None:
    """The consumer group on the stream (both made when missing)."""
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _message_bytes(fields: dict[Any, Any]) -> tuple[bytes, Rejection | None]:
    raw = fields.get(b"fill")
    if isinstance(raw, bytes):
        return raw, None
    shown = json.dumps({k.decode("utf-8", "replace"): v.decode("utf-8", "replace")
                        for k, v in fields.items()})[:4096]  # fmt: skip
    return shown.encode(), Rejection(Reason.BAD_MESSAGE, "a message without a 'fill' field")


@dataclass(frozen=True)
class StreamReader:
    """One consumer of the fills stream's consumer group."""

    client: redis.Redis
    stream: str
    group: str
    consumer: str
    batch: int
    block_ms: int

    def _handle(
        self, engine: Engine, rules: LandRules, entries: list[Any], counts: IngestCounts,
        clock: Clock,
    ) -> None:  # fmt: skip
        """Land a read's messages in one transaction, then acknowledge them."""
        items, ids = [], []
        for msg_id, fields in entries:
            ids.append(msg_id)
            if fields is None:  # deleted from the stream while pending: nothing to land
                continue
            raw, bad_message = _message_bytes(fields)
            # an oversized message is kept only this far
            items.append(Incoming(raw[: rules.max_bytes + 1], FillSource.STREAM,
                                  f"{self.stream}#{msg_id.decode()}", bad_message))  # fmt: skip
        before = dict(counts.reasons)
        for item, (landed, bad) in zip(items, land_fills(engine, items, rules, clock()),
                                       strict=True):  # fmt: skip
            counts.add(landed, bad)
            if bad is not None:
                log.warning("FEEDBACK_FILL_QUARANTINED: %s: %s: %s", item.location, bad.reason,
                            bad.message)  # fmt: skip
        if ids:
            self.client.xack(self.stream, self.group, *ids)  # only after the commit
        new = {k: v - before.get(k, 0) for k, v in counts.reasons.items() if v > before.get(k, 0)}
        alert_quarantined(engine, f"the stream {self.stream}", new)

    def _read(self, start: str, block: int | None) -> list[Any]:
        got: Any = self.client.xreadgroup(self.group, self.consumer, {self.stream: start},
                                          count=self.batch, block=block)  # fmt: skip
        return list(got[0][1]) if got else []

    def run(
        self, engine: Engine, rules: LandRules, *, follow: bool,
        stop: threading.Event | None = None, clock: Clock = utc_now,
    ) -> IngestCounts:  # fmt: skip
        """Land the messages: first those pending on this consumer, then those idle on
        others, then new ones; without ``follow``, until none is left; with it, until
        ``stop`` is set."""
        ensure_group(self.client, self.stream, self.group)
        counts = IngestCounts()
        while entries := self._read("0", None):  # delivered before, never acknowledged
            self._handle(engine, rules, entries, counts, clock)
        claimed = self.client.xautoclaim(self.stream, self.group, self.consumer,
                                         _CLAIM_IDLE_MS, "0-0", count=self.batch)  # fmt: skip
        self._handle(engine, rules, list(claimed[1]), counts, clock)
        while stop is None or not stop.is_set():
            entries = self._read(">", self.block_ms if follow else None)
            if entries:
                self._handle(engine, rules, entries, counts, clock)
            elif not follow:
                break
        return counts
