"""The feedback check's hostile inputs: no deployed version, a version that does not say where
its training ended, a pair without cached features, windows too short to judge, an unreadable
cached null table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mlcore.cli import app
from mlcore.config import AppConfig
from mlcore.errors import MissingDataError
from mlcore.feedback import Verdict, reference
from mlcore.feedback._triggers import (
    _null_path,
    cached_null,
    drift_result,
    pair_windows,
    training_end,
)
from tests.conftest import CONFIG_ROOT, make_version


def test_no_deployed_version_is_one_line(cfg: AppConfig) -> None:
    result = CliRunner().invoke(app, ["feedback", "check", "--config-root", str(CONFIG_ROOT)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if ln and not ln.startswith("{")]
    assert len(lines) == 1 and "FEEDBACK_CHECK_NO_VERSION" in lines[0], result.output


def test_a_version_without_its_training_end_is_named(cfg: AppConfig) -> None:
    folder = make_version(cfg.paths.models, "20260101_0000_abc1234")  # metrics: no split_ts
    with pytest.raises(MissingDataError, match=r"no ai1\.split_ts\.calibration_start"):
        training_end(folder)
    (folder / "metrics.json").write_text("{not json")
    with pytest.raises(MissingDataError, match=r"metrics\.json: JSONDecodeError"):
        training_end(folder)


def test_short_or_featureless_windows_are_inconclusive(cfg: AppConfig) -> None:
    ts = pd.date_range("2025-01-01", periods=300, freq="h", tz="UTC")
    frame = pd.DataFrame({"ts": ts, "z": np.arange(300.0), "other": 1.0})
    w = pair_windows(frame, ["z", "dz"], ts[250], 500)
    assert w.features == ("z",) and len(w.train) == 250 and len(w.live) == 50
    assert w.live_from == ts[250].isoformat() and w.live_to == ts[-1].isoformat()
    result = drift_result(cfg, "v", "P", w)
    assert result.verdict is Verdict.INCONCLUSIVE and "250 training bars" in result.reason
    none = drift_result(cfg, "v", "P", pair_windows(frame, ["dz"], ts[250], 500))
    assert none.verdict is Verdict.INCONCLUSIVE and "no model feature" in none.reason
    empty = pair_windows(frame, ["z"], ts[-1] + pd.Timedelta(hours=1), 500)
    assert len(empty.live) == 0 and empty.live_from is None


def test_an_unreadable_cached_null_table_is_simulated_again(cfg: AppConfig) -> None:
    rng = np.random.default_rng(0)
    train = rng.standard_normal((600, 2))
    ref = reference(train, ("a", "b"), 10, 1e-4)
    first = cached_null(cfg, "v1", "P", train, ref, 100)
    [path] = list(_null_path(cfg, "v1", "P", "x").parent.glob("*.npz"))
    path.write_bytes(b"garbage")
    again = cached_null(cfg, "v1", "P", train, ref, 100)
    assert np.array_equal(first.psi, again.psi) and np.array_equal(first.shift, again.shift)
    assert np.load(path)["psi"].shape == first.psi.shape  # stored again
    assert json.dumps(first.window_bars) == "100"


def test_policy_rejects_windows_that_cannot_be_judged(cfg: AppConfig) -> None:
    from pydantic import ValidationError

    from mlcore.config import DecayPolicy, DriftPolicy

    drift = cfg.analytics.drift.model_dump()
    with pytest.raises(ValidationError, match="no live window could be judged"):
        DriftPolicy.model_validate(drift | {"min_live_bars": drift["live_window_bars"] + 1})
    with pytest.raises(ValidationError, match="a full live window could never be judged"):
        DriftPolicy.model_validate(drift | {"min_training_bars": drift["live_window_bars"]})
    with pytest.raises(ValidationError, match="extra"):
        DriftPolicy.model_validate(drift | {"psi_cutoff": 0.25})
    decay = cfg.analytics.decay.model_dump()
    with pytest.raises(ValidationError, match="low < high"):
        DecayPolicy.model_validate(decay | {"pass_rate_band": [0.4, 0.05]})
