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
from mlcore.training._dataset import LabelledPair, ai1_rows, ai2_rows, bar_numbers, label_pair
from mlcore.training._inputs import ModelInputs
from mlcore.training._run import TrainReport, binary_config, train_models

__all__ = [
    "BinaryTrainConfig",
    "BinaryTrainResult",
    "IsotonicCalibrator",
    "LabelledPair",
    "ModelInputs",
    "TrainReport",
    "ai1_rows",
    "ai2_rows",
    "bar_numbers",
    "binary_config",
    "label_pair",
    "permute_within_blocks",
    "recent_hit_rate",
    "train_binary",
    "train_models",
]
