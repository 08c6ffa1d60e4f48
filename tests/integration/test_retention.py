"""Retention applied for real: ingested months past their window go, a registered version's
lineage stays, the catalog follows, signals move live → history → the Parquet archive, on the
embedded registry and on PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, insert, select

from mlcore.config import AppConfig
from mlcore.data import Catalog, FetchResult, PartitionStore, build_catalog, ingest
from mlcore.data._retention import first_kept_month, prune_by_age, prune_feature_months
from mlcore.flows import apply_retention, signals_archive_dir
from mlcore.registry import (
    Registry,
    make_engine,
    notifications,
    registry_for,
    signals_history,
    signals_live,
)
from tests.conftest import postgres_url

NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)
SYM = "ETH/USD"


def _bars(start: str, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    close = 2000 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    return pd.DataFrame({
        "ts": pd.date_range(start, periods=n, freq="h", tz="UTC"), "open": open_,
        "high": np.maximum(open_, close) * 1.0005, "low": np.minimum(open_, close) * 0.9995,
        "close": close, "volume": 5.0,
    })  # fmt: skip


def _ingest_2020_01_to_2023_02(cfg: AppConfig) -> None:
    bars = _bars("2020-01-01", 24 * 1155)  # to 2023-02-28
    assert str(bars["ts"].iloc[-1])[:7] == "2023-02"
    ingest(cfg, FetchResult(bars=bars, source="t", rows_read=len(bars)), SYM, "1h")
    build_catalog(cfg)


def _version(root: Path, name: str, months: list[str]) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    index = {"partitions": [{"symbol": SYM, "month": m, "data_hash": "x"} for m in months]}
    files = {
        "ai1.lgbm.txt": b"tree\n", "ai2.lgbm.txt": b"tree\n", "ai3.lgbm.txt": b"tree\n",
        "params.yaml": b"timeframe: 1h\nseed: 7\n", "feature_schema.json": b"{}",
        "metrics.json": json.dumps({"ai1": {"oos_raw": {"auc": 0.61}}}).encode(),
        "run.json": json.dumps({"code_hash": "abc", "data_hash": "d" * 64, "seed": 7}).encode(),
        "dataset_index_filtered.json": json.dumps(index).encode(),
    }  # fmt: skip
    for fname, body in files.items():
        (folder / fname).write_bytes(body)
    sums = {f: hashlib.sha256(b).hexdigest() for f, b in files.items()}
    (folder / "checksums.json").write_text(json.dumps(sums))
    return folder


def _signal(i: int, ts: datetime) -> dict[str, object]:
    return {"signal_id": f"s{i:04d}", "ts": ts, "pair_id": "XAU_XAG", "model_version": "v1",
            "action": "hold", "side": 0, "return_prob": 0.5, "risk_score": 0.2,
            "position_scale": 1.0, "theta1": 0.7, "theta2": 0.3, "payload": {"i": i}}  # fmt: skip


def test_months_past_the_window_go_and_the_lineage_stays(cfg: AppConfig, tmp_path: Path) -> None:
    _ingest_2020_01_to_2023_02(cfg)  # a 36-month window ending 2023-02 starts 2020-03
    reg = registry_for(cfg)
    reg.register(_version(tmp_path / "models", "20250101_0000_abc1234", ["2020-02"]),
                 actor="test", notes="trained on February")  # fmt: skip
    canon = PartitionStore(cfg.paths.canonical)
    assert len(canon.months("1h", SYM)) == 38

    dry = apply_retention(cfg, reg, now=NOW, dry_run=True)
    assert dry.counts() == {"raw": 1, "canonical": 1}
    assert canon.months("1h", SYM)[0] == "2020-01"  # all there

    done = apply_retention(cfg, reg, now=NOW)
    assert done.counts() == {"raw": 1, "canonical": 1}
    # 2020-01 went; 2020-02 is older still than some kept months but the version's lineage.
    kept = canon.months("1h", SYM)
    assert kept[:2] == ["2020-02", "2020-03"] and kept[-1] == "2023-02" and len(kept) == 37
    assert PartitionStore(cfg.paths.raw).months("1h", SYM) == kept
    cat = Catalog(cfg)
    assert sorted(p["month"] for p in cat.partitions("1h", SYM) + cat.excluded("1h", SYM)) == kept
    rows = reg.actions(action="retention.apply")
    assert len(rows) == 1 and rows[0].after["pruned"] == {"raw": 1, "canonical": 1}
    # Applied again: nothing more goes, nothing is recorded.
    assert apply_retention(cfg, reg, now=NOW).counts() == {}
    assert len(reg.actions(action="retention.apply")) == 1


def test_a_version_with_unreadable_lineage_keeps_raw_and_canonical(
    cfg: AppConfig, tmp_path: Path
) -> None:
    _ingest_2020_01_to_2023_02(cfg)
    reg = registry_for(cfg)
    folder = _version(tmp_path / "models", "20250101_0000_abc1234", ["2020-02"])
    reg.register(folder, actor="test", notes="n")
    (folder / "dataset_index_filtered.json").unlink()  # lost, never pruned
    report = apply_retention(cfg, reg, now=NOW)
    assert report.lineage_unknown == ["20250101_0000_abc1234"]
    assert "canonical" not in report.counts() and "raw" not in report.counts()
    assert len(PartitionStore(cfg.paths.canonical).months("1h", SYM)) == 38


def test_feature_months_in_a_current_build_stay(tmp_path: Path) -> None:
    root = tmp_path / "features"
    for m in ("2019-01", "2019-02", "2026-11"):
        (root / "1h" / "XAU_XAG" / m).mkdir(parents=True)
    (root / "1h" / "XAU_XAG" / "h.index.json").write_text(
        json.dumps({"feature_hash": "h", "months": {"2019-02": "k", "2026-11": "k"}})
    )
    (root / "1h" / "EUR_GBP" / "2019-01").mkdir(parents=True)
    (root / "1h" / "EUR_GBP" / "h.index.json").write_text("{not json")
    gone = prune_feature_months(root, 24, dry_run=False)  # the window ends 2026-11
    assert [Path(p.path).name for p in gone] == ["2019-01"]
    assert sorted(p.name for p in (root / "1h" / "XAU_XAG").iterdir() if p.is_dir()) == [
        "2019-02", "2026-11"]  # fmt: skip
    assert (root / "1h" / "EUR_GBP" / "2019-01").is_dir()  # unreadable index: all kept


def test_first_kept_month_and_age_rule(tmp_path: Path) -> None:
    assert first_kept_month("2026-12", 36) == "2024-01"
    assert first_kept_month("2026-12", 1) == "2026-12"
    assert first_kept_month("2024-02", 13) == "2023-02"
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text("{}")
    new.write_text("{}")
    past = (NOW - timedelta(days=91)).timestamp()
    os.utime(old, (past, past))
    os.utime(new, (NOW.timestamp(), NOW.timestamp()))
    gone = prune_by_age(tmp_path, "ingest_reports", timedelta(days=90), NOW, dry_run=False)
    assert [Path(p.path).name for p in gone] == ["old.json"] and new.exists()


@pytest.fixture(params=["sqlite", "postgres"])
def registry(request: pytest.FixtureRequest, cfg: AppConfig) -> Registry:
    if request.param == "sqlite":
        return registry_for(cfg)
    url = request.getfixturevalue("pg_url")
    return Registry(make_engine(url))


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from postgres_url()


def test_signals_move_to_history_then_to_the_archive(cfg: AppConfig, registry: Registry) -> None:
    from mlcore.registry import upgrade

    upgrade(registry.engine)
    times = [NOW - timedelta(days=d) for d in (0.2, 3, 400, 2000, 2001)]
    with registry.engine.begin() as conn:
        conn.execute(insert(signals_live), [_signal(i, t) for i, t in enumerate(times)])
    report = apply_retention(cfg, registry, now=NOW)
    # live_days 1: four move to history; signals_history_days 1825: two of them are archived.
    assert report.signals_to_history == 4
    assert report.signals_exported == report.signals_deleted == 2
    with registry.engine.connect() as conn:
        live = conn.execute(select(signals_live.c.signal_id)).scalars().all()
        hist = conn.execute(select(func.count()).select_from(signals_history)).scalar_one()
    assert live == ["s0000"] and hist == 2
    files = sorted(signals_archive_dir(cfg).glob("signals_*.parquet"))
    archived = pd.concat([pd.read_parquet(f) for f in files])
    assert sorted(archived["signal_id"]) == ["s0003", "s0004"]
    assert json.loads(archived.set_index("signal_id").loc["s0003", "payload"]) == {"i": 3}
    # A re-run (as after a kill between write and delete) exports nothing twice.
    with registry.engine.begin() as conn:
        conn.execute(insert(signals_history), [_signal(3, times[3])])
    apply_retention(cfg, registry, now=NOW)
    again = pd.concat([pd.read_parquet(f) for f in files])
    assert sorted(again["signal_id"]) == ["s0003", "s0004"]


def test_old_closed_notifications_go_pending_ones_stay(cfg: AppConfig, registry: Registry) -> None:
    from mlcore.registry import upgrade

    upgrade(registry.engine)
    old, new = NOW - timedelta(days=91), NOW - timedelta(days=89)
    rows = [("a", "delivered", old), ("b", "failed", old), ("c", "pending", old),
            ("d", "delivered", new)]  # fmt: skip
    with registry.engine.begin() as conn:
        conn.execute(insert(notifications), [{
            "notification_id": f"n-{name}", "alert_id": f"alert-{name}", "target": "slack",
            "channel": "#ml-ops", "dedup_key": name, "created_at": at, "status": status,
            "attempts": 1, "next_attempt_at": at, "payload": {},
        } for name, status, at in rows])  # fmt: skip
    assert apply_retention(cfg, registry, now=NOW, dry_run=True).notifications_deleted == 2
    assert apply_retention(cfg, registry, now=NOW).notifications_deleted == 2
    with registry.engine.connect() as conn:
        left = conn.execute(select(notifications.c.notification_id)).scalars().all()
    assert sorted(left) == ["n-c", "n-d"]  # a pending one is never pruned


def test_old_refused_bars_go(cfg: AppConfig, registry: Registry) -> None:
    from mlcore.registry import bars_refused, upgrade

    upgrade(registry.engine)
    days = cfg.data_retention.refused_bars_days
    ages = {"old": days + 1, "kept": days - 1}
    with registry.engine.begin() as conn:
        conn.execute(insert(bars_refused), [{
            "message_id": name, "worker_id": "w0", "source": "file:bars.jsonl",
            "position": "1", "reason": "bad_print", "detail": "x",
            "refused_at": NOW - timedelta(days=age), "symbol": None, "bar_ts": None,
        } for name, age in ages.items()])  # fmt: skip
    assert apply_retention(cfg, registry, now=NOW, dry_run=True).refused_bars_deleted == 1
    assert apply_retention(cfg, registry, now=NOW).refused_bars_deleted == 1
    with registry.engine.connect() as conn:
        left = conn.execute(select(bars_refused.c.message_id)).scalars().all()
    assert left == ["kept"]
