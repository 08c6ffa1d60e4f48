"""Model versions' files: where they are served from, checking them against the checksums the
registry recorded, restoring damaged ones from the artifact store, and retention (prune)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from sqlalchemy import Engine

from mlcore.registry._common import write_audit
from mlcore.registry._errors import RegistryError
from mlcore.registry._records import AuditEvent, ModelStatus
from mlcore.registry._store import ArtifactStore, damaged_files, restore_folder
from mlcore.registry._versions import Versions

MIN_KEEP = 5  # the spec keeps at least five versions
log = logging.getLogger("mlcore.registry")


def failing_files(folder: Path, sums: dict[str, str]) -> dict[str, str]:
    """Files of ``folder`` that are missing or fail the checksums the registry recorded
    (``sums``), and ``checksums.json`` when it is not the recorded one: a rewritten one must
    not vouch for swapped files."""
    bad = damaged_files(folder, sums)
    local_path = folder / "checksums.json"
    try:
        if local_path.exists() and not local_path.is_file():
            raise ValueError("not a regular file")  # a FIFO would block the read
        local = json.loads(local_path.read_bytes())
    except FileNotFoundError:
        bad["checksums.json"] = "missing"
    except (OSError, ValueError):
        bad["checksums.json"] = "unreadable"
    else:
        if local != sums:
            bad["checksums.json"] = "differs from the registry's"
    return bad


class Artifacts:
    """The files of the versions ``versions`` holds, with ``store``'s archived copies."""

    def __init__(self, engine: Engine, versions: Versions, store: ArtifactStore | None) -> None:
        self.engine = engine
        self.versions = versions
        self.store = store

    def served_folder(self, version: str) -> Path:
        """Where the version's files are served from (``models_root/{version}``)."""
        return Path(self.versions.path(version, "model_ai1_path")).parent

    def verify(self, version: str) -> dict[str, str]:
        """Served files that are missing or fail the checksums the registry recorded (and
        ``checksums.json`` when it is not the recorded one)."""
        return failing_files(self.served_folder(version), self.versions.get(version).checksums)

    def checked(self, version: str, *, actor: str) -> Path:
        """The version's served folder once every file matches the checksums recorded at
        registration: damaged or missing files are first restored from the artifact store
        (each copy verified). ``RegistryError`` ``REGISTRY_ARTIFACT_DAMAGED`` when they cannot
        be: such a version is never used. The one check the deployed path and ``--model``
        share."""
        bad = self.verify(version)
        if not bad:
            return self.served_folder(version)
        log.warning("%s: damaged files %s, restoring from the artifact store", version,
                    sorted(bad))  # fmt: skip
        try:
            self.restore(version, actor=actor)
            still = self.verify(version)
        except RegistryError as exc:
            still, why = bad, f"not restored: {exc}"
        else:
            why = "still damaged after restoring"
        if still:
            shown = ", ".join(f"{name} ({what})" for name, what in sorted(bad.items()))
            raise RegistryError(
                "REGISTRY_ARTIFACT_DAMAGED",
                f"model version {version}: {shown} fail the checksums recorded at registration "
                f"({why}); not used",
            )
        return self.served_folder(version)

    def restore(self, version: str, *, actor: str) -> dict[str, str]:
        """Replace the version's missing or damaged served files with their archived copies
        (each verified); returns what was restored and why."""
        if self.store is None:
            raise RegistryError(
                "REGISTRY_ARTIFACT_NO_STORE",
                "this registry has no artifact store to restore from; set artifact_store in "
                "ml_core_storage.yaml",
            )
        rec = self.versions.get(version)
        folder = self.served_folder(version)
        restored = restore_folder(self.store, version, folder, rec.checksums)
        if restored:
            with self.engine.begin() as conn:
                write_audit(
                    conn,
                    AuditEvent.MODEL_RESTORED,
                    version,
                    rec.status,
                    rec.status,
                    f"restored from the artifact store: {restored}",
                    actor,
                    {"files": restored},
                )
        return restored

    def prune(self, keep: int, *, actor: str, dry_run: bool = False) -> list[str]:
        """Delete the served files and archived copies of versions beyond the newest ``keep``,
        never one that is deployed, rolled back, or was deployed before (a rollback target).
        The registry rows stay, marked in the audit trail."""
        if keep < MIN_KEEP:
            raise RegistryError(
                "REGISTRY_RETENTION_KEEP_TOO_LOW",
                f"keep must be at least {MIN_KEEP} versions (spec), got {keep}",
            )
        records = self.versions.records()
        protected = {
            r.model_version
            for r in records
            if r.status in (ModelStatus.DEPLOYED, ModelStatus.ROLLED_BACK)
            or r.deployed_at is not None
        }
        gone = [r for r in records[keep:] if r.model_version not in protected]
        if dry_run:
            return [r.model_version for r in gone]
        for r in gone:
            shutil.rmtree(self.served_folder(r.model_version), ignore_errors=True)
            if self.store is not None:
                self.store.delete(r.model_version)
            with self.engine.begin() as conn:
                write_audit(
                    conn,
                    AuditEvent.MODEL_PRUNED,
                    r.model_version,
                    r.status,
                    r.status,
                    f"beyond the newest {keep} versions",
                    actor,
                    None,
                )
        return [r.model_version for r in gone]
