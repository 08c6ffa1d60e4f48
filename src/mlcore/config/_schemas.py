"""Typed schemas of the policy YAMLs. Frozen, strict, unknown keys rejected; no defaults."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, date, datetime
from typing import Annotated, Literal, TypeVar, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import cronsim
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from mlcore.config._timeframes import TIMEFRAMES

PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Rate = Annotated[float, Field(ge=0, le=1)]

#: No policy number may be larger than this in magnitude (a trillion: capital in USD, counts of
#: bars); 1e308 or 10**30 are typing slips that overflow numpy or the calendar later.
MAX_MAGNITUDE = 1e12
#: numpy's and LightGBM's seed range (the CLI's ``--seed`` caps at the same value).
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
_YEAR_S = 366 * 86_400
#: A duration in seconds, up to a year (``datetime + timedelta`` must not overflow).
Seconds = Annotated[float, Field(gt=0, le=_YEAR_S)]
NonNegSeconds = Annotated[float, Field(ge=0, le=_YEAR_S)]
IntSeconds = Annotated[int, Field(gt=0, le=_YEAR_S)]
#: A network timeout: one hour at most.
TimeoutSeconds = Annotated[float, Field(gt=0, le=3600)]
#: Months of history or retention: a century at most (the calendar ends at year 1).
Months = Annotated[int, Field(gt=0, le=1200)]
Days = Annotated[int, Field(gt=0, le=36_600)]
#: Default of pipeline_policy ``max_file_bytes``: the largest file ``ingest`` reads (1 GiB).
MAX_FILE_BYTES = 1 << 30

Timeframe = Literal["1min", "5min", "15min", "30min", "1h", "4h", "1day"]
# Each part starts with a letter or digit: never ``.``/``..`` (a symbol names a folder).
SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9.]{0,11}(/[A-Z0-9][A-Z0-9.]{0,11})?$")


class Policy(BaseModel):
    """Base of every policy schema."""

    # allow_inf_nan=False: every float field of every policy refuses nan and ±inf.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _not_huge(cls, value: object) -> object:
        for number in _numbers(value):
            if abs(number) > MAX_MAGNITUDE:
                raise ValueError(f"{number!r} is out of range (at most {MAX_MAGNITUDE:g} in size)")
        return value


def _numbers(value: object) -> list[int | float]:
    """The plain numbers in a field's value (nested policies check their own)."""
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [value]
    if isinstance(value, (list, tuple)):
        return [n for v in value for n in _numbers(v)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    return []


# storage.yaml ---------------------------------------------------------------------------
class S3Location(Policy):
    endpoint_url: str
    bucket: str
    prefix: str


class S3Backed(Policy):
    """A local backend, or S3 with its location."""

    backend: Literal["local", "s3"]
    s3: S3Location | None

    @model_validator(mode="after")
    def _s3_needs_location(self) -> S3Backed:
        if self.backend == "s3" and self.s3 is None:
            raise ValueError("backend 's3' needs the 's3' location (endpoint_url, bucket, prefix)")
        return self


class StoragePolicy(S3Backed):
    """storage.yaml: where the archive lives (ENV STORAGE_BACKEND / ARCHIVE_PATH override)."""

    #: blank would silently put the archive in the folder holding configs/ (the project's)
    archive_path: Annotated[str, Field(pattern=r"\S")]


# ml_core_storage.yaml -------------------------------------------------------------------
class ArtifactStorePolicy(S3Backed):
    """Where the registry's archived copies live."""


class MlCoreStoragePolicy(Policy):
    """ml_core_storage.yaml: roots under the archive for each kind of data."""

    raw_root: str
    canonical_root: str
    features_root: str
    snapshots_root: str
    catalog_root: str
    models_root: str
    reports_root: str
    artifact_store_root: str
    artifact_store: ArtifactStorePolicy


# pipeline_policy.yaml -------------------------------------------------------------------
class RateLimit(Policy):
    requests_per_minute: PositiveInt
    burst: PositiveInt


class CircuitBreakerPolicy(Policy):
    fail_max: PositiveInt
    reset_timeout_s: Seconds


class DQThresholds(Policy):
    """Data-quality thresholds (spec: データ取得・前処理パイプライン連携)."""

    max_fill_bars: NonNegInt
    outlier_sigma: PositiveFloat
    sigma_window_bars: PositiveInt
    sigma_min_bars: PositiveInt
    sigma_short_bars: Annotated[int, Field(ge=5)]
    spike_retrace_ratio: Rate
    missing_rate: Rate
    outlier_rate: Rate
    price_abs_tolerance: Annotated[float, Field(ge=0)]

    @model_validator(mode="after")
    def _min_within_window(self) -> DQThresholds:
        if self.sigma_min_bars > self.sigma_window_bars:
            raise ValueError("sigma_min_bars must not exceed sigma_window_bars")
        if self.sigma_short_bars > self.sigma_window_bars:
            raise ValueError("sigma_short_bars must not exceed sigma_window_bars")
        return self


class IsolatedRows(Policy):
    """A run of at most ``max_bars`` bars more than ``gap_days`` from a file's other bars is a
    mistyped date, rejected (see ``mlcore.data._rules.isolated_rows``)."""

    max_bars: Annotated[int, Field(ge=1, le=1000)] = 3
    gap_days: Annotated[int, Field(ge=1, le=3650)] = 31


class PipelinePolicy(Policy):
    """pipeline_policy.yaml: fetching, retries, freshness and DQ thresholds."""

    timeframe_default: Timeframe
    timeframe_allowed: list[Timeframe]
    history_lookback_months: Months
    retry_max: NonNegInt
    backoff_initial_s: TimeoutSeconds
    backoff_max_s: TimeoutSeconds
    backoff_jitter_s: Annotated[float, Field(ge=0, le=3600)]
    request_timeout_s: TimeoutSeconds
    page_size: Annotated[int, Field(gt=0, le=5000)]
    freshness_budget_seconds: IntSeconds
    rate_limit: RateLimit
    circuit_breaker: CircuitBreakerPolicy
    dq_thresholds: DQThresholds
    quarantine_owner: str
    #: the first bar time a row may have: an earlier one is a typo and would stretch the DQ
    #: grid (and quarantines) over every month up to the real data
    earliest_bar: date = date(1970, 1, 1)
    isolated_rows: IsolatedRows = IsolatedRows()
    #: the largest CSV or Parquet file ``ingest`` reads (a Parquet's data also uncompressed):
    #: pandas holds several times a file's size while it reads it
    max_file_bytes: Annotated[int, Field(gt=0, le=MAX_MAGNITUDE)] = MAX_FILE_BYTES

    @field_validator("earliest_bar")
    @classmethod
    def _after_epoch(cls, value: date) -> date:
        if not date(1970, 1, 1) <= value <= date(2200, 1, 1):
            raise ValueError("earliest_bar must be between 1970 and 2200")
        return value

    @model_validator(mode="after")
    def _default_allowed(self) -> PipelinePolicy:
        if self.timeframe_default not in self.timeframe_allowed:
            raise ValueError(
                f"timeframe_default {self.timeframe_default!r} is not in timeframe_allowed"
            )
        return self


# sources.yaml ---------------------------------------------------------------------------
class ProviderSpec(Policy):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    kind: Literal["twelvedata", "file"]
    priority: NonNegInt
    enabled: bool
    base_url: str | None
    api_key_env: str | None

    @model_validator(mode="after")
    def _rest_needs_url(self) -> ProviderSpec:
        if self.kind == "twelvedata" and (not self.base_url or not self.api_key_env):
            raise ValueError(
                f"provider '{self.name}': kind twelvedata needs base_url and api_key_env"
            )
        return self


class SourcesPolicy(Policy):
    """sources.yaml: data providers by priority (lower number is tried first)."""

    providers: Annotated[list[ProviderSpec], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique(self) -> SourcesPolicy:
        names = [p.name for p in self.providers]
        if len(set(names)) != len(names):
            raise ValueError(f"provider names must be unique, got {names}")
        prios = [p.priority for p in self.providers if p.enabled]
        if len(set(prios)) != len(prios):
            raise ValueError(f"enabled providers need distinct priorities, got {prios}")
        return self


# data_retention.yaml --------------------------------------------------------------------
class DataRetentionPolicy(Policy):
    """data_retention.yaml: how long each layer is kept, in months."""

    raw_months: Months
    canonical_months: Months
    features_months: Months
    snapshots_months: Months
    ingest_reports_days: Days
    model_versions: Annotated[int, Field(ge=5)]
    signals_history_days: Days
    notifications_days: Days
    refused_bars_days: Days


# universe.yaml --------------------------------------------------------------------------
class AlwaysOpen(Policy):
    kind: Literal["always"]


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone {value!r}: an IANA name such as UTC, Europe/London, America/New_York"
        ) from None
    return value


#: An IANA time zone name, checked when the policy is loaded.
ZoneName = Annotated[str, AfterValidator(_zone)]


class WeeklySession(Policy):
    """Open from ``open_weekday open_time`` to ``close_weekday close_time`` in ``timezone``."""

    kind: Literal["weekly"]
    timezone: ZoneName
    open_weekday: Literal["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    open_time: Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]
    close_weekday: Literal["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    close_time: Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]
    holidays_mmdd: list[Annotated[str, Field(pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")]]


class ExchangeSession(Policy):
    """A calendar from the exchange_calendars package, e.g. XNYS."""

    kind: Literal["exchange"]
    exchange: str


CalendarSpec = Annotated[AlwaysOpen | WeeklySession | ExchangeSession, Field(discriminator="kind")]


AssetClass = Literal["fx", "metal", "crypto", "equity", "index", "commodity"]
ASSET_CLASSES: tuple[str, ...] = get_args(AssetClass)


class InstrumentSpec(Policy):
    asset_class: AssetClass
    calendar: str
    quote_currency: Annotated[str, Field(pattern=r"^[A-Z]{3,4}$")]


class TradingRules(Policy):
    """How an instrument is traded: price tick, lot step and minimum, minimum notional in USD,
    margin rate (share of notional)."""

    tick_size: PositiveFloat
    lot_step: PositiveFloat
    min_lot: Annotated[float, Field(ge=0)]
    min_notional_usd: Annotated[float, Field(ge=0)]
    margin_rate: Annotated[float, Field(gt=0, le=1)]


class PairSpec(Policy):
    pair_id: Annotated[str, Field(pattern=r"^[A-Z0-9]+_[A-Z0-9]+$")]
    leg_a: str
    leg_b: str
    #: the bar timeframes the pair trades at; absent: any timeframe its legs have bars for
    timeframes: Annotated[list[Timeframe], Field(min_length=1)] | None = None

    @field_validator("timeframes")
    @classmethod
    def _timeframes_once(cls, value: list[str] | None) -> list[str] | None:
        twice = sorted({t for t in value or [] if (value or []).count(t) > 1})
        if twice:
            raise ValueError(f"timeframes {twice} are listed more than once")
        return value

    def trades_at(self, timeframe: str) -> bool:
        """Whether the pair is traded at ``timeframe`` (before asking for its data)."""
        return self.timeframes is None or timeframe in self.timeframes


class UniversePolicy(Policy):
    """universe.yaml: instruments, their trading calendars, and the pairs traded."""

    calendars: dict[str, CalendarSpec]
    instruments: dict[str, InstrumentSpec]
    trading: dict[str, TradingRules]
    #: The rules ``mlcore universe add-instrument`` writes per asset class (unless overridden).
    trading_defaults: dict[AssetClass, TradingRules]
    pairs: list[PairSpec]

    @model_validator(mode="after")
    def _pairs_distinct(self) -> UniversePolicy:
        """One entry per pair id (two would write their features to one cache), and two
        different legs per pair."""
        ids = [p.pair_id for p in self.pairs]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"pairs {twice} are listed more than once")
        legs: dict[frozenset[str], str] = {}
        for pair in self.pairs:
            if pair.leg_a == pair.leg_b:
                raise ValueError(f"pair {pair.pair_id!r}: leg_a and leg_b are both {pair.leg_a!r}")
            # XAU_XAG and XAG_XAU are one spread with its sign flipped: two workers would trade
            # the same risk twice, each unaware of the other's position.
            key = frozenset((pair.leg_a, pair.leg_b))
            if key in legs:
                raise ValueError(
                    f"pairs {legs[key]!r} and {pair.pair_id!r} have the same legs "
                    f"({pair.leg_a!r}, {pair.leg_b!r}); list the pair once"
                )
            legs[key] = pair.pair_id
        return self

    @model_validator(mode="after")
    def _consistent(self) -> UniversePolicy:
        for sym, spec in self.instruments.items():
            if not SYMBOL_RE.match(sym):
                raise ValueError(f"instrument {sym!r} is not a normalized symbol like 'XAU/USD'")
            if spec.calendar not in self.calendars:
                raise ValueError(f"instrument {sym!r} names unknown calendar {spec.calendar!r}")
        unknown = sorted(set(self.trading) - set(self.instruments))
        if unknown:
            raise ValueError(f"trading rules for {unknown}, which are not instruments")
        for pair in self.pairs:
            for leg in (pair.leg_a, pair.leg_b):
                if leg in self.instruments and leg not in self.trading:
                    raise ValueError(f"pair {pair.pair_id!r}: leg {leg!r} has no trading rules")
                if leg not in self.instruments:
                    raise ValueError(f"pair {pair.pair_id!r} names unknown instrument {leg!r}")
        return self


POLICY_SCHEMAS: dict[str, type[Policy]] = {
    "storage": StoragePolicy,
    "ml_core_storage": MlCoreStoragePolicy,
    "pipeline_policy": PipelinePolicy,
    "sources": SourcesPolicy,
    "data_retention": DataRetentionPolicy,
    "universe": UniversePolicy,
}


# core_policy.yaml -----------------------------------------------------------------------
class ThetaRange(Policy):
    """The θ search's bounds: [low, high] of θ1 and of θ2, low < high."""

    theta1: Annotated[list[Annotated[float, Field(ge=0, le=1)]], Field(min_length=2, max_length=2)]
    theta2: Annotated[list[Annotated[float, Field(ge=0, le=1)]], Field(min_length=2, max_length=2)]

    @model_validator(mode="after")
    def _ordered(self) -> ThetaRange:
        for name in ("theta1", "theta2"):
            low, high = getattr(self, name)
            if not low < high:
                raise ValueError(f"{name} must be [low, high] with low < high, got {[low, high]}")
        return self


class AI1LabelPolicy(Policy):
    """AI1 reversion events: open at |z| >= entry_z, success when |z| <= exit_z within M bars."""

    entry_z: PositiveFloat
    exit_z: Annotated[float, Field(ge=0)]
    horizon_bars: PositiveInt
    max_dz_ema: PositiveFloat

    @model_validator(mode="after")
    def _exit_inside_entry(self) -> AI1LabelPolicy:
        if self.exit_z >= self.entry_z:
            raise ValueError("exit_z must be below entry_z")
        return self


class AI2LabelPolicy(Policy):
    """AI2 risk: 1 when any condition holds within the next horizon_bars."""

    rho_var_max: PositiveFloat
    atr_ratio_max: PositiveFloat
    dz_ema_max: PositiveFloat
    dd_recent_max: PositiveFloat
    horizon_bars: PositiveInt
    class_weight_cap: PositiveFloat


class DirectionLabelPolicy(Policy):
    """3-class direction (003): BUY/HOLD/SELL by the forward return over horizon_bars."""

    threshold: PositiveFloat
    horizon_bars: PositiveInt


class LabelPolicy(Policy):
    ai1: AI1LabelPolicy
    ai2: AI2LabelPolicy
    direction: DirectionLabelPolicy


class CorePolicy(Policy):
    """core_policy.yaml: thresholds in force and the label definitions."""

    theta1_initial: Rate
    theta2_initial: Rate
    theta_search_range: ThetaRange
    #: label definitions per bar timeframe (their thresholds and horizons are in bars)
    labels: Annotated[dict[Timeframe, LabelPolicy], Field(min_length=1)]

    def labels_at(self, timeframe: str) -> LabelPolicy:
        """The label policy of ``timeframe``; ConfigError naming the timeframes that have one."""
        return at_timeframe(self.labels, timeframe, "core_policy.yaml", "labels")

    @model_validator(mode="after")
    def _initial_inside_the_range(self) -> CorePolicy:
        for name in ("theta1", "theta2"):
            value = getattr(self, f"{name}_initial")
            low, high = getattr(self.theta_search_range, name)
            if not low <= value <= high:
                raise ValueError(
                    f"{name}_initial {value} is outside theta_search_range.{name} {[low, high]}"
                )
        return self


POLICY_SCHEMAS["core_policy"] = CorePolicy


# feature_policy.yaml --------------------------------------------------------------------
Window = Annotated[int, Field(ge=2, le=5000)]


class PairFeatureWindows(Policy):
    """Window lengths (bars) and spans of the pair features."""

    beta_window: Window
    z_window: Window
    z_ema_span: Window
    dz_ema_span: Window
    atr_window: Window
    atr_long_window: Window
    half_life_window: Window
    half_life_cap_bars: PositiveFloat
    rho_window: Window
    rho_var_window: Window
    beta_stability_window: Window
    ema_fast_span: Window
    ema_slow_span: Window
    slope_window: Window
    rsi_window: Window
    dd_window: Window

    @model_validator(mode="after")
    def _fast_below_slow(self) -> PairFeatureWindows:
        if self.ema_fast_span >= self.ema_slow_span:
            raise ValueError("ema_fast_span must be below ema_slow_span")
        return self


class FeaturePolicy(Policy):
    """feature_policy.yaml: feature windows and the robust scaler."""

    pair: PairFeatureWindows
    scaler_clip: PositiveFloat


POLICY_SCHEMAS["feature_policy"] = FeaturePolicy


# feature_order.yaml ---------------------------------------------------------------------
FeatureName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]


class FeatureLevels(Policy):
    """The three feature levels of 003, each adding to the one below it."""

    level3_basic: Annotated[list[FeatureName], Field(min_length=1)]
    level2_strategy_signals: list[FeatureName]
    level1_external: list[Annotated[str, Field(pattern=r"^ext_[a-z0-9_]+$")]]

    @model_validator(mode="after")
    def _no_repeats(self) -> FeatureLevels:
        names = self.level3_basic + self.level2_strategy_signals + self.level1_external
        seen: set[str] = set()
        repeats = sorted({n for n in names if n in seen or seen.add(n)})  # type: ignore[func-returns-value]
        if repeats:
            raise ValueError(f"features listed twice: {repeats}")
        return self


# Pair feature names keep the leg suffixes (atr_A, atr_B).
PairColumn = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*(_[AB])?$")]


class PairModelFeatures(Policy):
    """Input columns, in order, of the pair models."""

    ai1: Annotated[list[PairColumn], Field(min_length=1)]
    ai2: Annotated[list[PairColumn], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique(self) -> PairModelFeatures:
        for name in ("ai1", "ai2"):
            cols = getattr(self, name)
            if len(set(cols)) != len(cols):
                raise ValueError(f"{name}: a column is listed twice")
        return self


class FeatureOrderPolicy(Policy):
    """feature_order.yaml: the single source of truth for feature column order per level."""

    single: FeatureLevels
    pair_models: PairModelFeatures


POLICY_SCHEMAS["feature_order"] = FeatureOrderPolicy


# training_policy.yaml -------------------------------------------------------------------
Share = Annotated[float, Field(gt=0, lt=0.5)]


class CVPolicy(Policy):
    """Purged grouped K-fold settings."""

    n_folds: Annotated[int, Field(ge=2, le=20)]
    purge_bars: Annotated[int, Field(ge=0)]
    embargo_bars: Annotated[int, Field(ge=0)]
    min_block_bars: PositiveInt

    @model_validator(mode="after")
    def _block_outlasts_gaps(self) -> CVPolicy:
        if self.min_block_bars < self.purge_bars + self.embargo_bars + 1:
            raise ValueError(
                f"min_block_bars ({self.min_block_bars}) must be at least purge_bars + "
                f"embargo_bars + 1 ({self.purge_bars + self.embargo_bars + 1})"
            )
        return self


class SplitPolicy(Policy):
    """Shares of the time-ordered events."""

    test_share: Share
    calibration_share: Share
    early_stopping_share: Share


class LightGBMPolicy(Policy):
    """LightGBM settings."""

    max_rounds: Annotated[int, Field(ge=1, le=100_000)]
    early_stopping_rounds: PositiveInt
    learning_rate: Annotated[float, Field(gt=0, le=1)]
    num_leaves: Annotated[int, Field(ge=2, le=4096)]
    min_child_samples: PositiveInt


class CanaryPolicy(Policy):
    """Leakage canary settings."""

    block_bars: PositiveInt
    repeats: Annotated[int, Field(ge=1, le=100)]
    tolerance: Annotated[float, Field(gt=0, lt=0.5)]


Trials = Annotated[int, Field(ge=0, le=1000)]


class OptunaPolicy(Policy):
    """Optuna trials per model (0: no tuning)."""

    ai1_trials: Trials
    ai2_trials: Trials
    ai3_trials: Trials
    direction_trials: Trials
    storage: Literal["memory", "postgres"]


Library = Literal["lightgbm", "xgboost"]


class LibraryPolicy(Policy):
    """Gradient-boosting library per classifier."""

    ai1: Library
    ai2: Library


Weight = Annotated[float, Field(ge=0, le=1)]


class EnsembleWeights(Policy):
    """Soft-vote weights of the direction ensemble's components (at least one > 0)."""

    lightgbm: Weight
    xgboost: Weight
    random_forest: Weight

    @model_validator(mode="after")
    def _some_weight(self) -> EnsembleWeights:
        if self.lightgbm + self.xgboost + self.random_forest <= 0:
            raise ValueError("at least one weight must be > 0")
        return self


class RandomForestPolicy(Policy):
    """scikit-learn RandomForestClassifier settings of the direction ensemble."""

    n_estimators: Annotated[int, Field(ge=1, le=5000)]
    max_depth: Annotated[int, Field(ge=1, le=64)]
    min_samples_leaf: PositiveInt
    max_features: Annotated[float, Field(gt=0, le=1)]
    max_samples: Annotated[float, Field(gt=0, le=1)]


class DirectionPolicy(Policy):
    """The 3-class direction ensemble (spec 003)."""

    weights: EnsembleWeights
    random_forest: RandomForestPolicy
    smote: bool
    smote_k_neighbors: Annotated[int, Field(ge=1, le=100)]
    threads: Annotated[int, Field(ge=1, le=64)]
    canary_repeats: Annotated[int, Field(ge=1, le=100)]


class TrainingPolicy(Policy):
    """training_policy.yaml: CV, splits, model settings, the canary, tuning and the seed."""

    cv: CVPolicy
    split: SplitPolicy
    lightgbm: LightGBMPolicy
    canary: CanaryPolicy
    optuna: OptunaPolicy
    library: LibraryPolicy
    direction: DirectionPolicy
    seed: Seed


POLICY_SCHEMAS["training_policy"] = TrainingPolicy


# cost_table.yaml ------------------------------------------------------------------------
Bps = Annotated[float, Field(ge=0, le=10_000)]
HHMM = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")]


class CostRates(Policy):
    """Costs in basis points of notional: per fill (commission, slippage, the whole bid-ask
    spread, half of which a fill pays) and per day held (swap)."""

    commission_bps: Bps
    slippage_bps: Bps
    spread_bps: Bps
    swap_bps_per_day: Bps


class CostOverride(Policy):
    """Per-symbol replacements of some of the default rates."""

    commission_bps: Bps | None = None
    slippage_bps: Bps | None = None
    spread_bps: Bps | None = None
    swap_bps_per_day: Bps | None = None


class SlippageWindow(Policy):
    """Slippage times ``factor`` for bars whose time of day is in [start, end)."""

    start: HHMM
    end: HHMM
    factor: PositiveFloat

    @model_validator(mode="after")
    def _ordered(self) -> SlippageWindow:
        if self.start >= self.end:
            raise ValueError(f"window start {self.start} must be before its end {self.end}")
        return self


class SlippageTimeOfDay(Policy):
    """Time-of-day slippage factors (1.0 outside every window); windows must not overlap."""

    timezone: ZoneName
    windows: list[SlippageWindow]

    @model_validator(mode="after")
    def _disjoint(self) -> SlippageTimeOfDay:
        spans = sorted((w.start, w.end) for w in self.windows)
        for (_, end), (start, _) in itertools.pairwise(spans):
            if start < end:
                raise ValueError(f"slippage windows overlap at {start}")
        return self


class CostTable(Policy):
    """cost_table.yaml: the costs the backtest and the live path both charge."""

    defaults: CostRates
    overrides: dict[str, CostOverride]
    slippage_time_of_day: SlippageTimeOfDay

    def rates(self, symbol: str) -> CostRates:
        """The defaults with the symbol's overrides applied."""
        over = self.overrides.get(symbol)
        if over is None:
            return self.defaults
        given = {k: v for k, v in over.model_dump().items() if v is not None}
        return self.defaults.model_copy(update=given)


POLICY_SCHEMAS["cost_table"] = CostTable


# dd_policy.yaml -------------------------------------------------------------------------
class DrawdownLevels(Policy):
    """Drawdown from the equity peak that warns, halts new entries, and flattens."""

    warn: Annotated[float, Field(gt=0, lt=1)]
    halt: Annotated[float, Field(gt=0, lt=1)]
    flatten: Annotated[float, Field(gt=0, lt=1)]

    @model_validator(mode="after")
    def _ordered(self) -> DrawdownLevels:
        if not self.warn < self.halt < self.flatten:
            raise ValueError(
                f"levels must rise: warn {self.warn} < halt {self.halt} < flatten {self.flatten}"
            )
        return self


class DrawdownPolicy(Policy):
    """dd_policy.yaml: DD_WARN/DD_HALT/DD_FLATTEN for the portfolio and per pair."""

    portfolio: DrawdownLevels
    pair: DrawdownLevels


POLICY_SCHEMAS["dd_policy"] = DrawdownPolicy


# backtest_policy.yaml -------------------------------------------------------------------
class AccountPolicy(Policy):
    """The backtest account: currency, capital, sizing, FX staleness."""

    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    capital_usd: PositiveFloat
    risk_fraction: Annotated[float, Field(gt=0, le=1)]
    fx_stale_seconds: IntSeconds


P = TypeVar("P", bound=BaseModel)


def at_timeframe(table: dict[Timeframe, P], timeframe: str, file: str, key: str) -> P:
    """``table[timeframe]``, or a ConfigError saying which file and key to extend."""
    if timeframe in table:
        return table[timeframe]
    from mlcore.errors import ConfigError

    raise ConfigError(
        "CONFIG_TIMEFRAME_POLICY_MISSING",
        f"{file}: key '{key}' has no entry for timeframe {timeframe!r} (it has "
        f"{', '.join(table)}): add one, its thresholds and horizons in {timeframe} bars "
        "(docs/features-and-labels.md says how the shipped ones were measured)",
        details={"file": file, "key": key, "timeframe": timeframe},
    )


class ExecutionPolicy(Policy):
    """Time stop and fill latency, in bars."""

    max_hold_bars: PositiveInt
    latency_bars: NonNegInt
    halt_review_bars: NonNegInt


class ThetaSearchPolicy(Policy):
    """θ grid step, Optuna budget and the objective's penalties."""

    grid_step: Annotated[float, Field(gt=0, le=0.5)]
    trials: NonNegInt
    patience: PositiveInt
    lambda_dd: Annotated[float, Field(ge=0)]
    lambda_trades: Annotated[float, Field(ge=0)]
    lambda_stop: Annotated[float, Field(ge=0)]
    dd_limit: Rate
    min_trades_per_year: PositiveFloat


class StabilisationPolicy(Policy):
    """How far and when θ may move between runs."""

    max_step: Annotated[float, Field(gt=0, le=1)]
    weight_new: Annotated[float, Field(gt=0, le=1)]
    min_trades: NonNegInt
    confidence: Annotated[float, Field(gt=0.5, lt=1)]
    gate_pass_rate: Annotated[list[Rate], Field(min_length=2, max_length=2)]

    @model_validator(mode="after")
    def _ordered(self) -> StabilisationPolicy:
        low, high = self.gate_pass_rate
        if not low < high:
            raise ValueError(
                f"gate_pass_rate must be [low, high] with low < high, got {[low, high]}"
            )
        return self


class GatePolicy(Policy):
    """Adoption gates (the spec's, and Deflated Sharpe / PBO)."""

    min_sharpe: Annotated[float, Field(ge=-100, le=100)]
    max_drawdown: Rate
    min_trades_per_year: Annotated[float, Field(ge=0)]
    noninferior_sharpe_ratio: Annotated[float, Field(gt=0)]
    noninferior_dd_slack: Rate
    min_deflated_sharpe: Rate
    max_pbo: Rate
    pbo_splits: Annotated[int, Field(ge=2, le=16, multiple_of=2)]


class StressPolicy(Policy):
    """Sizes of the stress scenarios."""

    seed: Seed
    atr_noise: Annotated[float, Field(ge=0)]
    correlation_breakdown_share: Annotated[float, Field(gt=0, le=1)]
    cost_multiplier: Annotated[float, Field(ge=0)]
    latency_bars: NonNegInt
    gap_events: NonNegInt
    gap_atr: Annotated[float, Field(ge=0)]


class BacktestPolicy(Policy):
    """backtest_policy.yaml."""

    account: AccountPolicy
    #: time stop, latency and halt review per bar timeframe (in bars of it)
    execution: Annotated[dict[Timeframe, ExecutionPolicy], Field(min_length=1)]
    theta_search: ThetaSearchPolicy
    stabilisation: StabilisationPolicy
    gates: GatePolicy
    stress: StressPolicy

    def execution_at(self, timeframe: str) -> ExecutionPolicy:
        """The execution rules of ``timeframe``; ConfigError naming those that have one."""
        return at_timeframe(self.execution, timeframe, "backtest_policy.yaml", "execution")


POLICY_SCHEMAS["backtest_policy"] = BacktestPolicy


# retrain_policy.yaml --------------------------------------------------------------------
class TaskRunnerPolicy(Policy):
    """How a flow's per-pair tasks run."""

    kind: Literal["threads", "dask"]
    max_workers: Annotated[int, Field(ge=1, le=64)]
    dask_address: str | None

    @model_validator(mode="after")
    def _address_needs_dask(self) -> TaskRunnerPolicy:
        if self.dask_address is not None and self.kind != "dask":
            raise ValueError("dask_address is only used with kind 'dask'")
        return self


class RetrainPolicy(Policy):
    """retrain_policy.yaml: the schedule, retries and failure stop of core_retrain_flow."""

    retrain_cron: str
    timezone: ZoneName
    timeframe: str
    retrain_retry_max: Annotated[int, Field(ge=0, le=2)]
    retrain_retry_delay_minutes: Annotated[float, Field(ge=0, le=_YEAR_S / 60)]
    max_consecutive_failures: Annotated[int, Field(ge=1)]
    heartbeat_seconds: Seconds
    heartbeat_stale_factor: Annotated[float, Field(gt=1, le=1000)]
    notification_channel: str
    task_runner: TaskRunnerPolicy
    deploy_on_adopt: bool

    @field_validator("retrain_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            cronsim.CronSim(value, datetime.now(UTC))
        except cronsim.CronSimError as exc:
            raise ValueError(f"not a valid cron expression: {exc}") from None
        return value

    @field_validator("timeframe")
    @classmethod
    def _timeframe(cls, value: str) -> str:
        if value not in TIMEFRAMES:
            raise ValueError(f"timeframe must be one of {list(TIMEFRAMES)}")
        return value


POLICY_SCHEMAS["retrain_policy"] = RetrainPolicy


# serving_policy.yaml --------------------------------------------------------------------
class WorkerPolicy(Policy):
    """How `mlcore serve` spreads pairs over worker processes and restarts them."""

    pairs_per_worker: Annotated[int, Field(ge=1, le=50)]
    restart_delay_seconds: NonNegSeconds
    max_restarts_per_hour: PositiveInt
    checkpoint_every_seconds: NonNegSeconds


class BarSourcePolicy(Policy):
    """Where live bars come from: Redis Streams (one per symbol) or an appended JSON-lines file."""

    kind: Literal["redis", "file"]
    stream_prefix: str
    file: str
    block_ms: Annotated[int, Field(gt=0, le=600_000)]
    batch_bars: PositiveInt
    max_message_bytes: Annotated[int, Field(ge=256, le=1 << 20)] = 4096


class RedisDeliveryPolicy(Policy):
    """Signals on Redis: a stream with consumer groups plus a Pub/Sub channel."""

    signals_stream: str
    stream_maxlen: PositiveInt
    channel: str
    dedupe_ttl_seconds: IntSeconds
    ops_flags_key: str
    dead_letter_stream: str = "core:bars:dead"
    heartbeat_prefix: str
    heartbeat_seconds: Seconds
    heartbeat_ttl_seconds: Seconds

    @model_validator(mode="after")
    def _ttl_longer_than_beat(self) -> RedisDeliveryPolicy:
        if not self.heartbeat_ttl_seconds > self.heartbeat_seconds:
            raise ValueError("heartbeat_ttl_seconds must exceed heartbeat_seconds")
        return self


class ServingPolicy(Policy):
    """serving_policy.yaml: inference workers, bar source, delivery, freshness, metrics."""

    timeframe: Timeframe
    workers: WorkerPolicy
    bar_source: BarSourcePolicy
    freshness_budget_seconds: Seconds
    #: how long after its bar's close a signal holds: one number for every timeframe, or one
    #: per timeframe (a daily signal waits for the next session; an hourly one does not)
    signal_valid_seconds: Seconds | Annotated[dict[Timeframe, Seconds], Field(min_length=1)]
    redis: RedisDeliveryPolicy
    serving_root: str
    aggregate_every_seconds: Seconds
    metrics_port: Annotated[int, Field(ge=0, le=65535)]
    flags_max_age_seconds: Seconds = 30.0

    def valid_seconds_at(self, timeframe: str) -> float:
        """``signal_valid_seconds`` of ``timeframe``; ConfigError naming those that have one."""
        table = self.signal_valid_seconds
        if not isinstance(table, dict):
            return float(table)
        if timeframe in table:
            return float(table[timeframe])
        from mlcore.errors import ConfigError

        raise ConfigError(
            "CONFIG_TIMEFRAME_POLICY_MISSING",
            f"serving_policy.yaml: key 'signal_valid_seconds' has no entry for timeframe "
            f"{timeframe!r} (it has {', '.join(table)}): add one (how long after its bar's "
            "close a signal holds)",
            details={"file": "serving_policy.yaml", "key": "signal_valid_seconds",
                     "timeframe": timeframe},
        )  # fmt: skip


POLICY_SCHEMAS["serving_policy"] = ServingPolicy


# runbook_policy.yaml --------------------------------------------------------------------
class ResumePolicy(Policy):
    """The two-person resume: who approves, how long a request waits, the canary step."""

    approval_ttl_minutes: Annotated[int, Field(gt=0, le=1440)]
    required_duties: Annotated[list[Literal["ops", "risk"]], Field(min_length=2, max_length=2)]
    canary_fraction: Annotated[float, Field(gt=0, le=1)]
    kpi_watch_minutes: Annotated[int, Field(ge=0, le=10_080)]

    @model_validator(mode="after")
    def _two_duties(self) -> ResumePolicy:
        if len(set(self.required_duties)) != 2:
            raise ValueError("required_duties must name two different duties (ops and risk)")
        return self


class AutoRollbackPolicy(Policy):
    """The automatic rollback (spec 002 運用 Runbook: Sharpe -20% or MaxDD +3 points against
    the deployed version's backtest), the sample it needs and how many in a row it may do."""

    sharpe_drop_fraction: Annotated[float, Field(gt=0, lt=1)]
    max_drawdown_rise: Annotated[float, Field(gt=0, lt=1)]
    min_bars: Annotated[int, Field(gt=0, le=10_000_000)]
    min_trades: Annotated[int, Field(gt=0, le=1_000_000)]
    max_in_a_row: Annotated[int, Field(ge=1, le=10)]


class RunbookPolicy(Policy):
    """runbook_policy.yaml: the runbook's approval rules (spec 002 運用 Runbook・Ops API)."""

    resume_policy: ResumePolicy
    auto_rollback: AutoRollbackPolicy


POLICY_SCHEMAS["runbook_policy"] = RunbookPolicy
