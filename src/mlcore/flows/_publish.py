"""The adoption checklist of ``core_publish_flow`` (read from what training and the backtest
wrote) and the notice to serving that a new version is deployed."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlcore.backtest import Decision
from mlcore.config import AppConfig
from mlcore.data import write_atomic
from mlcore.execution import checked_theta
from mlcore.registry import damaged_files, failing_files

SERVING_CHANNEL = "core:models:deployed"


@dataclass(frozen=True)
class CheckItem:
    """One line of the adoption checklist."""

    item: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Checklist:
    """The adoption checklist of one model version."""

    model_version: str
    items: list[CheckItem]
    theta: tuple[float, float] | None

    @property
    def passed(self) -> bool:
        """True when every item passed."""
        return all(i.passed for i in self.items)

    def notes(self) -> str:
        """The checklist as the registry's notes: what passed, or what failed and why."""
        failed = [i for i in self.items if not i.passed]
        if not failed:
            return "adoption checklist passed: " + "; ".join(i.detail for i in self.items)
        return "adoption checklist failed: " + "; ".join(f"{i.item}: {i.detail}" for i in failed)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def adoption_checklist(
    model_folder: Path, backtest_folder: Path, recorded: dict[str, str] | None = None,
    cfg: AppConfig | None = None, previous: Path | None = None,
) -> Checklist:  # fmt: skip
    """Check a version for adoption: its files intact (against ``recorded``, the checksums the
    registry recorded, when given: a rewritten checksums.json vouches for nothing), its
    training not blocked, its lineage complete and matching the backtest's, its backtest
    decision adopt with every gate passed, and its adopted θ finite and inside core_policy's
    theta_search_range (``cfg``; without it, inside [0, 1]). With ``cfg`` and ``previous``
    (the previously deployed version's folder), also: AI1's out-of-sample AUC not down by
    analytics_policy decay.max_auc_drop or more, and the test Sharpe not below
    decay.min_sharpe_ratio_vs_previous x the previous one's (001 自動再学習フロー)."""
    version = model_folder.name
    items: list[CheckItem] = []
    sums = _read(model_folder / "checksums.json")
    if recorded is not None:
        bad = failing_files(model_folder, recorded)
        detail = (f"{len(recorded)} files match the registry's checksums" if not bad
                  else f"damaged: {bad}")  # fmt: skip
        items.append(CheckItem("artifacts", not bad, detail))
    elif sums is None:
        items.append(CheckItem("artifacts", False, f"{model_folder}/checksums.json unreadable"))
    else:
        bad = damaged_files(model_folder, sums)
        detail = f"{len(sums)} files match checksums.json" if not bad else f"damaged: {bad}"
        items.append(CheckItem("artifacts", not bad, detail))
    metrics = _read(model_folder / "metrics.json") or {}
    status = metrics.get("retrain_status")
    reasons = metrics.get("blocked_reasons") or [
        f"{name}: {w}" for name, m in metrics.items() if isinstance(m, dict)
        for w in m.get("warnings") or []
    ]  # fmt: skip
    # weak (a model warned) is judged by the backtest's gates like ok; the checklist's notes
    # carry its warnings, so a person promoting or reading it sees them.
    items.append(
        CheckItem(
            "training",
            status in ("ok", "weak"),
            "retrain_status ok" if status == "ok" else f"retrain_status {status}: {reasons}",
        )
    )
    run = _read(model_folder / "run.json") or {}
    lineage = {k: run.get(k) for k in ("code_hash", "data_hash", "seed")}
    missing = [k for k, v in lineage.items() if v in (None, "", "unknown")]
    record = _read(backtest_folder / "backtest.json")
    if record is None:
        items.append(CheckItem("backtest", False, f"no backtest record in {backtest_folder}"))
        items.append(
            CheckItem(
                "lineage",
                not missing,
                f"missing {missing}" if missing else "code_hash, data_hash, seed recorded",
            )
        )
        return Checklist(version, items, None)
    bt_lineage = record.get("lineage", {})
    if bt_lineage.get("data_hash") != lineage["data_hash"]:
        missing.append("backtest data_hash differs from the model's")
    items.append(
        CheckItem(
            "lineage",
            not missing,
            f"problems: {missing}"
            if missing
            else "code_hash, data_hash, seed recorded; backtest on the same data",
        )
    )
    gates = record.get("gates", [])
    failed = [g["gate"] for g in gates if not g.get("passed")]
    decision = str(record.get("decision", "")).lower()
    adopt = decision == Decision.ADOPT
    items.append(
        CheckItem(
            "backtest",
            adopt and not failed and bool(gates),
            f"decision {decision}, gates failed {failed}"
            if failed or not adopt
            else f"decision adopt, {len(gates)} gates passed",
        )
    )
    theta, why = _adopted_theta(record, backtest_folder / "backtest.json", cfg)
    items.append(CheckItem("theta", theta is not None, why))
    if cfg is not None and previous is not None:
        old_bt = _read(cfg.paths.reports / "backtest" / previous.name / "backtest.json") or {}
        old_metrics = _read(previous / "metrics.json") or {}
        items += versus_previous(metrics, record, old_metrics, old_bt, previous.name,
                                 cfg.analytics.decay.max_auc_drop,
                                 cfg.analytics.decay.min_sharpe_ratio_vs_previous)  # fmt: skip
    return Checklist(version, items, theta)


def _number(doc: dict[str, Any], *path: str) -> float | None:
    value: Any = doc
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def versus_previous(
    metrics: dict[str, Any], record: dict[str, Any], old_metrics: dict[str, Any],
    old_record: dict[str, Any], old_version: str, max_auc_drop: float, sharpe_ratio: float,
) -> list[CheckItem]:  # fmt: skip
    """The two checks against the previously deployed version: AI1's out-of-sample AUC
    (metrics.json ai1.oos_raw.auc) must not drop by ``max_auc_drop`` or more; the test
    Sharpe (backtest.json test.sharpe) must be at least ``sharpe_ratio`` x the previous one's
    (for a negative previous Sharpe: at most (1 − ratio) x its size below it). A value the
    previous version lacks makes its check not applicable (passed, said so)."""
    auc = _number(metrics, "ai1", "oos_raw", "auc")
    old_auc = _number(old_metrics, "ai1", "oos_raw", "auc")
    if old_auc is None:
        why = f"previous {old_version} has no AI1 out-of-sample AUC: not applicable"
        auc_item = CheckItem("auc_vs_previous", True, why)
    elif auc is None:
        auc_item = CheckItem("auc_vs_previous", False, "no AI1 out-of-sample AUC in metrics.json")
    else:
        drop = old_auc - auc
        why = (f"AI1 out-of-sample AUC {auc:.4f} vs previous {old_version} {old_auc:.4f}: drop "
               f"{drop:+.4f} (fails at >= {max_auc_drop:g})")  # fmt: skip
        auc_item = CheckItem("auc_vs_previous", drop < max_auc_drop - 1e-12, why)
    sharpe = _number(record, "test", "sharpe")
    old_sharpe = _number(old_record, "test", "sharpe")
    if old_sharpe is None:
        why = f"previous {old_version} has no test Sharpe: not applicable"
        sharpe_item = CheckItem("sharpe_vs_previous", True, why)
    elif sharpe is None:
        sharpe_item = CheckItem("sharpe_vs_previous", False, "no test Sharpe in backtest.json")
    else:
        need = old_sharpe - (1 - sharpe_ratio) * abs(old_sharpe)
        why = (f"test Sharpe {sharpe:.4f} vs previous {old_version} {old_sharpe:.4f} (needs >= "
               f"{need:.4f}, {sharpe_ratio:g} x)")  # fmt: skip
        sharpe_item = CheckItem("sharpe_vs_previous", sharpe >= need, why)
    return [auc_item, sharpe_item]


def _adopted_theta(
    record: dict[str, Any], path: Path, cfg: AppConfig | None
) -> tuple[tuple[float, float] | None, str]:
    """The θ a backtest record adopted, if it can be traded on, and what the check found."""
    theta = record.get("theta")
    adopted = theta.get("adopted") if isinstance(theta, dict) else None
    try:
        if cfg is not None:
            pair = checked_theta(cfg, adopted, str(path))
        else:
            ok = isinstance(adopted, list) and len(adopted) == 2
            pair = (float(adopted[0]), float(adopted[1])) if ok else (math.nan, math.nan)  # type: ignore[index]
            if not all(math.isfinite(v) and 0 <= v <= 1 for v in pair):
                raise ValueError(f"{path}: θ {str(adopted)[:80]} is not two rates in [0, 1]")
    except (ValueError, TypeError) as exc:
        return None, str(exc)
    return pair, f"θ adopted {list(pair)}"


def serving_notice(
    version: str, folder: Path, theta: tuple[float, float] | None, now: datetime | None = None
) -> dict[str, Any]:
    """What serving is told when a version is deployed."""
    return {
        "event": "model_deployed",
        "model_version": version,
        "model_path": str(folder),
        "theta1": None if theta is None else theta[0],
        "theta2": None if theta is None else theta[1],
        "deployed_at": (now or datetime.now(UTC)).isoformat(),
    }


def write_notice(path: Path, notice: dict[str, Any]) -> None:
    """Write the notice atomically (file-watching consumers never see half of it)."""
    write_atomic(path, (json.dumps(notice, sort_keys=True, indent=2) + "\n").encode())
