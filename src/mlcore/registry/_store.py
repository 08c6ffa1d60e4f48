"""The registry's artifact store: an archived copy of every registered model version, each file
checked against the version's ``checksums.json`` on the way in and on the way out.

``ArtifactStore`` is the interface (put, read, versions, delete); ``LocalArtifactStore`` keeps
the copies under a directory, ``S3ArtifactStore`` in an S3-compatible bucket. Restoring a
served folder from the store is :func:`restore_folder`: only files that are missing or fail
their checksum are replaced, each atomically, and only with a copy that passes its own.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any, Protocol

from mlcore.data import replace_dir, write_atomic
from mlcore.registry._errors import RegistryError


def sha256(data: bytes) -> str:
    """Hex SHA256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _checked_files(folder: Path, sums: dict[str, str]) -> dict[str, bytes]:
    """The files listed in ``sums`` (each checked against it) and ``checksums.json``."""
    files = {}
    for name, want in sorted(sums.items()):
        if not (folder / name).is_file():
            raise RegistryError(
                "REGISTRY_ARTIFACT_DAMAGED", f"{folder / name}: not a regular file, not archived"
            )
        data = (folder / name).read_bytes()
        if sha256(data) != want:
            raise RegistryError(
                "REGISTRY_ARTIFACT_DAMAGED", f"{folder / name}: checksum mismatch, not archived"
            )
        files[name] = data
    files["checksums.json"] = (folder / "checksums.json").read_bytes()
    return files


class ArtifactStore(Protocol):
    """Where the registry archives model versions."""

    def put(self, version: str, folder: Path, sums: dict[str, str]) -> str: ...

    def read(self, version: str, name: str) -> bytes: ...

    def versions(self) -> list[str]: ...

    def delete(self, version: str) -> None: ...


class LocalArtifactStore:
    """Copies under ``root/{version}/`` (written whole or not at all)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, version: str, folder: Path, sums: dict[str, str]) -> str:
        """Archive the files listed in ``sums`` (and ``checksums.json``), each checked first;
        returns where they went."""
        files = _checked_files(folder, sums)
        target = self.root / version
        replace_dir(target, files)
        return str(target)

    def read(self, version: str, name: str) -> bytes:
        """One archived file's bytes."""
        try:
            return (self.root / version / name).read_bytes()
        except FileNotFoundError:
            raise RegistryError(
                "REGISTRY_ARTIFACT_MISSING",
                f"{name} of {version} is not in the artifact store {self.root}",
            ) from None

    def versions(self) -> list[str]:
        """Archived versions, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )

    def delete(self, version: str) -> None:
        """Remove a version's archived copy."""
        shutil.rmtree(self.root / version, ignore_errors=True)


class S3ArtifactStore:
    """Copies under ``s3://{bucket}/{prefix}/{version}/`` of an S3-compatible store.

    ``checksums.json`` is uploaded last: a version counts as archived only once it is there, so
    an upload cut short is never mistaken for a copy (and is overwritten by the next ``put``).
    """

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    @classmethod
    def connect(cls, endpoint_url: str, bucket: str, prefix: str) -> S3ArtifactStore:
        """A store on the S3 endpoint (credentials from the environment, as boto3 reads them)."""
        import boto3

        return cls(boto3.client("s3", endpoint_url=endpoint_url), bucket, prefix)

    def _key(self, version: str, name: str = "") -> str:
        return "/".join(p for p in (self.prefix, version, name) if p)

    def put(self, version: str, folder: Path, sums: dict[str, str]) -> str:
        """Upload the files listed in ``sums`` (each checked first), then ``checksums.json``."""
        files = _checked_files(folder, sums)
        self.client.delete_object(Bucket=self.bucket, Key=self._key(version, "checksums.json"))
        for name, data in files.items():
            if name != "checksums.json":
                self.client.put_object(Bucket=self.bucket, Key=self._key(version, name), Body=data)
        self.client.put_object(Bucket=self.bucket, Key=self._key(version, "checksums.json"),
                               Body=files["checksums.json"])  # fmt: skip
        return f"s3://{self.bucket}/{self._key(version)}"

    def read(self, version: str, name: str) -> bytes:
        """One archived file's bytes."""
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._key(version, name))
        except self.client.exceptions.NoSuchKey:
            raise RegistryError(
                "REGISTRY_ARTIFACT_MISSING",
                f"{name} of {version} is not in the artifact store s3://{self.bucket}/{self.prefix}",
            ) from None
        body: bytes = obj["Body"].read()
        return body

    def versions(self) -> list[str]:
        """Versions archived whole (their ``checksums.json`` present), sorted."""
        found = set()
        start = f"{self.prefix}/" if self.prefix else ""
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=start
        ):
            for obj in page.get("Contents", []):
                rest = obj["Key"][len(start) :]
                version, _, name = rest.partition("/")
                if name == "checksums.json":
                    found.add(version)
        return sorted(found)

    def delete(self, version: str) -> None:
        """Remove a version's archived copy (its ``checksums.json`` first)."""
        self.client.delete_object(Bucket=self.bucket, Key=self._key(version, "checksums.json"))
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(version) + "/"):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})


def damaged_files(folder: Path, sums: dict[str, str]) -> dict[str, str]:
    """Files of ``sums`` that are missing from ``folder`` or fail their checksum, with why."""
    bad = {}
    for name, want in sorted(sums.items()):
        path = folder / name
        if not path.exists():
            bad[name] = "missing"
        elif not path.is_file():  # a folder, a FIFO (reading it would block), a device
            bad[name] = "not a regular file"
        elif sha256(path.read_bytes()) != want:
            bad[name] = "checksum mismatch"
    return bad


def restore_folder(
    store: ArtifactStore, version: str, folder: Path, sums: dict[str, str]
) -> dict[str, str]:  # fmt: skip
    """Put back every damaged file of ``folder`` from the store (each copy verified first);
    returns what was restored and why. ``RegistryError`` (a ``ValueError``) if a copy is missing
    or damaged too."""
    if folder.exists() and not folder.is_dir():
        raise RegistryError(
            "REGISTRY_ARTIFACT_FOLDER_BLOCKED",
            f"{folder} (where {version} is served from) is not a folder: move it aside, then "
            "restore again",
        )
    damaged = damaged_files(folder, sums)
    blocked = [n for n in [*damaged, "checksums.json"] if (folder / n).is_dir()]
    if blocked:
        raise RegistryError(
            "REGISTRY_ARTIFACT_FOLDER_BLOCKED",
            f"{', '.join(str(folder / n) for n in blocked)}: a folder where {version}'s file "
            "belongs: move it aside, then restore again",
        )
    folder.mkdir(parents=True, exist_ok=True)
    for name in damaged:
        data = store.read(version, name)
        if sha256(data) != sums[name]:
            raise RegistryError(
                "REGISTRY_ARTIFACT_DAMAGED",
                f"{name} of {version}: the archived copy fails its checksum too; not served",
            )
        write_atomic(folder / name, data)
    archived = store.read(version, "checksums.json")
    local = folder / "checksums.json"
    if not local.is_file() or local.read_bytes() != archived:
        write_atomic(local, archived)
        damaged["checksums.json"] = (
            "missing" if not local.exists() else "differs from the registry's"
        )
    return damaged
