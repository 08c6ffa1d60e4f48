"""The workers' one-bar scoring equals the backtest's batch scoring, value for value, for
LightGBM and XGBoost models calibrated on either input."""

from __future__ import annotations

import types

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from mlcore.execution import IsotonicCalibrator, ModelInputs
from mlcore.execution._models import _Classifier
from mlcore.serving import INPUT_NAMES
from mlcore.serving._scorer import _compile

COLUMNS = ["z", "dz", "z_ema", "dz_ema", "atr_ratio", "rho_var", "event_direction", "event_abs_z0"]


def _frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    data = {name: rng.normal(size=n) for name in INPUT_NAMES}
    data["event_direction"] = np.sign(data["z"])
    data["event_abs_z0"] = np.abs(data["z"])
    return pd.DataFrame(data)


@pytest.mark.parametrize("library", ["lightgbm", "xgboost"])
@pytest.mark.parametrize("response", ["decision_function", "predict_proba"])
def test_one_bar_scores_equal_the_batch(library: str, response: str) -> None:
    rng = np.random.default_rng(11)
    train = _frame(rng, 600)
    y = (train["z"] + 0.5 * train["dz"] + rng.normal(0, 0.7, 600) > 0).astype(int)
    inputs = ModelInputs.fit(train, COLUMNS, COLUMNS[:6], clip=3.0)
    X, _ = inputs.transform(train)
    booster: lgb.Booster | xgb.Booster
    if library == "lightgbm":
        params = {"objective": "binary", "num_leaves": 15, "verbose": -1, "num_threads": 1}
        booster = lgb.train(params, lgb.Dataset(X, y), num_boost_round=40)
        raw = booster.predict(X, raw_score=True)
        score = raw if response == "decision_function" else 1 / (1 + np.exp(-raw))
    else:
        booster = xgb.train({"objective": "binary:logistic", "max_depth": 4, "nthread": 1},
                            xgb.DMatrix(X, y), num_boost_round=40)  # fmt: skip
        kind = "margin" if response == "decision_function" else "value"
        score = booster.inplace_predict(X, predict_type=kind)
    order = np.argsort(score)
    cal = IsotonicCalibrator(np.asarray(score)[order][::20], np.linspace(0, 1, len(order[::20])),
                             response)  # fmt: skip
    clf = _Classifier(booster, inputs, cal)
    test = _frame(rng, 400)
    test.loc[5, "dz"] = np.nan  # an incomplete row: NaN on both paths
    batch = np.full(len(test), np.nan)
    ok = clf.complete(test)
    batch[ok] = clf.predict(test[ok])
    fast = _compile(types.SimpleNamespace(version="v", ai1=clf), "ai1")  # type: ignore[arg-type]
    vectors = test[list(INPUT_NAMES)].to_numpy()
    live = np.array([fast.score(v) for v in vectors])
    np.testing.assert_array_equal(live, batch)
    assert np.isnan(live[5])
