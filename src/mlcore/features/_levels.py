"""Feature levels of 003 from feature_order.yaml, checked against the features computed here."""

from __future__ import annotations

from mlcore.config import FeatureLevels
from mlcore.errors import ConfigError
from mlcore.features._kernels import SINGLE_FEATURES

LEVELS = (1, 2, 3)


def feature_levels(levels: FeatureLevels) -> dict[int, tuple[str, ...]]:
    """Ordered columns of each level: 3 = basic, 2 = basic + signals, 1 = 2 + external.

    Raises ConfigError when a level-2/3 name is not a feature this package computes, or when a
    computed feature is listed in no level.
    """
    computed = set(SINGLE_FEATURES)
    listed = levels.level3_basic + levels.level2_strategy_signals
    unknown = [n for n in listed if n not in computed]
    if unknown:
        raise ConfigError(
            "CONFIG_FEATURE_UNKNOWN",
            f"feature_order.yaml: key 'single': {unknown} are not computed features "
            f"(known: {sorted(computed)})",
        )
    unlisted = sorted(computed - set(listed))
    if unlisted:
        raise ConfigError(
            "CONFIG_FEATURE_UNLISTED",
            f"feature_order.yaml: key 'single': computed features {unlisted} are in no level",
        )
    level3 = tuple(levels.level3_basic)
    level2 = level3 + tuple(levels.level2_strategy_signals)
    return {3: level3, 2: level2, 1: level2 + tuple(levels.level1_external)}
