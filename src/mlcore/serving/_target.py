"""What the workers serve, as the supervisor tells them while they run: ``target.json`` in the
serving folder names the model version (folder, recorded checksums), θ and the config version
in force, with a sequence number bumped by every change. A worker looks at the file between
batches (one ``stat``) and moves to a newer target without a restart (see
:mod:`mlcore.serving._swap`); a worker started later is handed the same target in its spec."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlcore.data import write_atomic

TARGET_FILE = "target.json"


@dataclass(frozen=True)
class ServingTarget:
    """One target: what every worker of a serving folder should serve."""

    seq: int
    model_version: str
    model_folder: str
    theta: tuple[float, float]
    model_checksums: tuple[tuple[str, str], ...] = ()
    model_registered: bool = True
    config_version: str | None = None

    def doc(self) -> dict[str, Any]:
        """The target as the JSON document written to ``target.json``."""
        return {
            "seq": self.seq, "model_version": self.model_version,
            "model_folder": self.model_folder, "theta": list(self.theta),
            "model_checksums": dict(self.model_checksums),
            "model_registered": self.model_registered, "config_version": self.config_version,
        }  # fmt: skip


def target_path(root: Path) -> Path:
    """Where the target of the serving folder ``root`` lives."""
    return root / TARGET_FILE


def parse_target(data: bytes, where: str) -> ServingTarget:
    """A checked target document; ``ValueError`` naming ``where`` and the field at fault."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise ValueError(f"{where}: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{where}: not a JSON object")
    known = {"seq", "model_version", "model_folder", "theta", "model_checksums",
             "model_registered", "config_version"}  # fmt: skip
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ValueError(f"{where}: unknown fields {unknown}")
    _check_fields(doc, where)
    theta, sums = doc["theta"], doc.get("model_checksums", {})
    return ServingTarget(
        doc["seq"], doc["model_version"], doc["model_folder"],
        (float(theta[0]), float(theta[1])), tuple(sorted(sums.items())),
        doc.get("model_registered", True), doc.get("config_version"),
    )  # fmt: skip


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _check_fields(doc: dict[str, Any], where: str) -> None:
    """``ValueError`` naming the first field of a target document that is wrong."""
    seq, theta, sums = doc.get("seq"), doc.get("theta"), doc.get("model_checksums", {})
    problems = {
        "seq": f"seq {seq!r} is not an integer >= 0"
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0 else "",
        "model_version": "model_version is not a non-empty string"
        if not isinstance(doc.get("model_version"), str) or not doc["model_version"] else "",
        "model_folder": "model_folder is not a non-empty string"
        if not isinstance(doc.get("model_folder"), str) or not doc["model_folder"] else "",
        "theta": f"theta {str(theta)[:80]} is not two rates in [0, 1]"
        if not isinstance(theta, list) or len(theta) != 2
        or not all(_number(v) and 0.0 <= v <= 1.0 for v in theta) else "",
        "model_checksums": "model_checksums is not a mapping of file names to hashes"
        if not isinstance(sums, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in sums.items()) else "",
        "model_registered": "model_registered is not true or false"
        if not isinstance(doc.get("model_registered", True), bool) else "",
        "config_version": "config_version is not a string or null"
        if not isinstance(doc.get("config_version"), str | None) else "",
    }  # fmt: skip
    for problem in problems.values():
        if problem:
            raise ValueError(f"{where}: {problem}")


def read_target(root: Path) -> ServingTarget | None:
    """The target of the serving folder ``root`` (None: none written); ``ValueError`` when
    the file is not a target."""
    path = target_path(root)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(f"{path}: unreadable ({exc.strerror or exc})") from None
    return parse_target(data, str(path))


def write_target(root: Path, target: ServingTarget) -> None:
    """Write the target atomically (a worker never reads half of it)."""
    body = json.dumps(target.doc(), sort_keys=True, indent=2) + "\n"
    write_atomic(target_path(root), body.encode())


class TargetWatch:
    """A worker's look at ``target.json``: the file is read again only when its mtime or size
    changed since the last look."""

    def __init__(self, root: Path) -> None:
        self.path = target_path(root)
        self._stamp: tuple[int, int] | None = None

    def changed(self) -> bool:
        """Whether the file changed since the last call (a missing file never has)."""
        try:
            st = self.path.stat()
        except OSError:
            return False
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        return True
