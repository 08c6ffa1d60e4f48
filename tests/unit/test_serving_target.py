"""The serving target (target.json) the supervisor writes and running workers take: a damaged
or hostile file is refused with one line naming the field; sequences only grow, also across a
new `mlcore serve` run (a worker never takes an old file for news)."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from mlcore.config import AppConfig
from mlcore.serving import (
    ServingTarget,
    Supervisor,
    WorkerSpec,
    read_target,
    write_target,
)
from mlcore.serving._target import TargetWatch, parse_target

GOOD = {"seq": 3, "model_version": "20250101_0000_abc1234", "model_folder": "/m/x",
        "theta": [0.6, 0.4], "model_checksums": {"ai1.lgbm.txt": "ab"},
        "model_registered": True, "config_version": None}  # fmt: skip


def test_a_target_round_trips(tmp_path: Path) -> None:
    t = ServingTarget(7, "v", "/m/v", (0.6, 0.4), (("a", "1"),), False, "cfg-1")
    write_target(tmp_path, t)
    assert read_target(tmp_path) == t
    assert read_target(tmp_path / "none") is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"seq": -1}, "seq"),
        ({"seq": True}, "seq"),
        ({"seq": "3"}, "seq"),
        ({"model_version": ""}, "model_version"),
        ({"model_folder": 5}, "model_folder"),
        ({"theta": [0.6]}, "theta"),
        ({"theta": [0.6, float("nan")]}, "theta"),
        ({"theta": [0.6, 1.5]}, "theta"),
        ({"theta": ["0.6", 0.4]}, "theta"),
        ({"model_checksums": ["x"]}, "model_checksums"),
        ({"model_registered": "yes"}, "model_registered"),
        ({"config_version": 3}, "config_version"),
        ({"extra": 1}, "unknown fields"),
    ],
)
def test_a_bad_target_names_the_field(change: dict[str, object], field: str) -> None:
    body = json.dumps({**GOOD, **change}).encode()
    with pytest.raises(ValueError, match=field) as exc:
        parse_target(body, "target.json")
    assert str(exc.value).startswith("target.json: ") and "\n" not in str(exc.value)


@pytest.mark.parametrize("body", [b"", b"\x00\xff", b"[1, 2]", b"{" * 5000, b"null"])
def test_garbage_is_refused_in_one_line(body: bytes) -> None:
    with pytest.raises(ValueError, match=r"target\.json") as exc:
        parse_target(body, "target.json")
    assert "\n" not in str(exc.value)


def test_the_watch_sees_each_change_once(tmp_path: Path) -> None:
    watch = TargetWatch(tmp_path)
    assert not watch.changed()  # no file yet
    write_target(tmp_path, ServingTarget(1, "v", "/m/v", (0.6, 0.4)))
    assert watch.changed() and not watch.changed()
    write_target(tmp_path, ServingTarget(2, "v", "/m/v", (0.6, 0.45)))
    st = (tmp_path / "target.json").stat()
    os.utime(tmp_path / "target.json", ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert watch.changed()


def test_the_supervisor_continues_the_sequence(cfg: AppConfig, tmp_path: Path) -> None:
    root = tmp_path / "serving"
    write_target(root, ServingTarget(41, "old", "/m/old", (0.7, 0.3)))
    folder = str(tmp_path / "20250101_0000_abc1234")
    spec = WorkerSpec("worker-0", ("XAU_XAG",), str(cfg.config_root), cfg.env_name, folder,
                      (0.6, 0.4), root=str(root))  # fmt: skip
    sup = Supervisor(cfg, [spec, replace(spec, worker_id="worker-1")])
    assert sup._publish("cfg-9") == 42
    target = read_target(root)
    assert target is not None and (target.seq, target.model_version, target.config_version) == (
        42, "20250101_0000_abc1234", "cfg-9")  # fmt: skip
    assert {s.spec.target_seq for s in sup.slots} == {42}
    (root / "target.json").write_text("{broken")
    assert sup._publish(None) == 1  # a damaged file is replaced, never followed
