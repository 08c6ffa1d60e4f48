"""Signals stage: the live decision rules (the backtest's, bar by bar), β-neutral legs rounded
to the venue's lots with their costs, and the signal record with its JSON Schema."""

from mlcore.signals._decision import (
    ENTRY,
    EXIT,
    HOLD,
    Decision,
    DecisionRules,
    PairDecider,
)
from mlcore.signals._legs import LegSpec, Sizing, leg_records, size_legs
from mlcore.signals._schema import (
    SCHEMA_NAME,
    build_signal,
    encode_signal,
    iso_utc,
    signal_id,
    signal_schema,
    validate_signal,
)

__all__ = [
    "ENTRY",
    "EXIT",
    "HOLD",
    "SCHEMA_NAME",
    "Decision",
    "DecisionRules",
    "LegSpec",
    "PairDecider",
    "Sizing",
    "build_signal",
    "encode_signal",
    "iso_utc",
    "leg_records",
    "signal_id",
    "signal_schema",
    "size_legs",
    "validate_signal",
]
