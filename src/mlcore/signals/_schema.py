"""The signal record (spec 002 入出力（契約）) and its versioned JSON Schema."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from functools import cache, lru_cache
from importlib import resources
from typing import Any, Final

import jsonschema
import orjson

SCHEMA_NAME: Final = "mlcore.signal.v1"
SCHEMA_FILE: Final = "signal.v1.schema.json"


def signal_id(pair_id: str, bar_ts_ns: int, model_version: str) -> str:
    """The same pair, bar and model version always give the same id."""
    key = f"{pair_id}|{bar_ts_ns}|{model_version}".encode()
    return hashlib.sha256(key).hexdigest()[:32]


@lru_cache(maxsize=8192)
def iso_utc(ts_ns: int) -> str:
    """``2025-10-14T12:35:00Z`` (microseconds kept when present); cached, as the pairs of a
    bar share its times."""
    dt = datetime.fromtimestamp(ts_ns // 1000 / 1e6, UTC)
    text = dt.isoformat(timespec="microseconds" if dt.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def build_signal(
    *, pair_id: str, bar_ts_ns: int, bar_seconds: int, valid_seconds: float, model_version: str,
    legs: list[dict[str, Any]], z: float, beta: float, return_prob: float, risk_score: float,
    position_scale: float, risk_flag: int, action: str, side: int, reason: str, worker: str,
    core_policy: dict[str, Any], params_sha256: str, model_registered: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """One signal: decided at the bar's close, valid ``valid_seconds`` after it;
    ``params_sha256`` names the version's decision parameters (its ``decision.json``). A model
    version the registry does not hold (served with ``--unregistered``) adds
    ``metadata.model_registered: false``; a registered one's signals are unchanged."""
    sid = signal_id(pair_id, bar_ts_ns, model_version)
    close_ns = bar_ts_ns + bar_seconds * 1_000_000_000
    signal = {
        "id": sid,
        "timestamp": iso_utc(close_ns),
        "pair_id": pair_id,
        "legs": legs,
        "z_score": z,
        "return_prob": return_prob if return_prob == return_prob else None,  # NaN: not asked
        "risk_score": risk_score,
        "theta1": core_policy["theta1"],
        "theta2": core_policy["theta2"],
        "risk_flag": risk_flag,
        "position_scale": position_scale,
        "model_version": model_version,
        "valid_until": iso_utc(close_ns + int(valid_seconds * 1e9)),
        "metadata": {
            "schema": SCHEMA_NAME,
            "trace_id": f"{sid[:8]}-{sid[8:12]}-{sid[12:16]}-{sid[16:20]}-{sid[20:]}",
            "action": action,
            "side": side,
            "reason": reason,
            "bar_ts": iso_utc(bar_ts_ns),
            "beta": beta,
            "worker": worker,
            "core_policy": core_policy,
            "params_sha256": params_sha256,
        },
    }
    if not model_registered:
        signal["metadata"]["model_registered"] = False
    return signal


def encode_signal(signal: dict[str, Any]) -> bytes:
    """Canonical JSON bytes (sorted keys, shortest round-trip floats): equal signals give equal
    bytes. A NaN or infinity is refused (``ValueError``), never written as ``null``."""
    for key in ("z_score", "risk_score", "position_scale"):
        if not math.isfinite(signal[key]):
            raise ValueError(f"signal {signal.get('id')!r}: {key} is {signal[key]}")
    return orjson.dumps(signal, option=orjson.OPT_SORT_KEYS)


@cache
def signal_schema() -> dict[str, Any]:
    """The JSON Schema of a signal (``signal.v1.schema.json``, shipped with the package)."""
    text = resources.files("mlcore.signals").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def validate_signal(signal: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the first field that breaks the schema."""
    validator = jsonschema.Draft202012Validator(
        signal_schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    error = next(iter(sorted(validator.iter_errors(signal), key=lambda e: e.path)), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top)"
        raise ValueError(f"signal {signal.get('id')!r}: {where}: {error.message}")
