"""``mlcore config check``, ``ingest``, ``catalog build`` and ``features build``."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlcore._progress import stage
from mlcore.cli._app import app, coded, command, load_config, typer_app
from mlcore.cli._params import (
    DATE_FORMAT_HELP,
    TIME_HELP,
    TIMEFRAME_HELP,
    Source,
    parse_date_format,
    parse_time,
    parse_timeframe,
)
from mlcore.cli._params import parse_tz as parse_tz_
from mlcore.cli._render import months_shown, print_ingest, text
from mlcore.errors import BadDataError, ConfigError, DataQualityError

if TYPE_CHECKING:
    import pandas as pd

    from mlcore.config import AppConfig
    from mlcore.data import FetchResult

config_app = typer_app("Validate and show the policy configuration.")
catalog_app = typer_app("Build and inspect the dataset catalog.")
features_app = typer_app("Build and cache features from the catalog.")

TimeframeOpt = Annotated[
    str, typer.Option("--timeframe", parser=parse_timeframe, metavar="TF", help=TIMEFRAME_HELP)
]
PairOpt = Annotated[str | None, typer.Option(help="Pair id from universe.yaml.")]


def check_timeframe(cfg: AppConfig, timeframe: str) -> None:
    """Refuse a timeframe the pipeline policy does not allow (exit 2)."""
    if timeframe not in cfg.pipeline.timeframe_allowed:
        raise ConfigError(
            "CLI_ARGUMENT_INVALID",
            f"--timeframe {timeframe!r} is not one of {cfg.pipeline.timeframe_allowed} "
            "(pipeline_policy.yaml timeframe_allowed)",
        )


def check_pairs(cfg: AppConfig, pairs: list[str], option: str = "--pair") -> None:
    """Refuse pair ids that universe.yaml does not list, empty ones and ones given twice
    (exit 2): a pair is served (or trained) once, and an empty list item is a typo, not "all"."""
    if any(not p.strip() for p in pairs):
        raise ConfigError(
            "CLI_ARGUMENT_INVALID", f"{option} {','.join(pairs)!r} has an empty pair id"
        )
    twice = sorted({p for p in pairs if pairs.count(p) > 1})
    if twice:
        raise ConfigError(
            "CLI_ARGUMENT_INVALID", f"{option} names {', '.join(twice)} more than once"
        )
    known = [p.pair_id for p in cfg.universe.pairs]
    unknown = [p for p in pairs if p not in known]
    if len(unknown) == 1:
        raise ConfigError(
            "CLI_ARGUMENT_INVALID", f"{option} {unknown[0]!r} is not in universe.yaml {known}"
        )
    if unknown:
        raise ConfigError(
            "CLI_ARGUMENT_INVALID", f"{option} {unknown} not in universe.yaml {known}"
        )


def _refuse_demo_archive(cfg: AppConfig) -> None:
    """Refuse to ingest a user's bars into the demo's workspace (each demo run removes it) or
    an archive holding the demo's synthetic market (one a demo wrote before it ran in a
    workspace of its own): the two would be merged."""
    if cfg.workspace is not None and cfg.workspace.kind == "demo":
        raise ConfigError(
            "DATA_ARCHIVE_HOLDS_DEMO",
            f"{cfg.config_root.parent} is the demo's workspace: each `mlcore demo` removes it, "
            "your bars with it; make a workspace of your own (`mlcore init DIR`)",
            details={"path": str(cfg.paths.archive)},
        )
    summary = cfg.paths.reports / "demo_summary.json"
    if summary.exists():
        raise ConfigError(
            "DATA_ARCHIVE_HOLDS_DEMO",
            f"archive {cfg.paths.archive} holds the demo's synthetic market ({summary}); your "
            "bars would be merged with it: move or delete that archive, or make a workspace "
            "(`mlcore init DIR`), which has its own",
            details={"path": str(cfg.paths.archive)},
        )


@command(config_app, "check")
def config_check() -> None:
    """Validate ENV and every policy file; print what is in force."""
    cfg = load_config()
    text(f"config OK for SERVICE_ENV={cfg.env_name} ({cfg.config_root})")
    if cfg.workspace is not None:
        from mlcore.config._loader import env_shadowed

        text(f"workspace: {cfg.workspace.root} over the shipped configs {cfg.base_root}")
        for line in env_shadowed(cfg.config_root, cfg.env_name):
            text(f"note: {line}")
        from mlcore.governance import require_in_force

        version = require_in_force(cfg)  # files edited by hand after a governed apply: exit 2
        if version is not None:
            text(f"config version in force: {version.sha} (applied {version.applied_at})")
    text(f"archive: {cfg.paths.archive} (backend {cfg.storage.backend})")
    text(f"timeframes: {', '.join(cfg.pipeline.timeframe_allowed)}")
    text(f"instruments: {', '.join(cfg.universe.instruments)}")
    enabled = [p.name for p in sorted(cfg.sources.providers, key=lambda p: p.priority) if p.enabled]
    text(f"providers (by priority): {', '.join(enabled)}")


def _ts(value: datetime | None) -> pd.Timestamp | None:
    import pandas as pd

    return None if value is None else pd.Timestamp(value)


@command(app, "ingest")
def ingest_cmd(
    symbol: Annotated[str, typer.Option(help="Symbol, e.g. XAU/USD (xauusd is normalized).")],
    timeframe: TimeframeOpt,
    source: Annotated[
        Source, typer.Option(help="file, twelvedata, or auto (sources.yaml failover).")
    ] = Source.file,
    path: Annotated[Path | None, typer.Option(help="CSV or Parquet file (source file).")] = None,
    start: Annotated[
        datetime | None,
        typer.Option(
            parser=parse_time,
            metavar="TIME",
            help=f"Start (REST: default the watermark). {TIME_HELP}.",
        ),
    ] = None,
    end: Annotated[
        datetime | None,
        typer.Option(
            parser=parse_time, metavar="TIME", help=f"End (REST: default now). {TIME_HELP}."
        ),
    ] = None,
    tz: Annotated[
        str | None,
        typer.Option(
            parser=parse_tz_, help="IANA time zone of file timestamps without one (default UTC)."
        ),
    ] = None,
    calendar: Annotated[str | None, typer.Option(help="Calendar name from universe.yaml.")] = None,
    date_format: Annotated[
        str | None,
        typer.Option(
            parser=parse_date_format, metavar="FORMAT", help=f"{DATE_FORMAT_HELP} (default auto)"
        ),
    ] = None,
    rewrite: Annotated[
        bool,
        typer.Option(
            "--rewrite",
            help="Rewrite every partition, even unchanged ones (repairs damaged files).",
        ),
    ] = False,
) -> None:
    """Fetch bars, check their quality, and store them as canonical partitions."""
    import pandas as pd

    from mlcore.data import FileProvider, ingest, normalize_symbol, resolve_calendar

    _check_source_options(source, path=path, tz=tz, date_format=date_format)
    cfg = load_config()
    _refuse_demo_archive(cfg)
    check_timeframe(cfg, timeframe)
    if calendar is not None and calendar not in cfg.universe.calendars:
        raise ConfigError(
            "CLI_ARGUMENT_INVALID",
            f"--calendar {calendar!r} is not in universe.yaml {sorted(cfg.universe.calendars)}",
        )
    sym = normalize_symbol(symbol, list(cfg.universe.instruments))
    resolve_calendar(cfg, sym, calendar)  # an unknown symbol ends here, before any reading
    lo, hi = _ts(start), _ts(end)
    if lo is not None and hi is not None and lo > hi:
        raise ConfigError(
            "CLI_ARGUMENT_INVALID",
            f"start {lo.isoformat()} is after end {hi.isoformat()}: --start must come first",
        )
    if source is Source.file:
        if path is None:
            raise ConfigError("CLI_ARGUMENT_MISSING", "--source file needs --path FILE")
        provider = FileProvider(
            path,
            tz=tz or "UTC",
            price_abs_tolerance=cfg.pipeline.dq_thresholds.price_abs_tolerance,
            earliest=pd.Timestamp(cfg.pipeline.earliest_bar, tz="UTC"),
            isolation=cfg.pipeline.isolated_rows,
            date_format=date_format or "auto",
            max_bytes=cfg.pipeline.max_file_bytes,
        )
        with stage("read") as st:
            fetched = provider.read(timeframe)
            # Judged on the whole file: --start/--end only narrow what is stored.
            nothing_accepted = fetched.bars.empty
            if lo is not None or hi is not None:
                fetched = provider.fetch(
                    sym,
                    timeframe,
                    lo or pd.Timestamp.min.tz_localize("UTC"),
                    hi or pd.Timestamp.max.tz_localize("UTC"),
                )
            st.detail = f"{path.name}"
    else:
        with stage("fetch") as st:
            fetched = _fetch_rest(cfg, source, sym, timeframe, lo, hi)
            st.detail = f"{sym} {timeframe} from {source.value}"
        # No rows is a quiet period; rows of which none passes is bad data.
        nothing_accepted = fetched.rows_read > 0 and fetched.bars.empty
    with stage("ingest") as st:
        # A file is the truth between its first and last bar (a corrected file repairs).
        report = ingest(
            cfg, fetched, sym, timeframe, calendar=calendar, rewrite=rewrite,
            replace_span=source is Source.file,
        )  # fmt: skip
        st.detail = f"{report.rows_read:,} rows, {report.new_bars:,} new"
    print_ingest(report)
    if nothing_accepted:
        _nothing_accepted(path if source is Source.file else None, fetched)


def _check_source_options(
    source: Source, *, path: Path | None, tz: str | None, date_format: str | None
) -> None:
    """Refuse file-only options with a REST source (exit 2): silently ignoring ``--path`` or
    ``--tz`` would fetch something other than what the user asked for."""
    if source is Source.file:
        return
    given = [
        name
        for name, value in (("--path", path), ("--tz", tz), ("--date-format", date_format))
        if value is not None
    ]
    if given:
        raise ConfigError(
            "CLI_ARGUMENT_INVALID",
            f"{', '.join(given)} only {'applies' if len(given) == 1 else 'apply'} to "
            f"--source file, not --source {source.value}",
        )


def _nothing_accepted(path: Path | None, fetched: FetchResult) -> None:
    """A file (``path``) or a data API's answer (``path`` None) none of whose rows could be
    used is bad data, whatever else went right."""
    from collections import Counter

    rules = Counter(r.rule for r in fetched.rejects).most_common(3)
    why = "; ".join(f"{n} x {rule}" for rule, n in rules) or "it holds no data rows"
    first = fetched.rejects[0].describe() if fetched.rejects else ""
    raise BadDataError(
        "DATA_FILE_NOTHING_ACCEPTED" if path is not None else "DATA_API_NOTHING_ACCEPTED",
        f"{path if path is not None else fetched.source}: none of its {fetched.rows_read:,} "
        f"rows was accepted ({why})" + (f"; first: {first}" if first else ""),
    )


def _rest_window(
    cfg: AppConfig, symbol: str, timeframe: str, lo: pd.Timestamp | None, hi: pd.Timestamp | None
) -> tuple[pd.Timestamp, pd.Timestamp]:
    import pandas as pd

    from mlcore.config import TIMEFRAMES
    from mlcore.data import read_watermark

    step = pd.Timedelta(seconds=TIMEFRAMES[timeframe])
    hi = hi if hi is not None else pd.Timestamp.now(tz="UTC").floor(step)
    if lo is None:
        mark = read_watermark(cfg, symbol, timeframe)
        months = cfg.pipeline.history_lookback_months
        lo = mark + step if mark is not None else hi - pd.DateOffset(months=months)
    if lo > hi:
        raise ConfigError(
            "CLI_ARGUMENT_INVALID", f"start {lo.isoformat()} is after end {hi.isoformat()}"
        )
    return lo, hi


def _fetch_rest(
    cfg: AppConfig, source: Source, symbol: str, timeframe: str,
    start: pd.Timestamp | None, end: pd.Timestamp | None,
) -> FetchResult:  # fmt: skip
    from mlcore.data import FailoverProvider, build_providers

    lo, hi = _rest_window(cfg, symbol, timeframe, start, end)
    providers = build_providers(cfg.sources, cfg.pipeline)
    if source is Source.twelvedata:
        providers = [p for p in providers if p.name == "twelvedata"]
        if not providers:
            raise ConfigError(
                "CLI_SOURCE_UNAVAILABLE", "sources.yaml has no enabled provider named 'twelvedata'"
            )
    provider = FailoverProvider(providers)
    try:
        return provider.fetch(symbol, timeframe, lo.to_pydatetime(), hi.to_pydatetime())
    finally:
        provider.close()


@command(catalog_app, "build")
def catalog_build() -> None:
    """Collect every partition's __meta.json into the index and apply the DQ filter."""
    from mlcore.data import build_catalog

    cfg = load_config()
    with stage("catalog") as st:
        summary = build_catalog(cfg)
        st.detail = f"{summary.partitions} partitions"
    text(
        f"catalog: {summary.partitions} partitions, {summary.included} included, "
        f"{summary.excluded} excluded"
    )
    text(f"  index: {summary.index_path}")
    text(f"  filtered: {summary.filtered_path} (catalog_hash {summary.catalog_hash[:12]})")
    for folder, why in summary.unreadable:
        text(f"  unreadable: {folder}: {why}")
    for folder in summary.unbuilt:
        text(
            f"  not built: {folder}: raw month without a canonical partition (interrupted ingest?)"
        )
    summary.check_complete()


@command(features_app, "build")
def features_build(
    timeframe: TimeframeOpt,
    pair: PairOpt = None,
    symbol: Annotated[str | None, typer.Option(help="Symbol (single-instrument features).")] = None,
) -> None:
    """Build features from the catalog into the cache (default: every pair and every leg)."""
    from mlcore.data import Catalog, normalize_symbol, pairs_at
    from mlcore.features import build_pair_features, build_symbol_features

    cfg = load_config()
    check_timeframe(cfg, timeframe)
    if symbol is not None and normalize_symbol(symbol, list(cfg.universe.instruments)) not in (
        cfg.universe.instruments
    ):
        raise ConfigError(
            "CLI_ARGUMENT_INVALID",
            f"--symbol {symbol!r} is not in universe.yaml {sorted(cfg.universe.instruments)}",
        )
    check_pairs(cfg, [pair] if pair is not None else [])
    cat = Catalog(cfg)
    skipped: list[str] = []
    pairs = []
    if symbol is None:
        # Pairs that trade at the timeframe and have bars there; the others get one line.
        with coded(DataQualityError, "FEATURES_INPUT_INVALID"):
            choice = pairs_at(cfg, cat, timeframe, [pair] if pair is not None else None)
        pairs, skipped = choice.pairs, choice.skipped
    if symbol is not None:
        symbols = [normalize_symbol(symbol, list(cfg.universe.instruments))]
    elif pair is None:
        symbols = sorted({s for p in pairs for s in (p.leg_a, p.leg_b)})
    else:
        symbols = []
    for line in skipped:
        text(line)
    reports = []
    with coded(DataQualityError, "FEATURES_INPUT_INVALID"):
        for p in pairs:
            with stage(f"features {p.pair_id}") as st:
                reports.append(build_pair_features(cfg, cat, p, timeframe))
                st.detail = f"{reports[-1].aligned_bars:,} bars"
        for s in symbols:
            with stage(f"features {s}") as st:
                reports.append(build_symbol_features(cfg, cat, s, timeframe))
                st.detail = f"{reports[-1].aligned_bars:,} bars"
    for r in reports:
        dropped = (
            f", dropped A {r.dropped_bars['A']}, B {r.dropped_bars['B']}" if r.dropped_bars else ""
        )
        text(
            f"features {r.pair_id} {r.timeframe} (hash {r.feature_hash[:12]}): "
            f"{r.aligned_bars} bars{dropped}, warm-up {r.warm_up_bars}; "
            f"computed {len(r.months_computed)} month(s), from cache {len(r.months_cached)}"
        )
        if r.months_computed:
            text(f"  computed: {months_shown(r.months_computed)}")
        text(f"  report: {r.report_path}")
