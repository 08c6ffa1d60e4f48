"""What a worker is set up with: each pair's live setup from the policies, and the catalog
history its pairs and symbols are warmed on."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from mlcore.config import TIMEFRAMES, AppConfig, PairSpec
from mlcore.data import Catalog
from mlcore.errors import ConfigError, MlcoreError
from mlcore.execution import checked_theta, leg_costs
from mlcore.features import align_legs, segment_starts
from mlcore.serving._drawdown import DrawdownLimits
from mlcore.serving._pair import Conversion, PairSetupLive
from mlcore.signals import DecisionRules, LegSpec

log = logging.getLogger("mlcore.serving")


def serving_dir(cfg: AppConfig) -> Path:
    """``{archive}/{serving_root}``."""
    return cfg.paths.archive / cfg.serving.serving_root


def policy_files(cfg: AppConfig) -> tuple[str, str]:
    """Where serving_policy.yaml's timeframe is set (the workspace's own file when it has one,
    else the shipped base) and the file a user edits to change it (the workspace's own)."""
    shipped = cfg.base_root / "base" / "serving_policy.yaml"
    if cfg.workspace is None:
        return str(shipped), str(shipped)
    own = cfg.workspace.configs / "serving_policy.yaml"
    try:  # the load already read and checked it
        sets = own.is_file() and "timeframe" in (yaml.safe_load(own.read_text("utf-8")) or {})
    except (OSError, ValueError, yaml.YAMLError):
        sets = False
    return str(own if sets else shipped), str(own)


def serving_at(cfg: AppConfig, timeframe: str | None) -> AppConfig:
    """``cfg`` serving ``timeframe`` (``mlcore serve --timeframe``) instead of
    serving_policy.yaml's, checked as the file's is (a label, execution and
    signal_valid_seconds entry of it): everything the workers derive from the timeframe (bar
    seconds, catalog warm-up, freshness, valid_until, drawdown review, metrics) follows it."""
    if timeframe is None or timeframe == cfg.serving.timeframe:
        return cfg
    if timeframe not in TIMEFRAMES:
        raise ConfigError(
            "CLI_ARGUMENT_INVALID", f"--timeframe {timeframe!r} is not one of {list(TIMEFRAMES)}"
        )
    try:
        cfg.core.labels_at(timeframe)
        cfg.backtest.execution_at(timeframe)
        cfg.serving.valid_seconds_at(timeframe)
    except ConfigError as exc:
        raise ConfigError(exc.code, f"--timeframe {timeframe}: {exc.message}",
                          details=exc.details) from None  # fmt: skip
    serving = cfg.serving.model_copy(update={"timeframe": timeframe})
    return dataclasses.replace(cfg, serving=serving)


def _conversion(cfg: AppConfig, symbol: str) -> Conversion:
    quote = cfg.universe.instruments[symbol].quote_currency
    account = cfg.backtest.account.currency
    if quote == account:
        return Conversion(None, False)
    direct, inverse = f"{quote}/{account}", f"{account}/{quote}"
    if direct in cfg.universe.instruments:
        return Conversion(direct, False)
    if inverse in cfg.universe.instruments:
        return Conversion(inverse, True)
    raise ValueError(
        f"{symbol}: no FX instrument to convert {quote} into {account}: universe.yaml needs "
        f"{direct} or {inverse}"
    )


def pair_setup(
    cfg: AppConfig, pair: PairSpec, theta: tuple[float, float], params_sha256: str
) -> PairSetupLive:
    """A pair's live setup from universe, cost table, core, backtest and serving policies (the
    decision-deciding ones being the model version's, see
    :func:`mlcore.execution.version_config`), ``params_sha256`` naming them; θ
    checked once more (finite, inside [0, 1]; its sources, the registry and the backtest
    record, are held to theta_search_range): a worker never trades on a θ that means nothing."""
    theta = checked_theta(cfg, tuple(theta), "the θ this worker was given", search_range=False)
    seconds = TIMEFRAMES[cfg.serving.timeframe]
    ai1 = cfg.core.labels_at(cfg.serving.timeframe).ai1
    ex = cfg.backtest.execution_at(cfg.serving.timeframe)
    account = cfg.backtest.account
    dd = cfg.drawdown.pair
    rules = DecisionRules(
        theta1=theta[0], theta2=theta[1], entry_z=ai1.entry_z, exit_z=ai1.exit_z,
        max_hold_bars=ex.max_hold_bars, latency_bars=ex.latency_bars,
    )  # fmt: skip
    legs = [
        LegSpec(s, cfg.universe.trading[s], leg_costs(cfg.costs, s, seconds))
        for s in (pair.leg_a, pair.leg_b)
    ]
    return PairSetupLive(
        pair_id=pair.pair_id, leg_a=legs[0], leg_b=legs[1],
        conv_a=_conversion(cfg, pair.leg_a), conv_b=_conversion(cfg, pair.leg_b),
        windows=cfg.features.pair, ai1=ai1, rules=rules,
        capital_usd=account.capital_usd / len(cfg.universe.pairs),
        risk_fraction=account.risk_fraction, bar_seconds=seconds,
        valid_seconds=cfg.serving.valid_seconds_at(cfg.serving.timeframe),
        freshness_ns=int(cfg.serving.freshness_budget_seconds * 1e9),
        fx_stale_ns=account.fx_stale_seconds * 1_000_000_000, costs=cfg.costs,
        params_sha256=params_sha256,
        drawdown=DrawdownLimits(
            dd.warn, dd.halt, dd.flatten, ex.halt_review_bars
        ),
    )  # fmt: skip


def history(cfg: AppConfig, pair: PairSpec, until_ns: int | None) -> tuple[np.ndarray, int]:
    """The pair's aligned catalog bars of its last unbroken segment before ``until_ns`` (n x 6,
    as the batch features saw them) and the last bar's timestamp (-1: none)."""
    tf = cfg.serving.timeframe
    try:
        cat = Catalog(cfg)
        a, b = cat.load_bars(tf, pair.leg_a), cat.load_bars(tf, pair.leg_b)
        joined, _ = align_legs(a, b)
    except (MlcoreError, ValueError, KeyError, FileNotFoundError) as exc:
        # No history to warm on: the pair starts cold (its first bars are refused as warm-up).
        log.warning("%s: no catalog history to warm on (%s)", pair.pair_id, exc)
        return np.empty((0, 6)), -1
    ts = pd.DatetimeIndex(joined["ts"]).as_unit("ns").asi8
    keep = ts < until_ns if until_ns is not None else np.ones(len(ts), dtype=bool)
    joined, ts = joined[keep], ts[keep]
    if not len(ts):
        return np.empty((0, 6)), -1
    months = pd.DatetimeIndex(joined["ts"]).strftime("%Y-%m")
    start = max(segment_starts(sorted(set(months))))
    first = int(np.argmax(np.asarray(months) == start))
    cols = ["high_a", "low_a", "close_a", "high_b", "low_b", "close_b"]
    return joined[cols].to_numpy(dtype=np.float64)[first:], int(ts[-1])


def symbol_closes(cfg: AppConfig, symbol: str, until_ns: int | None) -> tuple[np.ndarray, int]:
    """A symbol's catalog closes before ``until_ns`` (oldest first) and the last one's start
    (-1: none), for the live DQ guard."""
    try:
        bars = Catalog(cfg).load_bars(cfg.serving.timeframe, symbol)
    except (MlcoreError, ValueError, KeyError, FileNotFoundError) as exc:
        log.warning("%s: no catalog history for the DQ guard (%s)", symbol, exc)
        return np.empty(0), -1
    ts = pd.DatetimeIndex(bars["ts"]).as_unit("ns").asi8
    keep = ts < until_ns if until_ns is not None else np.ones(len(ts), dtype=bool)
    if not keep.any():
        return np.empty(0), -1
    return bars["close"].to_numpy(dtype=np.float64)[keep], int(ts[keep][-1])
