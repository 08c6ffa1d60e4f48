"""Adoption gates: the spec's (Sharpe, MaxDD, trades per year, non-inferiority against the
model in service) and two against overfitting (Deflated Sharpe, PBO). Every gate is written
with its value, its threshold and the reason, passed or not."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from mlcore.config import GatePolicy


class Decision(StrEnum):
    """The backtest's adoption decision (the strings ``backtest.json`` has always held)."""

    ADOPT = "adopt"
    REJECT = "reject"


def _gate(
    name: str, value: float | None, threshold: str, passed: bool, reason: str
) -> dict[str, Any]:
    return {
        "gate": name,
        "value": value,
        "threshold": threshold,
        "passed": passed,
        "reason": reason,
    }


def _fmt(v: float | None) -> str:
    return "undefined" if v is None else f"{v:.4f}"


def evaluate_gates(
    test: dict[str, Any], dsr: float | None, pbo: float | None, baseline: dict[str, Any] | None,
    policy: GatePolicy,
) -> tuple[Decision, list[dict[str, Any]]]:  # fmt: skip
    """(``Decision.ADOPT`` | ``Decision.REJECT``, gates) for the test-window metrics of the
    candidate; ``baseline`` holds the model in service's metrics on the same window (None:
    there is none)."""
    sharpe, dd, tpy = test.get("sharpe"), test.get("max_drawdown"), test.get("trades_per_year")
    gates = [
        _gate("sharpe", sharpe, f"> {policy.min_sharpe}",
              sharpe is not None and sharpe > policy.min_sharpe,
              f"Sharpe {_fmt(sharpe)} vs > {policy.min_sharpe}"),
        _gate("max_drawdown", dd, f"< {policy.max_drawdown}",
              dd is not None and dd < policy.max_drawdown,
              f"MaxDD {_fmt(dd)} vs < {policy.max_drawdown}"),
        _gate("trades_per_year", tpy, f">= {policy.min_trades_per_year}",
              tpy is not None and tpy >= policy.min_trades_per_year,
              f"{_fmt(tpy)} trades/year vs >= {policy.min_trades_per_year}"),
    ]  # fmt: skip
    if baseline is None:
        gates.append(_gate("non_inferiority", None, "vs model in service", True,
                           "no model in service to compare with: not applicable"))  # fmt: skip
    else:
        old_s, old_dd = baseline.get("sharpe"), baseline.get("max_drawdown")
        # ratio x old for a positive Sharpe; for a negative one, as far below it as that allows
        # (0.95 x -1.0 = -0.95 would ask the candidate to beat the old model).
        need_s = (
            None if old_s is None else old_s - (1 - policy.noninferior_sharpe_ratio) * abs(old_s)
        )
        ok_s = need_s is None or (sharpe is not None and sharpe >= need_s)
        ok_dd = old_dd is None or (dd is not None and dd <= old_dd + policy.noninferior_dd_slack)
        gates.append(_gate(
            "non_inferiority", sharpe,
            f"Sharpe >= {policy.noninferior_sharpe_ratio} x old, MaxDD <= old + "
            f"{policy.noninferior_dd_slack}", ok_s and ok_dd,
            f"Sharpe {_fmt(sharpe)} vs old {_fmt(old_s)} (needs >= {_fmt(need_s)}); MaxDD "
            f"{_fmt(dd)} vs old {_fmt(old_dd)}",
        ))  # fmt: skip
    gates.append(_gate("deflated_sharpe", dsr, f">= {policy.min_deflated_sharpe}",
                       dsr is not None and dsr >= policy.min_deflated_sharpe,
                       f"DSR {_fmt(dsr)} vs >= {policy.min_deflated_sharpe}"))  # fmt: skip
    gates.append(_gate("pbo", pbo, f"<= {policy.max_pbo}",
                       pbo is not None and pbo <= policy.max_pbo,
                       f"PBO {_fmt(pbo)} vs <= {policy.max_pbo}"))  # fmt: skip
    decision = Decision.ADOPT if all(g["passed"] for g in gates) else Decision.REJECT
    return decision, gates
