"""Features stage: pair features (batch and a streaming twin over one compiled definition),
robust scaling and the feature schema."""

from mlcore.features._cache import (
    FeatureBuildReport,
    build_pair_features,
    build_symbol_features,
    load_pair_features,
    load_symbol_features,
    pair_feature_hash,
    segment_starts,
    single_feature_hash,
)
from mlcore.features._engine import (
    PairFeatureEngine,
    SingleFeatureEngine,
    align_legs,
    longest_window,
    pair_batch_values,
    pair_features,
    single_features,
)
from mlcore.features._kernels import PAIR_FEATURES, SINGLE_FEATURES
from mlcore.features._levels import LEVELS, feature_levels
from mlcore.features._reference import reference_pair_features
from mlcore.features._scaler import RobustScaler, feature_hash, schema_bytes

__all__ = [
    "LEVELS",
    "PAIR_FEATURES",
    "SINGLE_FEATURES",
    "FeatureBuildReport",
    "PairFeatureEngine",
    "RobustScaler",
    "SingleFeatureEngine",
    "align_legs",
    "build_pair_features",
    "build_symbol_features",
    "feature_hash",
    "feature_levels",
    "load_pair_features",
    "load_symbol_features",
    "longest_window",
    "pair_batch_values",
    "pair_feature_hash",
    "pair_features",
    "reference_pair_features",
    "schema_bytes",
    "segment_starts",
    "single_feature_hash",
    "single_features",
]
