"""Robust scaler: fitted on the training window only, stored exactly, clipped, hashed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlcore.features import RobustScaler, feature_hash, schema_bytes

NAMES = ["z", "beta", "rho_rolling"]


def _data(n: int = 2_000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal([0.0, 0.8, 0.5], [1.0, 0.05, 0.1], size=(n, 3))
    x[:50] = np.nan  # warm-up rows
    return x


def test_fit_uses_median_and_mad_of_the_training_window_only() -> None:
    x = _data()
    train, test = x[:1_000], x[1_000:] * 10  # test data far away must not move the scaler
    scaler = RobustScaler(NAMES, clip=5.0).fit(train)
    med = np.nanmedian(train, axis=0)
    mad = np.nanmedian(np.abs(train - med), axis=0)
    np.testing.assert_array_equal(scaler.median_, med)
    np.testing.assert_array_equal(scaler.scale_, 1.4826 * mad)
    scaled, clipped = scaler.transform(test)
    expect = np.clip((test - med) / (1.4826 * mad), -5, 5)
    np.testing.assert_array_equal(scaled, expect)
    assert clipped.tolist() == (np.abs((test - med) / (1.4826 * mad)) > 5).sum(axis=0).tolist()
    assert np.abs(scaled).max() == 5.0


def test_schema_round_trip_is_exact_and_ordered() -> None:
    scaler = RobustScaler(NAMES, clip=5.0).fit(_data())
    schema = json.loads(schema_bytes(scaler.to_schema()))
    assert [f["name"] for f in schema["features"]] == NAMES
    assert {f["dtype"] for f in schema["features"]} == {"float64"}
    again = RobustScaler.from_schema(schema)
    x = _data(seed=1)[60:]
    np.testing.assert_array_equal(scaler.transform(x)[0], again.transform(x)[0])


def test_feature_hash_changes_with_schema_or_preprocessing() -> None:
    schema = RobustScaler(NAMES, clip=5.0).fit(_data()).to_schema()
    prep = {"beta_window": 240, "z_window": 96}
    h = feature_hash(schema, prep)
    assert h == feature_hash(json.loads(schema_bytes(schema)), dict(reversed(prep.items())))
    assert h != feature_hash(schema, {**prep, "z_window": 97})
    other = RobustScaler(NAMES, clip=4.0).fit(_data()).to_schema()
    assert h != feature_hash(other, prep)


def test_bad_inputs_are_refused_clearly() -> None:
    x = _data()
    scaler = RobustScaler(NAMES, clip=5.0)
    with pytest.raises(ValueError, match="not fitted"):
        scaler.transform(x[60:])
    with pytest.raises(ValueError, match=r"3 columns"):
        scaler.fit(x[:, :2])
    const = x.copy()
    const[:, 1] = 0.8
    with pytest.raises(ValueError, match=r"\['beta'\] have zero or undefined MAD"):
        RobustScaler(NAMES, clip=5.0).fit(const)
    scaler.fit(x)
    with pytest.raises(ValueError, match="'z' holds NaN: drop or flag warm-up rows"):
        scaler.transform(x)
    inf = x[60:].copy()
    inf[3, 2] = np.inf
    with pytest.raises(ValueError, match="'rho_rolling' holds inf"):
        scaler.transform(inf)
    with pytest.raises(ValueError, match="unique"):
        RobustScaler(["z", "z"], clip=5.0)
    with pytest.raises(ValueError, match="schema version"):
        RobustScaler.from_schema({"schema_version": 99})
