"""Data stage: providers, canonical bars, data-quality rules, Parquet store and catalog."""

from mlcore.data._atomic import replace_dir, write_atomic
from mlcore.data._calendar import expected_grid
from mlcore.data._catalog import Catalog, CatalogSummary, build_catalog, exclusion_reasons
from mlcore.data._dq import FLAGS, DQResult, Gap, classify_moves, run_dq
from mlcore.data._failover import FailoverProvider, build_providers
from mlcore.data._file import FileProvider, read_table
from mlcore.data._guard import LiveBarGuard, trailing_sigma
from mlcore.data._ingest import (
    IngestReport,
    ingest,
    normalize_symbol,
    resolve_calendar,
)
from mlcore.data._pairs import PairChoice, pairs_at
from mlcore.data._parse import BAR_COLUMNS, DateOrder, check_date_format, parse_table
from mlcore.data._provider import FetchResult, MarketDataProvider, Reject
from mlcore.data._raw import read_watermark
from mlcore.data._store import PartitionStore, bars_hash, symbol_dirname
from mlcore.data._synthetic import (
    PlantedFault,
    SyntheticMarket,
    SyntheticPair,
    default_pairs,
    generate_market,
    generate_pair,
    malformed_rows,
    regime_pairs,
)
from mlcore.data._twelvedata import TokenBucket, TwelveDataProvider

__all__ = [
    "BAR_COLUMNS",
    "FLAGS",
    "Catalog",
    "CatalogSummary",
    "DQResult",
    "DateOrder",
    "FailoverProvider",
    "FetchResult",
    "FileProvider",
    "Gap",
    "IngestReport",
    "LiveBarGuard",
    "MarketDataProvider",
    "PairChoice",
    "PartitionStore",
    "PlantedFault",
    "Reject",
    "SyntheticMarket",
    "SyntheticPair",
    "TokenBucket",
    "TwelveDataProvider",
    "bars_hash",
    "build_catalog",
    "build_providers",
    "check_date_format",
    "classify_moves",
    "default_pairs",
    "exclusion_reasons",
    "expected_grid",
    "generate_market",
    "generate_pair",
    "ingest",
    "malformed_rows",
    "normalize_symbol",
    "pairs_at",
    "parse_table",
    "read_table",
    "read_watermark",
    "regime_pairs",
    "replace_dir",
    "resolve_calendar",
    "run_dq",
    "symbol_dirname",
    "trailing_sigma",
    "write_atomic",
]
