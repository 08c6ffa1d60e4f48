"""Model artifacts as served: the direction ensemble's levels with their fallback, and the
random forest stored without pickle. (A version's checksummed files and the compiled tree walk
are in :mod:`mlcore.execution`.)"""

from mlcore.models._direction import (
    ALIASES,
    CLASS_NAMES,
    COMPONENTS,
    HOLD_LEVEL,
    HOLD_PROBA,
    LEVELS,
    DirectionEnsemble,
    DirectionModel,
    DirectionPrediction,
    level_file_names,
    level_prefix,
    load_level,
    soft_vote,
    unit_rows,
)
from mlcore.models._forest import ForestModel, forest_to_json

__all__ = [
    "ALIASES",
    "CLASS_NAMES",
    "COMPONENTS",
    "HOLD_LEVEL",
    "HOLD_PROBA",
    "LEVELS",
    "DirectionEnsemble",
    "DirectionModel",
    "DirectionPrediction",
    "ForestModel",
    "forest_to_json",
    "level_file_names",
    "level_prefix",
    "load_level",
    "soft_vote",
    "unit_rows",
]
