"""Label stage: AI1 reversion events, AI2 risk, AI3 position-scale targets, direction classes.

Pure computation on bar-aligned numpy arrays (spec 002 ラベリング仕様, spec 003). ``-1`` marks
"no label" in every integer output.
"""

from mlcore.labels._ai1 import EVENT_COLUMNS, ai1_events
from mlcore.labels._ai2 import ai2_class_weights, ai2_labels
from mlcore.labels._ai3 import ai3_targets
from mlcore.labels._direction import BUY, HOLD, SELL, direction_labels
from mlcore.labels._validate import NO_LABEL

__all__ = [
    "BUY",
    "EVENT_COLUMNS",
    "HOLD",
    "NO_LABEL",
    "SELL",
    "ai1_events",
    "ai2_class_weights",
    "ai2_labels",
    "ai3_targets",
    "direction_labels",
]
