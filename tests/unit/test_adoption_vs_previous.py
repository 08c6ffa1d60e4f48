"""The adoption checklist's two checks against the previously deployed version (001
自動再学習フロー): AI1's out-of-sample AUC down by 0.02 or more, or a test Sharpe below 0.9 x the
previous one's, fails adoption with its reason; without a previous version they do not apply."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlcore.config import AppConfig
from mlcore.flows import adoption_checklist
from mlcore.flows._publish import versus_previous
from tests.conftest import make_version


def _version(root: Path, name: str, auc: float | None) -> Path:
    folder = make_version(root, name)
    ai1 = {"oos_raw": {"auc": auc}} if auc is not None else {}
    body = json.dumps({"ai1": ai1, "retrain_status": "ok", "blocked_reasons": []}).encode()
    (folder / "metrics.json").write_bytes(body)
    sums = json.loads((folder / "checksums.json").read_text())
    sums["metrics.json"] = hashlib.sha256(body).hexdigest()
    (folder / "checksums.json").write_text(json.dumps(sums))
    return folder


def _backtest(folder: Path, sharpe: float | None) -> Path:
    folder.mkdir(parents=True)
    gates = [{"gate": "sharpe", "passed": True}]
    record = {"decision": "adopt", "gates": gates, "theta": {"adopted": [0.72, 0.28]},
              "lineage": {"data_hash": "d" * 64}, "test": {"sharpe": sharpe}}  # fmt: skip
    (folder / "backtest.json").write_text(json.dumps(record))
    return folder


@pytest.mark.parametrize(
    ("auc", "sharpe", "failed"),
    [
        (0.60, 1.80, []),  # AUC -0.01, Sharpe 0.9 x exactly: both pass
        (0.59, 1.90, ["auc_vs_previous"]),  # a drop of 0.02 fails
        (0.61, 1.79, ["sharpe_vs_previous"]),
        (0.50, 1.00, ["auc_vs_previous", "sharpe_vs_previous"]),
    ],
)
def test_against_the_previous_version(
    cfg: AppConfig, auc: float, sharpe: float, failed: list[str]
) -> None:
    reports = cfg.paths.reports / "backtest"
    old = _version(cfg.paths.models, "20260101_0000_aaaaaaa", 0.61)
    _backtest(reports / old.name, 2.0)
    new = _version(cfg.paths.models, "20260201_0000_bbbbbbb", auc)
    check = adoption_checklist(new, _backtest(reports / new.name, sharpe), cfg=cfg, previous=old)
    assert [i.item for i in check.items if not i.passed] == failed, check.notes()
    assert check.passed is (not failed)
    for item in failed:
        assert f"previous {old.name}" in check.notes() and item in check.notes()
    # Without a previously deployed version, neither check is on the list.
    alone = adoption_checklist(new, reports / new.name, cfg=cfg)
    assert {"auc_vs_previous", "sharpe_vs_previous"}.isdisjoint(i.item for i in alone.items)


def test_a_previous_version_without_the_figures_does_not_block() -> None:
    items = versus_previous({"ai1": {"oos_raw": {"auc": 0.6}}}, {"test": {"sharpe": 1.0}},
                            {}, {}, "old", 0.02, 0.9)  # fmt: skip
    assert all(i.passed and "not applicable" in i.detail for i in items)
    missing = versus_previous({}, {}, {"ai1": {"oos_raw": {"auc": 0.6}}},
                              {"test": {"sharpe": 1.0}}, "old", 0.02, 0.9)  # fmt: skip
    assert [i.passed for i in missing] == [False, False]


@given(st.floats(-5, 5), st.floats(-5, 5))
def test_the_sharpe_rule_matches_its_statement(old: float, new: float) -> None:
    [_, item] = versus_previous({}, {"test": {"sharpe": new}}, {}, {"test": {"sharpe": old}},
                                "old", 0.02, 0.9)  # fmt: skip
    need = 0.9 * old if old >= 0 else 1.1 * old
    assert item.passed is (new >= need - 1e-12) or abs(new - need) < 1e-9
