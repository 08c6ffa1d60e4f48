"""Training stage: the AI1/AI2/AI3 trainers with purged CV, Optuna and isotonic calibration,
the direction ensemble per feature level, the leakage canary, and the training run that writes
a model version."""

from mlcore.training._binary import (
    BinaryTrainConfig,
    BinaryTrainResult,
    recent_hit_rate,
    train_binary,
)
from mlcore.training._calibration import fit_isotonic
from mlcore.training._canary import permute_within_blocks
from mlcore.training._dataset import (
    LabelledPair,
    ai1_rows,
    ai2_rows,
    bar_numbers,
    direction_rows,
    label_pair,
)
from mlcore.training._direction import (
    DirectionTrainConfig,
    DirectionTrainResult,
    train_direction,
    tune_direction,
)
from mlcore.training._run import (
    TrainReport,
    TrainStatus,
    binary_config,
    code_hash,
    direction_config,
    train_models,
)

__all__ = [
    "BinaryTrainConfig",
    "BinaryTrainResult",
    "DirectionTrainConfig",
    "DirectionTrainResult",
    "LabelledPair",
    "TrainReport",
    "TrainStatus",
    "ai1_rows",
    "ai2_rows",
    "bar_numbers",
    "binary_config",
    "code_hash",
    "direction_config",
    "direction_rows",
    "fit_isotonic",
    "label_pair",
    "permute_within_blocks",
    "recent_hit_rate",
    "train_binary",
    "train_direction",
    "train_models",
    "tune_direction",
]
