"""The adoption checklist of core_publish_flow, read from what training and the backtest wrote."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mlcore.flows import adoption_checklist
from tests.conftest import make_version


def _backtest(folder: Path, decision: str = "adopt", failed: tuple[str, ...] = (),
              data_hash: str = "d" * 64, theta: object = (0.72, 0.28)) -> Path:  # fmt: skip
    folder.mkdir(parents=True)
    gates = [{"gate": g, "passed": g not in failed} for g in ("sharpe", "max_drawdown", "pbo")]
    record = {"decision": decision, "gates": gates, "theta": {"adopted": theta},
              "lineage": {"data_hash": data_hash}}  # fmt: skip
    (folder / "backtest.json").write_text(json.dumps(record))
    return folder


def _model(tmp_path: Path, status: str = "ok") -> Path:
    folder = make_version(tmp_path / "models", "20260101_0000_abc1234")
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["retrain_status"] = status
    metrics["blocked_reasons"] = ["ai1: canary AUC 0.61"] if status == "blocked" else []
    if status == "weak":
        metrics["ai1"] = {"warnings": ["CV AUC 0.433 is below 0.5 beyond noise"]}
    body = json.dumps(metrics).encode()
    (folder / "metrics.json").write_bytes(body)
    sums = json.loads((folder / "checksums.json").read_text())
    sums["metrics.json"] = hashlib.sha256(body).hexdigest()
    (folder / "checksums.json").write_text(json.dumps(sums))
    return folder


def test_a_clean_adopted_version_passes_with_its_theta(tmp_path: Path) -> None:
    check = adoption_checklist(_model(tmp_path), _backtest(tmp_path / "bt"))
    assert check.passed, check.notes()
    assert check.theta == (0.72, 0.28)
    assert [i.item for i in check.items] == [
        "artifacts",
        "training",
        "lineage",
        "backtest",
        "theta",
    ]
    assert check.notes().startswith("adoption checklist passed")


def test_failed_gates_are_named_in_the_notes(tmp_path: Path) -> None:
    check = adoption_checklist(_model(tmp_path), _backtest(tmp_path / "bt", "reject", ("pbo",)))
    assert not check.passed
    assert "backtest: decision reject, gates failed ['pbo']" in check.notes()


def test_a_damaged_file_fails_the_artifacts_item(tmp_path: Path) -> None:
    folder = _model(tmp_path)
    (folder / "ai2.lgbm.txt").write_bytes(b"tampered\n")
    check = adoption_checklist(folder, _backtest(tmp_path / "bt"))
    assert not check.passed
    assert "artifacts: damaged: {'ai2.lgbm.txt': 'checksum mismatch'}" in check.notes()


def test_a_blocked_training_is_not_adopted(tmp_path: Path) -> None:
    check = adoption_checklist(_model(tmp_path, "blocked"), _backtest(tmp_path / "bt"))
    assert not check.passed
    assert "retrain_status blocked" in check.notes() and "canary" in check.notes()


def test_a_weak_training_is_judged_by_the_gates_with_its_warnings_named(tmp_path: Path) -> None:
    check = adoption_checklist(_model(tmp_path, "weak"), _backtest(tmp_path / "bt"))
    assert check.passed, check.notes()
    training = next(i for i in check.items if i.item == "training")
    assert training.detail == "retrain_status weak: ['ai1: CV AUC 0.433 is below 0.5 beyond noise']"
    assert "retrain_status weak: ['ai1: CV AUC 0.433" in check.notes()  # the registry's notes


def test_no_backtest_record_or_other_data_fails(tmp_path: Path) -> None:
    model = _model(tmp_path)
    missing = adoption_checklist(model, tmp_path / "nowhere")
    assert not missing.passed and "no backtest record" in missing.notes()
    other = adoption_checklist(model, _backtest(tmp_path / "bt", data_hash="e" * 64))
    assert not other.passed and "backtest data_hash differs" in other.notes()


def test_a_swap_with_a_rewritten_checksum_file_fails_against_the_registrys_sums(
    tmp_path: Path,
) -> None:
    """Review finding: the checklist read the folder's own checksums.json, so a swapped model
    file with a rewritten checksums.json passed it; with the registry's sums it fails."""
    folder = _model(tmp_path)
    recorded = json.loads((folder / "checksums.json").read_text())
    swapped = (folder / "ai2.lgbm.txt").read_bytes() + b"\n"  # another model, in effect
    (folder / "ai2.lgbm.txt").write_bytes(swapped)
    sums = dict(recorded, **{"ai2.lgbm.txt": hashlib.sha256(swapped).hexdigest()})
    (folder / "checksums.json").write_text(json.dumps(sums))
    assert adoption_checklist(folder, _backtest(tmp_path / "bt")).passed  # the folder vouches
    check = adoption_checklist(folder, _backtest(tmp_path / "bt2"), recorded)
    assert not check.passed
    assert "'ai2.lgbm.txt': 'checksum mismatch'" in check.notes()
    assert "'checksums.json': \"differs from the registry's\"" in check.notes()


def test_an_adopted_theta_that_cannot_be_traded_fails_the_checklist(tmp_path: Path) -> None:
    from mlcore.config import load_config
    from tests.conftest import CONFIG_ROOT

    cfg = load_config(CONFIG_ROOT, "dev")
    for i, theta in enumerate(([-1e9, 1e9], [0.05, 0.28], ["0.7", "x"], None)):
        bt = _backtest(tmp_path / f"bt{i}", theta=theta)
        for given in (cfg, None):
            if given is None and theta == [0.05, 0.28]:
                continue  # inside [0, 1]: only core_policy's range refuses it
            check = adoption_checklist(_model(tmp_path / f"m{i}{given is None}"), bt, cfg=given)
            assert not check.passed and check.theta is None, (theta, check.notes())
            assert "theta:" in check.notes()
