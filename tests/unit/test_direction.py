"""The direction ensemble: trained per level with purged CV and a canary, reproducible byte for
byte, SMOTE only on fitting rows, stored natively and served with level 1 -> 2 -> 3 -> HOLD
fallback that is logged and counted."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from structlog.testing import capture_logs

from mlcore.models import (
    ALIASES,
    HOLD_LEVEL,
    DirectionModel,
    level_file_names,
    load_level,
)
from mlcore.training import (
    BinaryTrainConfig,
    DirectionTrainConfig,
    DirectionTrainResult,
    train_direction,
    tune_direction,
)
from mlcore.training._binary import early_stopping_split

HORIZON = 3
LEVEL_COLUMNS = {
    3: ["a", "b", "c"],
    2: ["a", "b", "c", "signal"],
    1: ["a", "b", "c", "signal", "external"],
}
FAST = DirectionTrainConfig(
    base=BinaryTrainConfig(
        n_folds=3, purge_bars=HORIZON, embargo_bars=HORIZON, min_block_bars=240,
        test_share=0.2, early_stopping_share=0.2, max_rounds=60, early_stopping_rounds=10,
        learning_rate=0.1, num_leaves=7, min_child_samples=20, canary_block_bars=200, seed=3,
    ),
    rf_n_estimators=15, rf_max_depth=5, rf_min_samples_leaf=20, threads=2, canary_repeats=2,
)  # fmt: skip


def _bars(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """Bars whose next-``HORIZON`` direction depends on ``a`` (and a little on ``signal``)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 5)), columns=LEVEL_COLUMNS[1])
    score = frame["a"] + 0.3 * frame["signal"] + rng.normal(scale=0.8, size=n)
    frame["label"] = np.digitize(score, [-0.6, 0.6])  # SELL / HOLD / BUY
    frame["t0"] = np.arange(n)
    frame["t1"] = frame["t0"] + HORIZON
    return frame


def _train(
    frame: pd.DataFrame, level: int, cfg: DirectionTrainConfig = FAST
) -> DirectionTrainResult:
    cols = LEVEL_COLUMNS[level]
    return train_direction(
        frame[cols].to_numpy(), frame["label"].to_numpy(), frame["t0"].to_numpy(),
        frame["t1"].to_numpy(), cfg, level, cols,
    )  # fmt: skip


@pytest.fixture(scope="module")
def trained() -> dict[int, DirectionTrainResult]:
    frame = _bars()
    return {level: _train(frame, level) for level in (1, 2, 3)}


def _write(folder: Path, results: dict[int, DirectionTrainResult]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {}
    for r in results.values():
        files |= r.files()
    for name, body in files.items():
        (folder / name).write_bytes(body)
    _write_sums(folder)
    return folder


def _write_sums(folder: Path) -> None:
    sums = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.name != "checksums.json"
    }
    (folder / "checksums.json").write_text(json.dumps(sums))


def test_the_ensemble_learns_and_reports_full_metrics_and_a_passing_canary(
    trained: dict[int, DirectionTrainResult],
) -> None:
    for level, r in trained.items():
        m = r.metrics
        assert r.blocked_reasons == [], level
        for part in ("cv_out_of_fold", "oos"):
            for key in ("auc", "pr_auc", "logloss", "brier", "ece", "f1"):
                assert m[part][key] is not None, (level, part, key)
        # Real signal in `a`: well above chance, and better than the no-skill prior.
        assert m["oos"]["auc"] > 0.75
        assert m["oos"]["logloss"] < m["oos"]["prior_logloss"] - 0.1
        assert abs(m["canary"]["auc_mean"] - 0.5) <= 0.03 and m["canary"]["passed"]
        assert len(m["cv_folds"]) == 3
        importance = m["feature_importance"]["ensemble"]
        assert max(importance, key=importance.__getitem__) == "a"
        assert sum(importance.values()) == pytest.approx(1.0)
        assert set(m["oos_components"]) == {"lightgbm", "xgboost", "random_forest"}


def test_same_data_and_seed_give_the_same_bytes_whatever_the_threads(
    trained: dict[int, DirectionTrainResult],
) -> None:
    frame = _bars()
    again = _train(frame, 3, replace(FAST, threads=1, canary_repeats=1))
    first = trained[3].files()
    assert again.files() == first
    other = _train(frame, 3, replace(FAST, base=replace(FAST.base, seed=4), canary_repeats=1))
    assert other.files() != first


def test_smote_oversamples_only_the_fitting_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    from imblearn.over_sampling import SMOTE

    seen: list[np.ndarray] = []
    real = SMOTE.fit_resample

    def spy(self: SMOTE, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seen.append(np.array(X))
        return real(self, X, y)  # type: ignore[no-any-return]

    monkeypatch.setattr(SMOTE, "fit_resample", spy)
    frame = _bars(seed=1)
    cfg = replace(FAST, smote=True, canary_repeats=1, threads=1)
    result = _train(frame, 3, cfg)
    assert result.blocked_reasons == []
    assert result.metrics["smote"] is True
    # 3 CV folds + the final fit + 3 canary folds, each resampling only its fitting part.
    assert len(seen) == 7
    X = frame[LEVEL_COLUMNS[3]].to_numpy()
    t0, t1 = frame["t0"].to_numpy(), frame["t1"].to_numpy()
    n_test = len(frame) - int(len(frame) * 0.8)
    dev = np.arange(len(frame) - n_test)
    dev = dev[t1[dev] < t0[len(frame) - n_test]]
    fit_idx, _ = early_stopping_split(t0, t1, dev, cfg.base)
    # The final fit resamples exactly its fitting rows: no early-stopping or test row.
    np.testing.assert_array_equal(seen[3], X[fit_idx])
    test_rows = set(map(tuple, X[len(frame) - n_test :]))
    for batch in seen:  # no CV or canary fit ever sees a test row
        assert not test_rows.intersection(map(tuple, batch))


def test_bad_training_input_is_refused_with_what_is_wrong() -> None:
    frame = _bars()
    cols = LEVEL_COLUMNS[3]
    X, y = frame[cols].to_numpy(), frame["label"].to_numpy()
    t0, t1 = frame["t0"].to_numpy(), frame["t1"].to_numpy()
    with pytest.raises(ValueError, match="one column per feature name"):
        train_direction(X, y, t0, t1, FAST, 3, cols[:2])
    with pytest.raises(ValueError, match="0 \\(SELL\\), 1 \\(HOLD\\), 2 \\(BUY\\)"):
        train_direction(X, np.where(y == 2, 5, y), t0, t1, FAST, 3, cols)
    bad = X.copy()
    bad[10, 1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        train_direction(bad, y, t0, t1, FAST, 3, cols)
    with pytest.raises(ValueError, match="time order"):
        train_direction(X, y, t0[::-1].copy(), t1, FAST, 3, cols)
    no_sell = np.where(y == 0, 1, y)
    with pytest.raises(ValueError, match="every one of \\['SELL', 'HOLD', 'BUY'\\] is needed"):
        train_direction(X, no_sell, t0, t1, FAST, 3, cols)


def test_tuning_is_seeded_and_keeps_to_the_development_part() -> None:
    frame = _bars(n=2000)
    cols = LEVEL_COLUMNS[3]
    args = (frame[cols].to_numpy(), frame["label"].to_numpy(), frame["t0"].to_numpy(),
            frame["t1"].to_numpy())  # fmt: skip
    cfg = replace(FAST, base=replace(FAST.base, max_rounds=20))
    tuned, summary = tune_direction(*args, cfg, 2)
    again, summary2 = tune_direction(*args, cfg, 2)
    assert summary["trials"] == 2 and summary == summary2 and tuned == again
    assert tuned.rf_max_depth == summary["best_params"]["rf_max_depth"]
    assert tune_direction(*args, cfg, 0) == (cfg, {"trials": 0})


# --- stored and served --------------------------------------------------------------------


def test_the_stored_levels_predict_as_the_fitted_ensembles(
    trained: dict[int, DirectionTrainResult], tmp_path: Path
) -> None:
    folder = _write(tmp_path / "v", trained)
    sums = json.loads((folder / "checksums.json").read_text())
    X = _bars(n=400, seed=9)
    for level, r in trained.items():
        ens = load_level(folder, level, sums)
        assert list(ens.columns) == LEVEL_COLUMNS[level]
        Xl = X[LEVEL_COLUMNS[level]].to_numpy()
        want = r.components.proba(Xl, r.weights)
        got = ens.component_proba(Xl)
        for name in ("lightgbm", "xgboost", "random_forest"):
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
        np.testing.assert_array_equal(ens.predict_proba(Xl), want["ensemble"])


def test_each_row_is_served_by_its_best_usable_level(
    trained: dict[int, DirectionTrainResult], tmp_path: Path
) -> None:
    model = DirectionModel.load(_write(tmp_path / "v", trained))
    assert set(model.levels) == {1, 2, 3} and model.unavailable == {}
    rows = _bars(n=40, seed=8)[LEVEL_COLUMNS[1]].copy()
    rows.loc[10:19, "external"] = np.nan  # external API down: level 2
    rows.loc[20:29, ["external", "signal"]] = np.nan  # level 3
    rows.loc[30:39, "a"] = np.inf  # nothing usable: HOLD
    with capture_logs() as logs:
        pred = model.predict(rows)
    assert pred.level.tolist() == [1] * 10 + [2] * 10 + [3] * 10 + [HOLD_LEVEL] * 10
    np.testing.assert_array_equal(pred.proba[30:], np.tile([0.0, 1.0, 0.0], (10, 1)))
    assert (pred.label[30:] == 1).all()
    np.testing.assert_allclose(pred.proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert dict(model.fallbacks) == {
        "level1: features not finite": 30,
        "level2: features not finite": 20,
        "level3: features not finite": 10,
    }
    assert dict(model.served) == {1: 10, 2: 10, 3: 10, 0: 10}
    fallback_logs = [e for e in logs if e["event"] == "direction_level_fallback"]
    assert [e["level"] for e in fallback_logs] == [2, 3, 0]
    # A frame without the external column at all: level 2 for every complete row.
    pred = model.predict(rows.drop(columns=["external"]).iloc[:10])
    assert (pred.level == 2).all()
    assert model.fallbacks["level1: features absent ['external']"] == 10


def test_missing_or_corrupt_files_fall_back_and_are_counted(
    trained: dict[int, DirectionTrainResult], tmp_path: Path
) -> None:
    folder = _write(tmp_path / "v", trained)
    (folder / level_file_names(1)["lightgbm"]).unlink()
    xgb_file = folder / level_file_names(2)["xgboost"]
    body = bytearray(xgb_file.read_bytes())
    body[100] ^= 1
    xgb_file.write_bytes(bytes(body))
    with capture_logs() as logs:
        model = DirectionModel.load(folder)
    assert set(model.levels) == {3}
    assert model.unavailable[1] == "ensemble_level1.lightgbm.txt: missing"
    assert model.unavailable[2].startswith("ensemble_level2.xgboost.json: checksum mismatch")
    assert {e["level"] for e in logs if e["event"] == "direction_level_unavailable"} == {1, 2}
    rows = _bars(n=5, seed=2)[LEVEL_COLUMNS[1]]
    pred = model.predict(rows)
    assert (pred.level == 3).all()
    assert model.fallbacks == {
        "level1: ensemble_level1.lightgbm.txt: missing": 5,
        f"level2: {model.unavailable[2]}": 5,
    }


def test_without_checksums_nothing_is_trusted(
    trained: dict[int, DirectionTrainResult], tmp_path: Path
) -> None:
    folder = _write(tmp_path / "v", trained)
    (folder / "checksums.json").unlink()
    model = DirectionModel.load(folder)
    assert model.levels == {}
    assert all("checksums.json: missing" in r for r in model.unavailable.values())
    pred = model.predict(_bars(n=3)[LEVEL_COLUMNS[1]])
    assert (pred.level == HOLD_LEVEL).all() and (pred.label == 1).all()


def test_old_003_names_are_read_and_pickles_are_not(
    trained: dict[int, DirectionTrainResult], tmp_path: Path
) -> None:
    folder = _write(tmp_path / "v", trained)
    for level in (2, 3):
        for name in level_file_names(level).values():
            shutil.move(
                folder / name, folder / name.replace(f"ensemble_level{level}", ALIASES[level])
            )
    # An old pickle in place of level 3's files: never loaded.
    for name in level_file_names(3, ALIASES[3]).values():
        (folder / name).unlink()
    (folder / f"{ALIASES[3]}.pkl").write_bytes(b"\x80\x04not to be loaded")
    _write_sums(folder)
    model = DirectionModel.load(folder)
    assert set(model.levels) == {1, 2}
    assert model.levels[2].columns == tuple(LEVEL_COLUMNS[2])
    assert model.unavailable[3] == (
        "only ['production_ensemble_57.pkl'] found: pickle files are never loaded"
    )


def test_a_malformed_level_description_is_named(
    trained: dict[int, DirectionTrainResult], tmp_path: Path
) -> None:
    folder = _write(tmp_path / "v", {3: trained[3]})
    meta = folder / level_file_names(3)["meta"]
    doc = json.loads(meta.read_text())
    meta.write_text(json.dumps({**doc, "columns": ["a", "b"]}))
    _write_sums(folder)
    model = DirectionModel.load(folder)
    assert model.unavailable[3] == (
        "ensemble_level3.json: 2 columns but models expect "
        "{'lightgbm': 3, 'xgboost': 3, 'random_forest': 3}"
    )
    meta.write_text("{not json")
    _write_sums(folder)
    assert DirectionModel.load(folder).unavailable[3].startswith("ensemble_level3.json: malformed")
