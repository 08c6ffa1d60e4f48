"""``mlcore notify``: deliver the alerts' notifications (Slack, PagerDuty) from the outbox
(``run``), list what waits or failed (``status``), raise a test alert (``test``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from mlcore.cli._app import command, load_config, typer_app
from mlcore.cli._registry import open_registry, registry_call
from mlcore.cli._render import plain, text

if TYPE_CHECKING:
    from mlcore.observability import PassReport

notify_app = typer_app(
    "Notifications of the alerts (Slack, PagerDuty): deliver, list, test. `mlcore serve` and "
    "every flow run also deliver them; no separate daemon is needed."
)
_SEVERITIES = ("info", "warning", "error", "critical")


@command(notify_app, "run")
def notify_run(
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
    interval: Annotated[
        float,
        typer.Option(min=0.1, max=3600, help="Seconds between passes (without --once)."),
    ] = 5.0,
) -> None:
    """Deliver the due notifications (each destination in order); retry the others later.
    Without the secrets (SLACK_WEBHOOK_URL, PAGERDUTY_INTEGRATION_KEY) their rows wait."""
    from mlcore.observability import Destinations, Notifier

    cfg = load_config()
    reg = open_registry(cfg)
    notifier = Notifier(reg.engine, cfg.slack, Destinations.from_env(cfg.env, cfg.slack))
    if once:
        _print_pass(registry_call(notifier.run_once))
        return
    try:
        while True:
            try:
                _print_pass(notifier.run_once())
            except Exception as exc:  # the database away: the loop waits for it, never dies
                why = (
                    str(getattr(exc, "orig", None) or exc).splitlines()[0][:300] if str(exc) else ""
                )
                text(f"not delivered this pass ({type(exc).__name__}): {plain(why)}")
            time.sleep(interval)
    except KeyboardInterrupt:  # Ctrl-C ends the loop between passes; a claimed row's lease
        return  # lets another notifier take it


def _why(exc: Exception) -> str:
    lines = str(getattr(exc, "orig", None) or exc).splitlines()
    return lines[0][:300] if lines else ""


def _print_pass(report: PassReport) -> None:
    waiting = "; ".join(f"{t}: {why}" for t, why in sorted(report.waiting.items()))
    text(
        f"delivered {report.delivered}, retrying {report.retried}, failed {report.failed}"
        + (f" (waiting: {plain(waiting)})" if waiting else "")
    )


@command(notify_app, "status")
def notify_status(
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Rows listed at most.")] = 50,
) -> None:
    """Notifications per destination and state; the pending and failed ones, oldest first,
    with their last error; and why a destination cannot be sent now."""
    from mlcore.observability import Destinations, counts, listing

    cfg = load_config()
    reg = open_registry(cfg)
    dest = Destinations.from_env(cfg.env, cfg.slack)
    tally = registry_call(lambda: counts(reg.engine))
    for (target, status), n in sorted(tally.items()):
        text(f"{target} {status}: {n}")
    if not tally:
        text("no notifications recorded")
    from mlcore.registry import NotifyTarget

    for target in NotifyTarget:
        why = dest.missing(target)
        if why is not None:
            text(f"{target.value}: not sent while {why} (rows stay pending)")
    rows = registry_call(lambda: listing(reg.engine, ("pending", "sending", "failed"), limit))
    for r in rows:
        tail = f" — {plain(r.last_error)}" if r.last_error else ""
        text(
            f"{r.status} {r.target} {r.code} ({r.severity}) alert {r.alert_id} "
            f"tries {r.attempts} since {r.created_at:%Y-%m-%d %H:%M:%S}Z{tail}"
        )


@command(notify_app, "test")
def notify_test(
    severity: Annotated[
        str, typer.Option(help=f"One of {', '.join(_SEVERITIES)} (critical also pages).")
    ] = "info",
    message: Annotated[str, typer.Option(help="The alert's text.")] = "test notification",
) -> None:
    """Raise a test alert (NOTIFY_TEST) and deliver it once; `notify status` shows the rest."""
    from mlcore.errors import ConfigError
    from mlcore.observability import deliver_pending

    if severity not in _SEVERITIES:
        raise ConfigError(
            "NOTIFY_REQUEST_SEVERITY_INVALID",
            f"--severity {plain(severity)!r} is not one of {', '.join(_SEVERITIES)}",
        )
    cfg = load_config()
    reg = open_registry(cfg)
    alert_id = registry_call(
        lambda: reg.raise_alert(
            "NOTIFY_TEST", message[:2000], channel="notify", severity=severity,
            details={"sent_by": "mlcore notify test", "at_s": time.time()},
        )
    )  # fmt: skip
    text(f"alert {alert_id} raised (NOTIFY_TEST, {severity})")
    report = deliver_pending(reg.engine, cfg.slack, cfg.env)
    if report is not None:
        text(f"delivered {report.delivered}, retrying {report.retried}, failed {report.failed}")
        for target, why in sorted(report.waiting.items()):
            text(f"{target}: {plain(why)}")
    else:
        text("not delivered now (see the log line); `mlcore notify run` tries again")
