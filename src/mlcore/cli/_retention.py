"""``mlcore retention``: apply data_retention.yaml (and signals_policy.yaml's signal archive)
now; the retrain flow applies it after each publish."""

from __future__ import annotations

from typing import Annotated

import typer

from mlcore.cli._app import command, load_config, typer_app
from mlcore.cli._registry import open_registry, registry_call
from mlcore.cli._render import plain, text

retention_app = typer_app(
    "Data retention: prune raw, canonical, features, snapshots, ingest reports and signal "
    "history by age (never a registered version's lineage)."
)


@command(retention_app, "apply")
def retention_apply(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would go; remove nothing.")
    ] = False,
    verbose_list: Annotated[
        bool, typer.Option("--list", help="Print every removed path, not only the counts.")
    ] = False,
) -> None:
    """Remove what data_retention.yaml no longer keeps: month partitions of raw and canonical
    bars (never one a registered version was trained on), feature-cache months no build uses,
    old snapshots and ingest reports; move signals_live rows to signals_history and write
    history past retention to the signal archive before deleting it."""
    from mlcore.flows import apply_retention

    cfg = load_config()
    reg = open_registry(cfg)
    report = registry_call(lambda: apply_retention(cfg, reg, dry_run=dry_run, actor="cli"))
    verb = "would remove" if dry_run else "removed"
    counts = report.counts()
    layers = ", ".join(f"{n} {layer}" for layer, n in sorted(counts.items())) or "nothing"
    text(f"retention {verb}: {layers}")
    text(f"lineage kept: {report.protected_partitions} partitions of registered versions")
    if report.lineage_unknown:
        names = ", ".join(plain(v) for v in report.lineage_unknown)
        text(
            f"raw and canonical left alone: the lineage of {names} cannot be read (its files are "
            "missing and it was never pruned); restore it with `mlcore registry restore`"
        )
    moved = "would move" if dry_run else "moved"
    old = ("would be archived and deleted" if dry_run
           else f"archived ({report.signals_exported}) and deleted")  # fmt: skip
    text(f"signals: {moved} {report.signals_to_history} to signals_history; "
         f"{report.signals_deleted} past signals_history_days {old}")  # fmt: skip
    gone = "would be deleted" if dry_run else "deleted"
    text(f"registry rows {gone}: {report.notifications_deleted} notifications past "
         f"notifications_days, {report.refused_bars_deleted} refused bars past "
         "refused_bars_days")  # fmt: skip
    if verbose_list:
        for p in report.pruned:
            text(f"{p.layer}: {plain(p.path)} ({p.reason})")
