"""Features stage: pair features (batch and a streaming twin over one compiled definition)."""

from mlcore.features._engine import (
    PairFeatureEngine,
    align_legs,
    longest_window,
    pair_batch_values,
    pair_features,
)
from mlcore.features._kernels import PAIR_FEATURES
from mlcore.features._reference import reference_pair_features

__all__ = [
    "PAIR_FEATURES",
    "PairFeatureEngine",
    "align_legs",
    "longest_window",
    "pair_batch_values",
    "pair_features",
    "reference_pair_features",
]
