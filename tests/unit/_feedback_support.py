"""Signals built as serving builds them, written to a registry's core.signals_live, for the
feedback tests (fills, live trades, KPIs) without a trained model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert

from mlcore.registry import signals_live
from mlcore.signals import build_signal

VERSION = "20250101_0000_abc1234"
POLICY = {"theta1": 0.55, "theta2": 0.6, "entry_z": 2.0, "exit_z": 0.5, "max_hold_bars": 40,
          "leverage_scale": 1.0, "halted": False, "flatten": False, "control": "none"}  # fmt: skip
LEGS = {"EUR_GBP": ("EUR/USD", "GBP/USD"), "XAU_XAG": ("XAU/USD", "XAG/USD"),
        "BTC_ETH": ("BTC/USD", "ETH/USD")}  # fmt: skip
T0 = datetime(2025, 1, 6, 9, tzinfo=UTC)


def signal(
    pair_id: str = "EUR_GBP", bar: int = 0, action: str = "entry", side: int = 1,
    prices: tuple[float, float] = (1.10, 1.30), units: tuple[float, float] = (10_000, 8_000),
    version: str = VERSION, risk: float = 0.2, prob: float | None = 0.7, z: float = -2.5,
    beta: float = 0.9, reason: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One signal payload of ``pair_id`` at hourly bar ``bar`` after T0."""
    a, b = LEGS[pair_id]
    trading = action != "hold"
    legs = []
    for sym, px, u, leg_side in ((a, prices[0], units[0], side), (b, prices[1], units[1], -side)):
        legs.append({
            "symbol": sym, "side": "BUY" if leg_side > 0 and trading else
            "SELL" if leg_side < 0 and trading else "FLAT",
            "beta_weight": 1.0, "units": float(u) if trading else 0.0,
            "notional_usd": round(u * px, 6) if trading else 0.0,
            "est_cost_usd": round(u * px * 1.5e-4, 6) if trading else 0.0,
        })  # fmt: skip
    bar_ns = int((T0 + timedelta(hours=bar)).timestamp()) * 10**9
    why = reason or {"entry": "gates_passed", "exit": "exit_z", "hold": "no_signal"}[action]
    return build_signal(
        pair_id=pair_id, bar_ts_ns=bar_ns - 3600 * 10**9, bar_seconds=3600, valid_seconds=60,
        model_version=version, legs=legs, z=z, beta=beta,
        return_prob=float("nan") if prob is None else prob, risk_score=risk,
        position_scale=1.0, risk_flag=int(risk >= POLICY["theta2"]), action=action,
        side=side if trading else 0, reason=why, worker="w0", core_policy=POLICY,
        params_sha256="0" * 64,
    )  # fmt: skip


def store(engine: Engine, *signals: dict[str, Any]) -> None:
    """Write the signals to core.signals_live, as serving's aggregate() does."""
    rows = [{
        "signal_id": s["id"], "ts": datetime.fromisoformat(s["timestamp"].replace("Z", "+00:00")),
        "pair_id": s["pair_id"], "model_version": s["model_version"],
        "action": s["metadata"]["action"], "side": s["metadata"]["side"],
        "return_prob": s["return_prob"], "risk_score": s["risk_score"],
        "position_scale": s["position_scale"], "theta1": s["theta1"], "theta2": s["theta2"],
        "payload": s,
    } for s in signals]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(signals_live), rows)


def fill_doc(
    sig: dict[str, Any], *, fill_id: str = "EA-1", delay_s: float = 2.0,
    prices: tuple[float, float] | None = None, fee: float = 0.5,
) -> dict[str, Any]:  # fmt: skip
    """A well-formed result.json answering ``sig`` (at its own prices unless given)."""
    at = datetime.fromisoformat(sig["timestamp"].replace("Z", "+00:00")) + timedelta(
        seconds=delay_s
    )
    legs = []
    for i, g in enumerate(sig["legs"]):
        px = prices[i] if prices else g["notional_usd"] / g["units"]
        legs.append({"symbol": g["symbol"], "side": g["side"], "qty": g["units"], "price": px,
                     "fee_usd": fee})  # fmt: skip
    return {
        "schema": "mlcore.fill.v1", "fill_id": fill_id, "signal_id": sig["id"],
        "pair_id": sig["pair_id"], "model_version": sig["model_version"],
        "action": sig["metadata"]["action"], "side": sig["metadata"]["side"],
        "filled_at": at.isoformat().replace("+00:00", "Z"), "legs": legs,
    }  # fmt: skip


def register_version(cfg: Any, url: str, name: str = VERSION) -> Any:
    """A registered version with a decision.json (the dev config's) in the models folder."""
    import hashlib
    import json

    from mlcore.execution import decision_record, record_bytes
    from mlcore.registry import open_registry
    from tests.conftest import make_version

    folder = make_version(cfg.paths.models, name)
    body = record_bytes(decision_record(cfg, "1h", list(cfg.universe.pairs)))
    (folder / "decision.json").write_bytes(body)
    sums = json.loads((folder / "checksums.json").read_text())
    sums["decision.json"] = hashlib.sha256(body).hexdigest()
    (folder / "checksums.json").write_text(json.dumps(sums))
    return open_registry(url).register(folder, actor="test", notes="feedback test version")
