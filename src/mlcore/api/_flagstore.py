"""The ops flags as the API changes them: ``flag_store``, ``read_flags`` and ``update_flags``
(the FLAGS part's contract, issue 18 section 2).

Interim, until the FLAGS part lands on main: the same three names over the flags of this
build (Redis WATCH/MULTI, or the file under an flock). Replaced by ``mlcore.serving``'s at the
merge."""

from __future__ import annotations

import fcntl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from mlcore.config import AppConfig
from mlcore.serving import OpsFlags, parse_flags, write_flags
from mlcore.serving._setup import serving_dir


@dataclass(frozen=True)
class FlagStore:
    """Where the workers read the flags: Redis ``key`` (when ``client``), else ``path``."""

    client: redis.Redis | None
    key: str
    path: Path


def flag_store(cfg: AppConfig) -> FlagStore:
    """The store the workers of ``cfg`` read."""
    client = (
        redis.Redis.from_url(cfg.env.redis_url, socket_connect_timeout=2, socket_timeout=2)
        if cfg.env.redis_url
        else None
    )
    return FlagStore(client, cfg.serving.redis.ops_flags_key, serving_dir(cfg) / "ops_flags.json")


def read_flags(store: FlagStore) -> OpsFlags:
    """The document now (``ValueError`` if it is bad)."""
    if store.client is not None:
        raw = store.client.get(store.key)
        return parse_flags(raw if raw is None or isinstance(raw, bytes) else str(raw), store.key)
    try:
        return parse_flags(store.path.read_bytes(), str(store.path))
    except FileNotFoundError:
        return parse_flags(None, str(store.path))


def update_flags(
    store: FlagStore, change: Callable[[OpsFlags], OpsFlags]
) -> tuple[OpsFlags, OpsFlags]:
    """Apply ``change`` atomically; (before, after)."""
    if store.client is not None:
        with store.client.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(store.key)  # type: ignore[no-untyped-call]
                    raw = pipe.get(store.key)
                    before = parse_flags(raw if raw is None or isinstance(raw, bytes)
                                         else str(raw), store.key)  # fmt: skip
                    after = change(before)
                    pipe.multi()
                    write_flags(pipe, store.key, store.path, after)
                    pipe.execute()
                    return before, after
                except redis.WatchError:
                    continue
    store.path.parent.mkdir(parents=True, exist_ok=True)
    with open(store.path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        before = read_flags(store)
        after = change(before)
        write_flags(None, store.key, store.path, after)
        return before, after
