"""Concurrent status changes on both databases, through the commands that make them: two
``registry rollback`` runs at once each print the rollback they carried out (or, with
``--from``, the second refuses), and ``registry promote`` prints the status it set, whatever
lands right after. A barrier (or a hook) fixes the interleaving, so no test hopes for a race."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlcore.cli import _registry as cli
from mlcore.errors import MlcoreError
from mlcore.registry import LocalArtifactStore, Registry, Versions, open_registry
from mlcore.registry._artifacts import failing_files
from tests.conftest import CONFIG_ROOT, make_version, postgres_url


@pytest.fixture(params=["sqlite", "postgresql"])
def url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A registry database the commands open through their configuration."""
    monkeypatch.setenv("MLCORE_CONFIG_ROOT", str(CONFIG_ROOT))
    if request.param == "sqlite":
        monkeypatch.setenv("ARCHIVE_PATH", str(tmp_path))
        yield f"sqlite:///{tmp_path / 'registry' / 'registry.db'}"
    else:
        monkeypatch.setenv("ARCHIVE_PATH", str(tmp_path / "archive"))
        for found in postgres_url():
            monkeypatch.setenv("POSTGRES_URL", found.replace("+psycopg", ""))
            yield found


@pytest.fixture
def printed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the registry commands print."""
    lines: list[str] = []
    monkeypatch.setattr(cli, "text", lines.append)
    return lines


def _deployed_in_turn(reg: Registry, tmp_path: Path) -> list[str]:
    """Three versions deployed one after the other: the last in service, two to go back to."""
    names = [f"2025010{i}_0000_race{i}" for i in (1, 2, 3)]
    for n in names:
        reg.register(make_version(tmp_path / "models", n), actor="ci", notes="trained")
        for to in ("candidate", "approved", "deployed"):
            reg.transition(n, to, actor="ci", notes="ok")
    return names


def _at_once(monkeypatch: pytest.MonkeyPatch, runs: list[dict[str, Any]]) -> list[Exception]:
    """Run ``registry rollback`` once per kwargs in ``runs``, each on its own thread; every
    run has read what it reads before any of them rolls back (a barrier in front of
    ``Registry.rollback``). Returns the errors raised."""
    barrier = threading.Barrier(len(runs), timeout=60)
    real = Registry.rollback

    def rollback(self: Registry, **kw: Any) -> Any:
        barrier.wait()
        return real(self, **kw)

    monkeypatch.setattr(Registry, "rollback", rollback)
    errors: list[Exception] = []

    def run(kw: dict[str, Any]) -> None:
        try:
            cli.registry_rollback(notes="race", actor=threading.current_thread().name, **kw)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(kw,), name=f"ops{i}") for i, kw in
               enumerate(runs)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    monkeypatch.setattr(Registry, "rollback", real)
    return errors


def test_two_rollbacks_at_once_each_print_what_they_did(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, printed: list[str]
) -> None:
    reg = open_registry(url)
    v1, v2, v3 = _deployed_in_turn(reg, tmp_path)
    assert _at_once(monkeypatch, [{}, {}]) == []
    # One after the other: v3 -> v2, then v2 -> v1; each prints its own.
    assert sorted(printed) == sorted(
        [f"rolled back {v3}; {v2} is deployed", f"rolled back {v2}; {v1} is deployed"]
    )
    assert [reg.get(v).status for v in (v1, v2, v3)] == ["deployed", "rolled_back", "rolled_back"]
    done = [h.details for h in reg.history() if h.event == "CONFIG_ROLLBACK"][::2]
    assert done == [{"from": v3, "to": v2}, {"from": v2, "to": v1}]
    # Each rollback notifies (a warning), naming the version it put back.
    raised = sorted((a.code, a.details["model_version"]) for a in reg.alerts())
    assert raised == sorted([("OPS_ROLLBACK_MODEL", v2), ("OPS_ROLLBACK_MODEL", v1)])


def test_two_rollbacks_from_the_same_version_the_second_refuses(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, printed: list[str]
) -> None:
    reg = open_registry(url)
    v1, v2, v3 = _deployed_in_turn(reg, tmp_path)
    errors = _at_once(monkeypatch, [{"from_": v3}, {"from_": v3}])
    assert printed == [f"rolled back {v3}; {v2} is deployed"]
    assert len(errors) == 1 and isinstance(errors[0], MlcoreError), errors
    assert errors[0].code == "REGISTRY_STATE_CONFLICT"
    assert f"{v3} is no longer deployed ({v2} is)" in errors[0].message
    assert [reg.get(v).status for v in (v1, v2, v3)] == ["approved", "deployed", "rolled_back"]
    assert [a.code for a in reg.alerts()] == ["OPS_ROLLBACK_MODEL"]  # the refused one: none
    with pytest.raises(MlcoreError, match=r"nothing rolled back") as info:
        cli.registry_rollback(notes="stale", actor="ops", from_=v1)
    assert info.value.code == "REGISTRY_STATE_CONFLICT"


def test_promote_prints_the_status_it_set_whatever_lands_next(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, printed: list[str]
) -> None:
    reg = open_registry(url)
    _, v2, _ = _deployed_in_turn(reg, tmp_path)
    reg.rollback(actor="ci", notes="back to v2")
    reg.rollback(actor="ci", notes="back to v1")  # v1 deployed; v2 rolled back
    real = Versions.get
    other = open_registry(url)

    def get(self: Versions, version: str) -> Any:
        # Right after the promotion commits, another operator rolls it back (a read before
        # it, the promotion's check of the files, goes by).
        rec = real(self, version)
        if rec.status != "deployed":
            return rec
        monkeypatch.setattr(Versions, "get", real)
        other.rollback(actor="ops2", notes="not that one")
        return real(self, version)

    monkeypatch.setattr(Versions, "get", get)
    cli.registry_promote(v2, "deployed", notes="again", actor="ops1")
    assert printed == [f"{v2} is now deployed"]


def test_two_registrations_of_one_version_leave_the_winners_files_archived(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two folders of the same name registered at once: one is refused, and the archived copy
    is the registered one's. The first to archive waits (up to 3 s) for the other to archive
    and commit first — the interleaving that let the loser overwrite the winner's copy."""
    name = "20250101_0000_twins"
    folders = [make_version(tmp_path / side, name) for side in ("a", "b")]
    (folders[1] / "notes.txt").write_text("the other twin")
    sums = {"notes.txt": hashlib.sha256(b"the other twin").hexdigest()}
    doc = json.loads((folders[1] / "checksums.json").read_bytes()) | sums
    (folders[1] / "checksums.json").write_text(json.dumps(doc))
    open_registry(url)
    first_in, other_done = threading.Event(), threading.Event()
    real = LocalArtifactStore.put

    def put(self: LocalArtifactStore, version: str, folder: Path, sums: dict[str, str]) -> str:
        if not first_in.is_set():
            first_in.set()
            other_done.wait(3)
            return real(self, version, folder, sums)
        try:
            return real(self, version, folder, sums)
        finally:
            other_done.set()

    monkeypatch.setattr(LocalArtifactStore, "put", put)
    outcomes: list[object] = []

    def register(folder: Path) -> None:
        try:
            outcomes.append(open_registry(url, tmp_path / "store").register(
                folder, actor="ci", notes="twin"))  # fmt: skip
        except Exception as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=register, args=(f,)) for f in folders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    refused = [o for o in outcomes if isinstance(o, MlcoreError)]
    assert len(outcomes) == 2 and len(refused) == 1, outcomes
    assert refused[0].code == "REGISTRY_VERSION_EXISTS"
    rec = open_registry(url).get(name)
    assert failing_files(tmp_path / "store" / name, rec.checksums) == {}
