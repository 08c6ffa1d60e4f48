"""Property tests: corrupted text rows through parse_table and ingest into a fresh archive.

Whatever the corruption, nothing invalid reaches a canonical partition, nothing valid is lost,
every reject names a corrupted row, re-ingesting writes nothing, and ``__meta.json`` agrees
with the bars it describes. Plus the bad-print / real-jump rule of ``classify_moves``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, event, given
from hypothesis import strategies as st

from mlcore.config import AppConfig, DQThresholds, load_config
from mlcore.data import FetchResult, PartitionStore, bars_hash, classify_moves, ingest, parse_table
from tests.conftest import CONFIG_ROOT

SYMBOL = "BTC/USD"  # calendar "crypto": every hour is expected
TIMEFRAME = "1h"
HOUR_NS = 3600 * 1_000_000_000
PRICES = ("open", "high", "low", "close")
VALUES = (*PRICES, "volume")
FLAGS = {"ok", "filled", "outlier", "spike", "conflict"}
TS_FORMAT = "%Y-%m-%d %H:%M:%S"
EPOCH = pd.Timestamp("2023-01-01", tz="UTC")

# Corruptions that make a row invalid (each must produce exactly one reject) ...
INVALID = (
    "ts_garbage",
    "ts_empty",
    "ts_offgrid",
    "nan",
    "inf",
    "empty",
    "negative",
    "zero",
    "letters",
    "high_lt_low",
    "close_above_high",
    "neg_volume",
)
# ... corruptions that add a second, valid delivery of a row ...
REPEATS = ("duplicate", "conflict")
# ... and a valid row whose close is ~50 sigma off the walk for one bar (a bad print).
BAD_PRINT = "bad_print"


@contextmanager
def fresh_config() -> Iterator[AppConfig]:
    """The dev configuration with its archive in a new temporary folder."""
    with tempfile.TemporaryDirectory(prefix="mlcore-prop-") as tmp:
        old = os.environ.get("ARCHIVE_PATH")
        os.environ["ARCHIVE_PATH"] = str(Path(tmp) / "archive")
        try:
            cfg = load_config(CONFIG_ROOT, "dev")
        finally:
            if old is None:
                os.environ.pop("ARCHIVE_PATH", None)
            else:
                os.environ["ARCHIVE_PATH"] = old
        assert cfg.paths.archive == (Path(tmp) / "archive").resolve()
        yield cfg


# --- the generated input ------------------------------------------------------------------


@dataclass
class Case:
    """A text OHLCV frame plus what each of its rows is."""

    frame: pd.DataFrame
    # Per final row (0-based position): "clean", "invalid", "duplicate" or "conflict".
    kinds: list[str]
    invalid_rows: dict[int, tuple[str, str]]  # 1-based row -> (field, rule) of its reject
    # Deliveries of each valid timestamp, in frame order (as floats).
    deliveries: dict[pd.Timestamp, list[tuple[float, ...]]] = field(default_factory=dict)
    n_duplicates: int = 0
    n_conflicts: int = 0

    def __repr__(self) -> str:
        changed = {i + 1: k for i, k in enumerate(self.kinds) if k != "clean"}
        return (
            f"Case(rows={len(self.kinds)}, first_ts={self.frame['timestamp'].iloc[0]!r}, "
            f"rejects={self.invalid_rows}, non_clean_rows={changed})"
        )


def _text(cents: int) -> str:
    return f"{cents / 100:.2f}"


def _clean_rows(
    n: int, start: pd.Timestamp, seed: int, jump_at: int | None
) -> list[dict[str, str]]:
    """A random walk around 30,000.00 (sigma 0.1% a bar) in cents, rendered as text rows.

    With ``jump_at`` the level moves up by 10% (~100 sigma) in that bar and stays there.
    """
    rng = np.random.default_rng(seed)
    steps = np.rint(rng.normal(0.0, 3000.0, n)).astype(np.int64)
    if jump_at is not None:
        steps[jump_at] += 300_000
    close = 3_000_000 + np.cumsum(steps)
    open_ = np.concatenate([[close[0] - 500], close[:-1]])
    high = np.maximum(open_, close) + rng.integers(0, 1500, n)
    low = np.minimum(open_, close) - rng.integers(0, 1500, n)
    volume = rng.integers(0, 10**6, n)
    stamps = pd.date_range(start, periods=n, freq="h")
    return [
        {
            "timestamp": stamps[i].strftime(TS_FORMAT),
            "open": _text(int(open_[i])),
            "high": _text(int(high[i])),
            "low": _text(int(low[i])),
            "close": _text(int(close[i])),
            "volume": _text(int(volume[i])),
        }
        for i in range(n)
    ]


def _corrupt(row: dict[str, str], kind: str, col: str) -> tuple[dict[str, str], str, str]:
    """``row`` broken by ``kind`` (``col`` picks the price), and the (field, rule) it breaks."""
    out = dict(row)
    if kind in ("ts_garbage", "ts_empty"):
        out["timestamp"] = "not-a-time" if kind == "ts_garbage" else ""
        return out, "ts", "unparsable timestamp"
    if kind == "ts_offgrid":
        ts = pd.Timestamp(row["timestamp"]) + pd.Timedelta(minutes=17)
        out["timestamp"] = ts.strftime(TS_FORMAT)
        return out, "ts", "timestamp off the 1h grid"
    if kind in ("nan", "inf", "empty", "letters"):
        bad = {
            "nan": "NaN",
            "inf": "inf",
            "empty": "",
            "letters": row[col][:2] + "x" + row[col][2:],
        }
        out[col] = bad[kind]
        return out, col, "not a finite number"
    if kind in ("negative", "zero"):
        out[col] = "-" + row[col] if kind == "negative" else "0"
        return out, col, "non-positive price"
    if kind == "high_lt_low":
        out["high"] = f"{float(row['low']) - 0.01:.2f}"
        return out, "high", "high < low"
    if kind == "close_above_high":
        out["close"] = f"{float(row['high']) + 0.01:.2f}"
        return out, "close", "close outside [low, high]"
    assert kind == "neg_volume", kind
    out["volume"] = "-5"
    return out, "volume", "volume negative or not finite"


def _conflicting(row: dict[str, str]) -> dict[str, str]:
    """A second, valid delivery of ``row`` with different values."""
    out = dict(row)
    mid = round((float(row["high"]) + float(row["low"])) * 50)
    close = mid if _text(mid) != row["close"] else mid + 1
    out["close"] = _text(min(close, round(float(row["high"]) * 100)))
    out["high"] = _text(round(float(row["high"]) * 100) + 1)  # always differs
    out["volume"] = _text(round(float(row["volume"]) * 100) + 100)
    return out


def _bad_print(row: dict[str, str], up: bool) -> dict[str, str]:
    """``row`` with its close 5% (~50 sigma) off, high/low widened so the row stays valid."""
    out = dict(row)
    close = round(float(row["close"]) * 100 * (1.05 if up else 0.95))
    out["close"] = _text(close)
    out["high"] = _text(max(close, round(float(row["high"]) * 100)))
    out["low"] = _text(min(close, round(float(row["low"]) * 100)))
    return out


def _values(row: dict[str, str]) -> tuple[float, ...]:
    return tuple(float(row[c]) for c in VALUES)


Plan = dict[int, tuple[str, str]]  # row position -> (corruption kind, price column)


def _bad_prints(todo: Plan, n: int) -> dict[int, bool]:
    """Rows to print off the walk (True: up): one bar, or (column "close") a 2-bar plateau."""
    out: dict[int, bool] = {}
    for pos, (kind, col) in sorted(todo.items()):
        if kind == BAD_PRINT:
            out[pos] = col in ("open", "close")
            if col == "close" and pos + 1 < n and pos + 1 not in todo:
                out[pos + 1] = out[pos]
    return out


def _build(rows: list[dict[str, str]], todo: Plan) -> Case:
    """Apply the plan to the clean rows; repeats go right after the row they repeat."""
    bad_prints = _bad_prints(todo, len(rows))
    final: list[dict[str, str]] = []
    case = Case(frame=pd.DataFrame(), kinds=[], invalid_rows={})
    for pos, row in enumerate(rows):
        kind, col = todo.get(pos, ("clean", ""))
        if kind in INVALID:
            broken, field, rule = _corrupt(row, kind, col)
            final.append(broken)
            case.kinds.append("invalid")
            case.invalid_rows[len(final)] = (field, rule)
            continue
        good = _bad_print(row, up=bad_prints[pos]) if pos in bad_prints else row
        final.append(good)
        case.kinds.append("clean")
        ts = pd.Timestamp(good["timestamp"], tz="UTC")
        case.deliveries[ts] = [_values(good)]
        if kind in REPEATS:
            again = dict(good) if kind == "duplicate" else _conflicting(good)
            final.append(again)
            case.kinds.append(kind)
            case.deliveries[ts].append(_values(again))
            case.n_duplicates += kind == "duplicate"
            case.n_conflicts += kind == "conflict"
    case.frame = pd.DataFrame(final, columns=list(final[0]))
    return case


@st.composite
def cases(draw: st.DrawFn) -> Case:
    n = draw(st.integers(150, 360))
    start = EPOCH + pd.Timedelta(hours=draw(st.integers(0, 24 * 730)))
    jump_at = draw(st.none() | st.integers(60, n - 2))
    rows = _clean_rows(n, start, draw(st.integers(0, 2**32 - 1)), jump_at)
    plan = draw(
        st.lists(
            st.tuples(
                st.integers(0, n - 1),
                st.sampled_from((*INVALID, *REPEATS, BAD_PRINT)),
                st.sampled_from(PRICES),
            ),
            max_size=30,
            unique_by=lambda t: t[0],
        )
    )
    todo: Plan = {pos: (kind, col) for pos, kind, col in plan}
    # Sometimes a block of consecutive broken rows: a gap around the max_fill_bars limit.
    block = draw(
        st.none() | st.tuples(st.integers(0, n - 1), st.integers(1, 5), st.sampled_from(INVALID))
    )
    if block is not None:
        first, length, kind = block
        for pos in range(first, min(n, first + length)):
            todo[pos] = (kind, "close")
    return _build(rows, todo)


# --- reading the archive back -------------------------------------------------------------


@dataclass
class Partition:
    month: str
    bars: pd.DataFrame
    meta: dict[str, Any]
    excluded: pd.DataFrame | None
    quarantined: bool


def _partitions(cfg: AppConfig) -> list[Partition]:
    store = PartitionStore(cfg.paths.canonical)
    out = []
    for month in store.months(TIMEFRAME, SYMBOL):
        bars = store.read_file(TIMEFRAME, SYMBOL, month, "bars.parquet")
        meta = store.read_json(TIMEFRAME, SYMBOL, month, "__meta.json")
        assert bars is not None and meta is not None, month
        out.append(
            Partition(
                month=month,
                bars=bars,
                meta=meta,
                excluded=store.read_file(TIMEFRAME, SYMBOL, month, "__excluded.parquet"),
                quarantined=(
                    store.partition_dir(TIMEFRAME, SYMBOL, month) / "__quarantine.json"
                ).exists(),
            )
        )
    return out


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        # Reports and the Prometheus counters (`metrics/`) record each run: not data.
        if p.is_file() and not {"reports", "metrics"} & set(p.relative_to(root).parts)
    }


def _row_values(row: pd.Series) -> tuple[float, ...]:
    return tuple(float(row[c]) for c in VALUES)


def _excluded_values(part: Partition, ts: pd.Timestamp, reason: str) -> list[tuple[float, ...]]:
    exc = part.excluded
    if exc is None:
        return []
    hit = exc[(exc["ts"] == ts) & (exc["reason"] == reason)]
    return [_row_values(r) for _, r in hit.iterrows()]


def _longest_run(mask: pd.Series) -> int:
    best = cur = 0
    for m in mask:
        cur = cur + 1 if m else 0
        best = max(best, cur)
    return best


def _missing_runs(hours: list[pd.Timestamp]) -> list[list[pd.Timestamp]]:
    runs: list[list[pd.Timestamp]] = []
    for t in sorted(hours):
        if runs and t - runs[-1][-1] == pd.Timedelta(hours=1):
            runs[-1].append(t)
        else:
            runs.append([t])
    return runs


# --- invariants ---------------------------------------------------------------------------


def _check_nothing_invalid(bars: pd.DataFrame) -> None:
    """(a) Every stored bar is a valid, unique, sorted, on-grid UTC bar with a known flag."""
    assert str(bars["ts"].dt.tz) == "UTC"
    for c in VALUES:
        assert np.isfinite(bars[c].to_numpy(dtype="float64")).all(), c
    for c in PRICES:
        assert (bars[c] > 0).all(), c
    assert (bars["high"] >= bars["low"]).all()
    for c in ("open", "close"):
        assert bars[c].between(bars["low"], bars["high"]).all(), c
    assert (bars["volume"] >= 0).all()
    assert bars["ts"].is_unique
    assert bars["ts"].is_monotonic_increasing
    ns = pd.DatetimeIndex(bars["ts"]).as_unit("ns").asi8
    assert (ns % HOUR_NS == 0).all()
    assert set(bars["quality_flag"].astype(str)) <= FLAGS
    assert (bars["symbol"] == SYMBOL).all() and (bars["timeframe"] == TIMEFRAME).all()


def _check_nothing_lost(case: Case, bars: pd.DataFrame, parts: dict[str, Partition]) -> None:
    """(b) Every valid input timestamp is stored with its (last delivered) values."""
    by_ts = bars.set_index("ts")
    for ts, versions in case.deliveries.items():
        assert ts in by_ts.index, f"valid row at {ts} lost"
        row = by_ts.loc[ts]
        flag = str(row["quality_flag"])
        kept = versions[-1]
        part = parts[ts.strftime("%Y-%m")]
        distinct = list(dict.fromkeys(versions))
        if len(distinct) > 1:
            assert flag in {"conflict", "spike", "outlier"}, (ts, flag)
            for old in distinct[:-1]:
                assert old in _excluded_values(part, ts, "conflict"), (ts, old)
        else:
            assert flag in {"ok", "spike", "outlier"}, (ts, flag)
        if flag == "outlier":
            assert kept in _excluded_values(part, ts, "outlier"), ts
        else:
            assert _row_values(row) == kept, (ts, flag)


def _check_rejects(case: Case, result: FetchResult) -> None:
    """(c) One reject per corrupted row, each naming a corrupted row, its field and rule."""
    rows = [r.row for r in result.rejects]
    assert len(rows) == len(case.invalid_rows)
    assert set(rows) == set(case.invalid_rows)
    for r in result.rejects:
        assert case.kinds[r.row - 1] == "invalid", r.describe()
        assert (r.field, r.rule) == case.invalid_rows[r.row], r.describe()
        assert r.origin == "prop.csv"
    assert len(result.bars) == len(case.kinds) - len(case.invalid_rows)


def _check_gaps_and_meta(
    case: Case, cfg: AppConfig, bars: pd.DataFrame, parts: list[Partition]
) -> None:
    """(e) Meta counts agree with bars.parquet; gaps filled or quarantined as the policy says."""
    valid = sorted(case.deliveries)
    hours = pd.date_range(valid[0], valid[-1], freq="h")
    missing = [t for t in hours if t not in case.deliveries]
    max_fill = cfg.pipeline.dq_thresholds.max_fill_bars
    runs = _missing_runs(missing)
    filled = {t for run in runs if len(run) <= max_fill for t in run}
    unfilled = {t for run in runs if len(run) > max_fill for t in run}
    flags = bars.set_index("ts")["quality_flag"].astype(str)
    assert set(flags.index) == set(valid) | filled
    assert {t for t, f in flags.items() if f == "filled"} == filled
    touched = {r[0].strftime("%Y-%m") for r in runs if len(r) > max_fill} | {
        r[-1].strftime("%Y-%m") for r in runs if len(r) > max_fill
    }
    for part in parts:
        f = part.bars["quality_flag"].astype(str)
        counts = part.meta["counts"]
        assert (part.bars["ts"].dt.strftime("%Y-%m") == part.month).all()
        assert counts["bars_written"] == len(part.bars)
        assert counts["filled_bars"] == int((f == "filled").sum())
        assert counts["outlier_bars"] == int((f == "outlier").sum())
        assert counts["spike_flags"] == int((f == "spike").sum())
        assert counts["conflict_bars"] == int((f == "conflict").sum())
        assert counts["off_calendar_bars"] == 0
        assert counts["missing_gaps"] == sum(t.strftime("%Y-%m") == part.month for t in missing)
        assert part.meta["data_hash"] == bars_hash(part.bars)
        assert part.meta["first_ts"] == part.bars["ts"].iloc[0].isoformat()
        assert part.meta["last_ts"] == part.bars["ts"].iloc[-1].isoformat()
        assert (part.meta["symbol"], part.meta["timeframe"]) == (SYMBOL, TIMEFRAME)
        assert part.meta["quarantined"] is part.quarantined
        excluded_hash = None if part.excluded is None else bars_hash(part.excluded, ("reason",))
        assert part.meta["excluded_hash"] == excluded_hash
        assert part.quarantined == (part.month in touched)
        assert not any(t.strftime("%Y-%m") == part.month for t in unfilled) or part.quarantined


@given(case=cases())
def test_ingest_of_corrupted_text_rows_keeps_every_invariant(case: Case) -> None:
    result = parse_table(case.frame, origin="prop.csv", timeframe=TIMEFRAME)
    event(
        f"rejects: {min(len(case.invalid_rows), 10)}{'+' if len(case.invalid_rows) >= 10 else ''}"
    )
    _check_rejects(case, result)
    with fresh_config() as cfg:
        report = ingest(cfg, result, SYMBOL, TIMEFRAME)
        assert report.rows_rejected == len(case.invalid_rows)
        assert report.duplicates_dropped == case.n_duplicates
        assert report.conflicting_rows == case.n_conflicts
        assert report.canonical_partitions_written

        parts = _partitions(cfg)
        event(f"months: {len(parts)}")
        event(f"quarantined: {any(p.quarantined for p in parts)}")
        for flag, count in report.flags.items():
            event(f"{flag}: {'yes' if count else 'no'}")
        assert [p.month for p in parts] == report.canonical_partitions_written
        bars = pd.concat([p.bars for p in parts], ignore_index=True)
        event(f"max outlier run: {_longest_run(bars['quality_flag'].astype(str) == 'outlier')}")
        _check_nothing_invalid(bars)
        _check_nothing_lost(case, bars, {p.month: p for p in parts})
        _check_gaps_and_meta(case, cfg, bars, parts)
        stored = bars["quality_flag"].astype(str)
        assert report.flags == {k: int((stored == k).sum()) for k in sorted(FLAGS)}

        # (d) Re-ingesting the same rows writes nothing and changes no byte.
        before = _snapshot(cfg.paths.archive)
        again = ingest(cfg, result, SYMBOL, TIMEFRAME)
        assert again.canonical_partitions_written == []
        assert again.raw_partitions_written == []
        assert again.canonical_partitions_unchanged == len(parts)
        assert again.new_bars == 0 and again.updated_bars == 0
        after = _snapshot(cfg.paths.archive)
        assert after.keys() == before.keys()
        metas = [k for k in before if k.endswith("__meta.json")]
        assert len(metas) == len(parts)
        for key in before:
            assert after[key] == before[key], key


# --- classify_moves ---------------------------------------------------------------------------


def _walk(seed: int, n: int, sigma: float, level: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return level * np.exp(np.cumsum(rng.normal(0.0, sigma, n)))


def _thresholds(cfg: AppConfig) -> DQThresholds:
    th = cfg.pipeline.dq_thresholds
    assert th.outlier_sigma < 25  # the planted moves below must be far beyond the threshold
    return th


WALK = {
    "seed": st.integers(0, 2**32 - 1),
    "n": st.integers(200, 1500),
    "sigma": st.floats(1e-4, 5e-2),
    "level": st.floats(0.01, 1e5),
}


@given(**WALK)
def test_classify_moves_rarely_flags_a_gaussian_random_walk(
    cfg: AppConfig, seed: int, n: int, sigma: float, level: float
) -> None:
    th = _thresholds(cfg)
    outlier, spike = classify_moves(_walk(seed, n, sigma, level), th)
    assert outlier.shape == spike.shape == (n,)
    assert not (outlier & spike).any()
    assert outlier.mean() <= th.outlier_rate
    assert spike.mean() <= th.outlier_rate


def _planted_at(th: DQThresholds, n: int, where: float, bars_after: int) -> int:
    """A bar with at least sigma_min_bars moves before it and ``bars_after`` bars after it."""
    lo = th.sigma_min_bars + 1
    return lo + int(where * (n - 1 - bars_after - lo))


PLANT = {"k": st.floats(25.0, 60.0), "up": st.booleans(), "where": st.floats(0.0, 1.0)}


@given(**WALK, **PLANT, plateau=st.integers(1, 2))
def test_classify_moves_flags_a_retraced_bad_print_outlier(
    cfg: AppConfig,
    seed: int,
    n: int,
    sigma: float,
    level: float,
    k: float,
    up: bool,
    where: float,
    plateau: int,
) -> None:
    th = _thresholds(cfg)
    length = min(plateau, max(1, th.max_fill_bars))
    close = _walk(seed, n, sigma, level)
    t = _planted_at(th, n, where, bars_after=length)
    # `length` bars off by k sigma, then the price is back on the walk.
    close[t : t + length] *= np.exp((1 if up else -1) * k * sigma)
    outlier, spike = classify_moves(close, th)
    assert np.flatnonzero(outlier).tolist() == list(range(t, t + length))
    assert not spike.any()


@given(**WALK, **PLANT)
def test_classify_moves_flags_a_held_jump_spike(
    cfg: AppConfig,
    seed: int,
    n: int,
    sigma: float,
    level: float,
    k: float,
    up: bool,
    where: float,
) -> None:
    th = _thresholds(cfg)
    close = _walk(seed, n, sigma, level)
    t = _planted_at(th, n, where, bars_after=1)
    close[t:] *= np.exp((1 if up else -1) * k * sigma)  # the level moves and stays there
    # A move of tenfold or more is never a price (see the test below), however long it holds.
    assume(abs(np.log(close[t] / close[t - 1])) < np.log(10.0))
    outlier, spike = classify_moves(close, th)
    assert np.flatnonzero(spike).tolist() == [t]
    assert not outlier.any()


@pytest.mark.parametrize(
    ("where", "count", "expected"),
    [("middle", 3, range(100, 103)), ("end", 1, range(199, 200)), ("end", 5, range(195, 200)),
     ("start", 1, range(0, 1))],
)  # fmt: skip
def test_a_tenfold_move_is_never_a_price_however_long_it_lasts(
    cfg: AppConfig, where: str, count: int, expected: range
) -> None:
    """Review: three closes of 1e-300 mid-file were kept as ``spike`` and ``ok`` (the month
    included in the catalog), and one as a file's last bar as a ``spike``: a worker warmed from
    that last close refused every real bar after it as a tenfold bad print. The live guard's
    rule (MAX_JUMP_FACTOR) now holds in ingest: such bars are outliers, refilled."""
    th = _thresholds(cfg)
    walk = _walk(7, 200, 0.002, 100.0)
    first = {"middle": 100, "end": 200 - count, "start": 0}[where]
    for factor in (1e-302, 1000.0):  # 1e-300 for 100, and a thousand times it (a unit error)
        close = walk.copy()
        close[first : first + count] *= factor
        outlier, spike = classify_moves(close, th)
        assert np.flatnonzero(outlier).tolist() == list(expected), factor
        assert not spike.any()
