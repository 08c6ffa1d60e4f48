"""A model version's files read against its ``checksums.json``: a file whose SHA256 differs
from the recorded one is refused, never loaded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def read_checksums(folder: Path) -> dict[str, str]:
    """A model version's ``checksums.json`` (file name -> SHA256); ``ValueError`` if unusable."""
    path = folder / "checksums.json"
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ValueError(f"{path}: missing, so no model file can be trusted") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable ({exc})") from None
    if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
        raise ValueError(f"{path}: not a mapping of file name to SHA256")
    return doc


def read_checked(folder: Path, name: str, sums: dict[str, str]) -> bytes:
    """The bytes of ``folder/name`` after checking them against ``sums``."""
    path = folder / name
    if path.exists() and not path.is_file():  # a FIFO would block the read
        raise ValueError(f"{name}: not a regular file (a folder, a FIFO, a device)")
    data = path.read_bytes()
    want = sums.get(name)
    if want is None:
        raise ValueError(f"{name}: not listed in checksums.json")
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise ValueError(
            f"{name}: checksum mismatch (sha256 {got[:12]}..., expected {want[:12]}...)"
        )
    return data
