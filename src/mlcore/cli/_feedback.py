"""``mlcore feedback``: the drift and decay detectors on the deployed version, and the retrain
they trigger."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from mlcore.cli._app import coded, command, load_config, typer_app
from mlcore.cli._render import out, text
from mlcore.errors import MlcoreError

feedback_app = typer_app(
    "Feedback from the market: drift and decay detectors, and the retrains they trigger."
)


@command(feedback_app, "check")
def feedback_check(
    no_retrain: Annotated[
        bool,
        typer.Option("--no-retrain", help="Run and record the detectors; start no retrain."),
    ] = False,
    no_rollback: Annotated[
        bool,
        typer.Option("--no-rollback", help="Skip the automatic-rollback check."),
    ] = False,
) -> None:
    """Run every detector on the deployed version (feature drift per pair, live-vs-backtest
    win rate, risk-gate pass rate, risk_flag runs); record each in audit.analytics_actions,
    alert on each that fired, and start core_retrain_flow with the reason when one fired
    (at most once per analytics_policy drift.retrain_min_interval_seconds). Then judge the
    deployed version's live performance since its deployment against its backtest and roll
    it back automatically when it decayed (runbook_policy.yaml auto_rollback)."""
    from mlcore.feedback import check_deployed, check_feedback

    cfg = load_config()

    def skip(_cfg: object, reason: str) -> str:
        return f"not started (--no-retrain): {reason}"

    with coded(MlcoreError, "FEEDBACK_CHECK_FAILED", catch=(ValueError, OSError)):
        outcome = check_feedback(cfg, retrain=skip) if no_retrain else check_feedback(cfg)
    table = Table(title=f"feedback check of {outcome.model_version}")
    for col in ("detector", "pair", "verdict", "reason"):
        table.add_column(col)
    for r in outcome.results:
        table.add_row(r.detector.name.lower(), r.pair_id, r.verdict.value, escape(r.reason))
    out.print(table)
    text(f"retrain: {outcome.retrain.value}" + (f" (run {outcome.retrain_run})"
         if outcome.retrain_run else "") + f": {outcome.retrain_message}")  # fmt: skip
    if no_rollback:
        return
    with coded(MlcoreError, "FEEDBACK_CHECK_FAILED", catch=(ValueError, OSError)):
        rb = check_deployed(cfg)
    reasons = "; ".join(rb.decision.reasons)
    text(f"rollback check: {rb.decision.verdict.value}, {rb.action}"
         + (f" ({escape(rb.detail)})" if rb.detail else "") + f": {escape(reasons)}")  # fmt: skip
