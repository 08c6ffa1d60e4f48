"""update_flags is an atomic read-modify-write: N processes each adding a pair at the same time
leave all N pairs and seq N (on the real Redis, and on the file under its lock); a refused
document is never overwritten; a store that does not answer is a RetryableError."""

from __future__ import annotations

import json
import multiprocessing as mp
import uuid
from pathlib import Path

import pytest
import redis

from mlcore.errors import RetryableError
from mlcore.serving import (
    FlagsInvalid,
    FlagStore,
    OpsFlags,
    parse_flags,
    read_flags,
    update_flags,
    write_flags,
)
from tests.conftest import free_port, redis_url

# Four processes (each spawned child imports the pipeline, about 8 s of CPU here) of ten rounds:
# forty read-modify-writes racing, where an update lost to a race shows as a missing pair.
WRITERS = 4
ROUNDS = 10


def _store(url: str | None, key: str, path: str) -> FlagStore:
    return FlagStore(redis.Redis.from_url(url) if url else None, key, Path(path))


def _writer(
    url: str | None, key: str, path: str, n: int, go: mp.synchronize.Barrier, errors: mp.Queue
) -> None:  # fmt: skip
    try:
        store = _store(url, key, path)
        go.wait(120)  # every writer imported and ready: they start together
        for r in range(ROUNDS):
            update_flags(store, lambda f, p=f"P{n}_{r}": f.model_copy(
                update={"halted_pairs": f.halted_pairs | {p}}))  # fmt: skip
    except BaseException as exc:  # said to the test, which names it
        errors.put(f"writer {n}: {type(exc).__name__}: {exc}")
        raise


def _race(url: str | None, key: str, path: Path) -> OpsFlags:
    # Spawned, not forked: a fork of a test worker inherits whatever earlier tests left in it.
    ctx = mp.get_context("spawn")
    go, errors = ctx.Barrier(WRITERS), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(url, key, str(path), n, go, errors))
             for n in range(WRITERS)]  # fmt: skip
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    said = [errors.get(timeout=5) for _ in range(errors.qsize())] if not errors.empty() else []
    assert [p.exitcode for p in procs] == [0] * WRITERS, said
    return read_flags(_store(url, key, str(path)))


def test_concurrent_writers_lose_no_update_on_redis(tmp_path: Path) -> None:
    key = f"test:{uuid.uuid4().hex[:8]}:flags"
    client = redis.Redis.from_url(redis_url())
    try:
        write_flags(client, key, tmp_path / "x", OpsFlags(flatten_all=True))
        flags = _race(redis_url(), key, tmp_path / "unused")
        assert flags.halted_pairs == {f"P{n}_{r}" for n in range(WRITERS) for r in range(ROUNDS)}
        assert flags.seq == WRITERS * ROUNDS and flags.flatten_all  # kept what was there
    finally:
        client.delete(key)


def test_concurrent_writers_lose_no_update_on_the_file(tmp_path: Path) -> None:
    path = tmp_path / "serving" / "ops_flags.json"
    flags = _race(None, "unused", path)
    assert flags.halted_pairs == {f"P{n}_{r}" for n in range(WRITERS) for r in range(ROUNDS)}
    assert flags.seq == WRITERS * ROUNDS
    assert parse_flags(path.read_bytes(), "file") == flags


def test_update_returns_before_and_after_and_validates(tmp_path: Path) -> None:
    store = FlagStore(None, "k", tmp_path / "ops_flags.json")
    before, after = update_flags(store, lambda f: f.model_copy(update={"hard_halt": True}))
    assert before == OpsFlags() and after == OpsFlags(hard_halt=True, seq=1)
    with pytest.raises(ValueError, match="leverage_scale"):
        update_flags(store, lambda f: f.model_copy(update={"leverage_scale": 2.0}))
    assert read_flags(store) == after  # a refused change writes nothing


def test_a_refused_document_is_not_overwritten(tmp_path: Path) -> None:
    key = f"test:{uuid.uuid4().hex[:8]}:flags"
    client = redis.Redis.from_url(redis_url())
    try:
        for store in (FlagStore(client, key, tmp_path / "x"),
                      FlagStore(None, key, tmp_path / "ops_flags.json")):  # fmt: skip
            bad = b'{"global_halt": true, "halt_level": 3}'
            if store.client is not None:
                client.set(key, bad)
            else:
                store.path.write_bytes(bad)
            with pytest.raises(FlagsInvalid, match="halt_level") as info:
                update_flags(store, lambda f: f.model_copy(update={"global_halt": False}))
            assert info.value.code == "SERVING_FLAGS_INVALID"
            with pytest.raises(FlagsInvalid):
                read_flags(store)
            raw = client.get(key) if store.client is not None else store.path.read_bytes()
            assert raw == bad
    finally:
        client.delete(key)


def test_a_store_that_does_not_answer_is_retryable(tmp_path: Path) -> None:
    client = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}", socket_timeout=1)
    store = FlagStore(client, "k", tmp_path / "x")
    with pytest.raises(RetryableError) as info:
        update_flags(store, lambda f: f)
    assert info.value.code == "SERVING_FLAGS_UNREACHABLE" and "redis k" in str(info.value)
    with pytest.raises(RetryableError):
        read_flags(store)
    folder = tmp_path / "blocked"
    folder.write_text("a file where the folder should be")
    with pytest.raises(RetryableError, match="SERVING_FLAGS_UNREACHABLE"):
        update_flags(FlagStore(None, "k", folder / "ops_flags.json"), lambda f: f)


@pytest.mark.parametrize("backend", ["redis", "file"])
def test_a_lost_document_is_rebuilt_from_the_audit_trail_not_from_no_flags(
    tmp_path: Path, backend: str
) -> None:
    """Redis restarted without persistence lost the document holding a book-wide halt; a halt
    of one more pair (the API's, or the drawdown guard's) must not lift the book's halt by
    starting from no flags: it starts from the last flags the audit trail recorded."""
    from mlcore.ops import _flagset
    from mlcore.registry import ActionResult, open_registry
    from mlcore.serving import flags_json

    reg = open_registry(f"sqlite:///{tmp_path / 'registry.db'}")
    in_force = OpsFlags(global_halt=True, halted_pairs=frozenset({"EUR_GBP"}), seq=3)
    doc = json.loads(flags_json(in_force))
    reg.record_action("ops.halt", actor="oscar", role="editor", reason="incident",
                      request_id="r1", before=None, after=doc, result=ActionResult.OK)  # fmt: skip
    key = f"test:{uuid.uuid4().hex[:8]}:flags"
    client = redis.Redis.from_url(redis_url()) if backend == "redis" else None
    store = FlagStore(client, key, tmp_path / "ops_flags.json")  # absent: never written
    try:

        def add(f: OpsFlags) -> OpsFlags:
            return f.model_copy(update={"halted_pairs": f.halted_pairs | {"XAU_XAG"}})

        before, after = update_flags(store, add, absent=_flagset.audited(reg))
        assert before == in_force
        assert after.global_halt and after.halted_pairs == {"EUR_GBP", "XAU_XAG"}
        assert after.seq == 4
        assert read_flags(store) == after
        # Once written, the document is the truth again (the audit trail is not read).
        _, again = update_flags(store, add, absent=lambda: pytest.fail("document present"))
        assert again.seq == 5 and again.global_halt
    finally:
        if client is not None:
            client.delete(key)
