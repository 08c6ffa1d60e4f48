"""Execution stage: what research (backtest, training) and live (serving, signals) share, below
both — a leg's cost rates and time-of-day slippage, a model's inputs and their scaling, the
isotonic calibration map, the compiled tree walk, a model version's checksummed files, its pair
models and its decision parameters (θ). It imports neither research nor serving code, and no
scikit-learn, Optuna, plotly or Alembic (LightGBM/XGBoost load with a model version)."""

from mlcore.execution._artifacts import read_checked, read_checksums
from mlcore.execution._calibration import IsotonicCalibrator
from mlcore.execution._costs import (
    ZERO_COSTS,
    LegCosts,
    leg_costs,
    slippage_factor_at,
    slippage_factors,
)
from mlcore.execution._inputs import ModelInputs
from mlcore.execution._models import PairModels, is_lightgbm
from mlcore.execution._params import (
    DECISION_RECORD,
    VersionParams,
    check_serving,
    decision_record,
    no_record,
    pairs_to_serve,
    parse_params,
    read_params,
    record_bytes,
    version_config,
)
from mlcore.execution._trees import CompiledTrees, link, walk
from mlcore.execution._version import (
    BACKTEST_RECORD,
    checked_theta,
    previous_theta,
    read_theta,
    resolve_model,
)

__all__ = [
    "BACKTEST_RECORD",
    "DECISION_RECORD",
    "ZERO_COSTS",
    "CompiledTrees",
    "IsotonicCalibrator",
    "LegCosts",
    "ModelInputs",
    "PairModels",
    "VersionParams",
    "check_serving",
    "checked_theta",
    "decision_record",
    "is_lightgbm",
    "leg_costs",
    "link",
    "no_record",
    "pairs_to_serve",
    "parse_params",
    "previous_theta",
    "read_checked",
    "read_checksums",
    "read_params",
    "read_theta",
    "record_bytes",
    "resolve_model",
    "slippage_factor_at",
    "slippage_factors",
    "version_config",
    "walk",
]
