"""Training stage: calibration that is stored without pickle, the leakage canary's control
target, and (next) the AI1/AI2/AI3 trainers."""

from mlcore.training._binary import (
    BinaryTrainConfig,
    BinaryTrainResult,
    recent_hit_rate,
    train_binary,
)
from mlcore.training._calibration import IsotonicCalibrator
from mlcore.training._canary import permute_within_blocks

__all__ = [
    "BinaryTrainConfig",
    "BinaryTrainResult",
    "IsotonicCalibrator",
    "permute_within_blocks",
    "recent_hit_rate",
    "train_binary",
]
