"""The artifact store on an S3-compatible server (moto's S3 server, a separate process on
loopback, spoken to over HTTP by boto3): the same interface and the same disaster recovery as
the local store."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from mlcore.config import load_config
from mlcore.registry import S3ArtifactStore, registry_for
from tests.conftest import config_with, free_port, make_version

BUCKET = "mlcore-artifacts"


@pytest.fixture
def endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / "s3.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    for var, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                       ("AWS_DEFAULT_REGION", "us-east-1")):  # fmt: skip
        monkeypatch.setenv(var, value)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"S3 server did not start: {(tmp_path / 's3.log').read_text()}")
                time.sleep(0.2)
        boto3.client("s3", endpoint_url=url).create_bucket(Bucket=BUCKET)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def test_put_read_list_delete(endpoint: str, tmp_path: Path) -> None:
    store = S3ArtifactStore.connect(endpoint, BUCKET, "team/artifacts")
    folder = make_version(tmp_path / "models", "20260101_0000_abc1234")
    sums = json.loads((folder / "checksums.json").read_text())
    where = store.put(folder.name, folder, sums)
    assert where == f"s3://{BUCKET}/team/artifacts/{folder.name}"
    assert store.versions() == [folder.name]
    for name in sums:
        assert store.read(folder.name, name) == (folder / name).read_bytes()
    with pytest.raises(ValueError, match=r"nope\.txt of 20260101_0000_abc1234 is not in"):
        store.read(folder.name, "nope.txt")
    # A damaged file is never archived.
    (folder / "ai2.lgbm.txt").write_bytes(b"tampered\n")
    with pytest.raises(ValueError, match=r"ai2\.lgbm\.txt: checksum mismatch, not archived"):
        store.put("20260101_0001_abc1234", folder, sums)
    # An upload cut short (no checksums.json yet) is not a version.
    client = boto3.client("s3", endpoint_url=endpoint)
    client.put_object(
        Bucket=BUCKET, Key="team/artifacts/20260102_0000_half/ai1.lgbm.txt", Body=b"x"
    )
    assert store.versions() == [folder.name]
    store.delete(folder.name)
    assert store.versions() == []
    keys = client.list_objects_v2(Bucket=BUCKET, Prefix=f"team/artifacts/{folder.name}/")
    assert keys.get("KeyCount", 0) == 0


def test_disaster_recovery_from_the_s3_store(
    endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARCHIVE_PATH", str(tmp_path / "archive"))
    root = config_with(tmp_path, {"ml_core_storage": {"artifact_store": {
        "backend": "s3", "s3": {"endpoint_url": endpoint, "bucket": BUCKET, "prefix": "prod"},
    }}})  # fmt: skip
    cfg = load_config(root, "dev")
    reg = registry_for(cfg)
    assert isinstance(reg.store, S3ArtifactStore) and reg.store.prefix == "prod/registry/artifacts"
    folder = make_version(cfg.paths.models, "20260101_0000_abc1234")
    reg.register(folder, actor="test", notes="first")
    for to in ("candidate", "approved", "deployed"):
        reg.transition(folder.name, to, actor="test", notes="ok")
    (folder / "ai1.lgbm.txt").unlink()
    (folder / "ai2.lgbm.txt").write_bytes(b"bit rot\n")
    assert reg.verify(folder.name) == {
        "ai1.lgbm.txt": "missing",
        "ai2.lgbm.txt": "checksum mismatch",
    }
    restored = reg.restore(folder.name, actor="ops")
    assert restored == {"ai1.lgbm.txt": "missing", "ai2.lgbm.txt": "checksum mismatch"}
    assert reg.verify(folder.name) == {}
    # A copy that fails its checksum in the store too is never served.
    shutil.rmtree(folder)
    client = boto3.client("s3", endpoint_url=endpoint)
    client.put_object(Bucket=BUCKET, Key=f"prod/registry/artifacts/{folder.name}/ai3.lgbm.txt",
                      Body=b"also rotten\n")  # fmt: skip
    with pytest.raises(ValueError, match="the archived copy fails its checksum too; not served"):
        reg.restore(folder.name, actor="ops")
