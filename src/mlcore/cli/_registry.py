"""``mlcore registry``: model versions, their status and its history."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from mlcore.cli._app import coded, command, load_config, typer_app
from mlcore.cli._models import ModelOpt, resolve_models
from mlcore.cli._params import _VERSION as VERSION_NAME
from mlcore.cli._params import STATUSES, Status, Target, parse_note, parse_version
from mlcore.cli._render import out, print_records, text
from mlcore.errors import ConfigError, DataQualityError, MlcoreError, RetryableError

if TYPE_CHECKING:
    from pathlib import Path

    from mlcore.config import AppConfig
    from mlcore.registry import ModelRecord, Registry

R = TypeVar("R")
registry_app = typer_app(
    "Model versions, their status and its history (SQLite, or PostgreSQL via POSTGRES_URL)."
)
VersionArg = Annotated[
    str, typer.Argument(parser=parse_version, metavar="VERSION", help="Model version.")
]
NotesOpt = Annotated[
    str,
    typer.Option(parser=parse_note, help="Why (required: every decision is recorded with it)."),
]
ActorOpt = Annotated[
    str,
    typer.Option(
        parser=parse_note, help="Who decides (recorded).", envvar="USER", show_envvar=False
    ),
]


def _unreachable() -> tuple[type[BaseException], ...]:
    """The errors that mean the database could not be reached (worth a retry), not that the
    request was wrong."""
    import sqlalchemy.exc

    kinds: list[type[BaseException]] = [
        sqlalchemy.exc.OperationalError, sqlalchemy.exc.TimeoutError, TimeoutError,
        ConnectionError,
    ]  # fmt: skip
    try:
        import psycopg

        kinds.append(psycopg.OperationalError)
    except ImportError:  # pragma: no cover - PostgreSQL support not installed
        pass
    try:
        import redis.exceptions

        kinds += [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError]
    except ImportError:  # pragma: no cover
        pass
    return tuple(kinds)


def open_registry(cfg: AppConfig) -> Registry:
    """The registry the configuration names; only a database that cannot be reached is a
    temporary failure (exit 75), any other error keeps its own code."""
    from mlcore.registry import registry_for

    try:
        return registry_for(cfg)
    except _unreachable() as exc:
        from mlcore.registry._errors import refusal

        first = (str(exc).splitlines() or [""])[0]
        if refusal(first) is not None:
            raise ConfigError(
                "REGISTRY_DB_REFUSED", f"registry database refused: {refusal(first)} ({first})"
            ) from None
        raise RetryableError(
            "REGISTRY_DB_UNAVAILABLE", f"registry database unavailable: {str(exc).splitlines()[0]}"
        ) from exc


def registry_call(fn: Callable[[], R]) -> R:
    """A registry request; its refusal becomes one clear line (exit 1)."""
    from mlcore.registry import RegistryError

    try:
        return fn()
    except MlcoreError:
        raise  # already one clear line with its own code
    except RegistryError as exc:
        raise MlcoreError("REGISTRY_REQUEST_REFUSED", str(exc)) from exc


@command(registry_app, "list")
def registry_list(
    status: Annotated[
        Status | None, typer.Option(help=f"Only one status: {', '.join(STATUSES)}.")
    ] = None,
) -> None:
    """Every registered model version, newest first."""
    cfg = load_config()
    reg = open_registry(cfg)
    records = registry_call(lambda: reg.records(None if status is None else str(status)))
    shown = [_with_adopted_theta(cfg, r) for r in records]
    print_records(shown, f"model registry ({len(records)} versions)")


@command(registry_app, "show")
def registry_show(
    version: VersionArg,
) -> None:
    """One version's record, lineage, θ as its backtest adopted it and status history."""
    cfg = load_config()
    reg = open_registry(cfg)
    rec = registry_call(lambda: reg.get(version))
    print_records([_with_adopted_theta(cfg, rec)], f"model version {version}")
    text(f"artifacts: {rec.artifact_path}")
    text(f"code_hash {rec.code_hash}, data_hash {rec.data_hash}, seed {rec.seed}")
    text(_theta_line(cfg, rec))
    params = rec.checksums.get("decision.json")
    text(
        f"decision parameters: decision.json sha256 {params}"
        if params
        else "decision parameters: none recorded (trained before versions carried them: retrain)"
    )
    history = Table(title="history")
    for col in ("when", "event", "from", "to", "who", "notes"):
        history.add_column(col)
    for h in reg.history(version):
        history.add_row(
            f"{h['changed_at']:%Y-%m-%d %H:%M:%S}", h["event"], h["old_status"] or "-",
            h["new_status"] or "-", escape(h["actor"]), escape(h["notes"]),
        )  # fmt: skip
    out.print(history)


def _adopted(cfg: AppConfig, version: str) -> tuple[list[float], str, Path] | None:
    """θ as the version's backtest adopted it, its decision and its record; None without one."""
    import json

    from mlcore.execution import BACKTEST_RECORD

    record = cfg.paths.reports / "backtest" / version / BACKTEST_RECORD
    try:
        doc = json.loads(record.read_bytes())
        adopted = [float(v) for v in doc["theta"]["adopted"]]
        return adopted[:2], str(doc["decision"]), record
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def _with_adopted_theta(cfg: AppConfig, rec: ModelRecord) -> ModelRecord:
    """The row with the θ its backtest adopted when the row has none (`mlcore train`
    registers before the backtest, so the table showed "-" beside the θ `show` printed)."""
    from dataclasses import replace

    found = None if rec.theta1 is not None else _adopted(cfg, rec.model_version)
    if found is None or len(found[0]) < 2:
        return rec
    return replace(rec, theta1=found[0][0], theta2=found[0][1])


def _theta_line(cfg: AppConfig, rec: ModelRecord) -> str:
    """θ as the version's backtest adopted it (its record), else the registry row's."""
    found = _adopted(cfg, rec.model_version)
    if found is not None and len(found[0]) == 2:
        (t1, t2), decision, record = found
        return (f"θ adopted by its backtest: θ1={t1:.4f}, θ2={t2:.4f} "
                f"(decision {decision}, {record})")  # fmt: skip
    if rec.theta1 is not None and rec.theta2 is not None:
        return f"θ adopted by its backtest: θ1={rec.theta1:.4f}, θ2={rec.theta2:.4f} (registry)"
    return "θ: no backtest record; served at the initial θ its decision.json recorded"


@command(registry_app, "register")
def registry_register(
    notes: NotesOpt,
    model: ModelOpt = None,
    candidate: Annotated[
        bool, typer.Option(help="Register as candidate (passed its backtest) instead of draft.")
    ] = False,
    actor: ActorOpt = "cli",
) -> None:
    """Register a model version (with the θ its backtest adopted, if it has one)."""
    from mlcore.registry import database_url

    cfg = load_config()
    folder, _ = resolve_models(cfg, model, None)
    if not VERSION_NAME.fullmatch(folder.name):
        raise ConfigError(
            "REGISTRY_VERSION_ID_INVALID",
            f"{folder.name!r} is not a model version name (YYYYMMDD_HHMM_<code>, e.g. "
            "20250101_0000_abc1234): rename the folder before registering it",
        )
    from mlcore.execution import BACKTEST_RECORD, read_theta

    theta = None
    record = cfg.paths.reports / "backtest" / folder.name / BACKTEST_RECORD
    if record.exists() or record.is_symlink():
        theta = read_theta(cfg, record)  # checked: malformed exit 65, out of range refused
    reg = open_registry(cfg)
    status = "candidate" if candidate else "draft"
    rec = registry_call(lambda: reg.register(folder, actor=actor, notes=notes, status=status,
                                              theta=theta))  # fmt: skip
    text(f"registered {rec.model_version} as {rec.status} ({database_url(cfg).split('://')[0]})")


def backtest_verdict(cfg: AppConfig, version: str) -> str | None:
    """The decision (adopt/reject) of the version's backtest record, None without one."""
    import json

    from mlcore.execution import BACKTEST_RECORD

    record = cfg.paths.reports / "backtest" / version / BACKTEST_RECORD
    try:
        return str(json.loads(record.read_bytes())["decision"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            "REGISTRY_PROMOTION_VERDICT_UNREADABLE",
            f"{record}: its backtest verdict cannot be read ({type(exc).__name__}): not promoted",
        ) from None


def override_of(
    cfg: AppConfig, version: str, to: str, override: bool, reason: str | None
) -> dict[str, str] | None:
    """The override to audit when promoting ``version`` to approved/deployed although its
    backtest rejected it; a refusal (one line) without ``--override --reason``."""
    if reason is not None and not override:
        raise ConfigError("REGISTRY_PROMOTION_REASON_ALONE", "--reason goes with --override")
    verdict = backtest_verdict(cfg, version) if to in ("approved", "deployed") else None
    if verdict != "reject":
        if override:
            raise ConfigError(
                "REGISTRY_PROMOTION_NOTHING_TO_OVERRIDE",
                f"{version}'s backtest did not reject it ({verdict or 'no backtest record'}): "
                "nothing to override; promote it without --override",
            )
        return None
    if not override:
        raise ConfigError(
            "REGISTRY_PROMOTION_BACKTEST_REJECTED",
            f"{version}'s backtest rejected it (see reports/backtest/{version}/): not promoted to "
            f"{to}; to promote it anyway pass --override --reason TEXT (audited)",
        )
    if not (reason or "").strip():
        raise ConfigError(
            "REGISTRY_PROMOTION_REASON_MISSING",
            f"--override of {version}'s rejecting backtest needs --reason TEXT: not promoted",
        )
    return {"backtest_decision": verdict, "reason": str(reason).strip()}


@command(registry_app, "promote")
def registry_promote(
    version: VersionArg,
    to: Annotated[Target, typer.Option(help="candidate, approved, deployed or rejected.")],
    notes: NotesOpt,
    actor: ActorOpt = "cli",
    override: Annotated[
        bool,
        typer.Option(help="Promote to approved/deployed although its backtest rejected it "
                     "(needs --reason; audited)."),
    ] = False,
    reason: Annotated[
        str | None,
        typer.Option(
            parser=parse_note, help="Why the backtest's rejection is overridden (audited)."
        ),
    ] = None,
) -> None:  # fmt: skip
    """Move a version along draft -> candidate -> approved -> deployed (or to rejected). A
    version its backtest rejected goes to approved or deployed only with --override --reason."""
    cfg = load_config()
    audit = override_of(cfg, version, str(to), override, reason)
    reg = open_registry(cfg)
    rec = registry_call(
        lambda: reg.transition(version, str(to), actor=actor, notes=notes, override=audit)
    )
    if audit is not None:
        text(f"OVERRIDE: {version}'s rejecting backtest overridden by {actor}: {audit['reason']}")
    text(f"{rec.model_version} is now {rec.status}")


@command(registry_app, "rollback")
def registry_rollback(
    notes: NotesOpt,
    actor: ActorOpt = "cli",
    from_: Annotated[
        str | None,
        typer.Option(
            "--from", parser=parse_version, metavar="VERSION",
            help="Roll back only if this version is the one deployed (else refused: someone "
            "else changed it first).",
        ),
    ] = None,
) -> None:  # fmt: skip
    """Take the deployed version out of service and put back the one deployed before it."""
    reg = open_registry(load_config())
    done = registry_call(lambda: reg.rollback(actor=actor, notes=notes, expected=from_))
    # What this rollback did, read in its own transaction: not what was deployed before it.
    text(f"rolled back {done.rolled_back}; {done.deployed.model_version} is deployed")
    version = done.deployed.model_version
    registry_call(lambda: reg.raise_alert(
        "OPS_ROLLBACK_MODEL",
        f"model rolled back from {done.rolled_back} to {version}, by {actor}: {notes[:1000]}",
        channel="ops", severity="warning", details={"model_version": version, "actor": actor},
    ))  # fmt: skip


@command(registry_app, "verify")
def registry_verify(
    version: VersionArg,
    rebuild_: Annotated[
        bool,
        typer.Option(
            "--rebuild",
            help="Also retrain the version from its lineage (catalog, seed, config) in a "
            "scratch folder and compare every file byte for byte.",
        ),
    ] = False,
) -> None:
    """Check a version's served files against the checksums the registry recorded."""
    cfg = load_config()
    reg = open_registry(cfg)
    bad = registry_call(lambda: reg.verify(version))
    if bad:
        for name, why in bad.items():
            text(f"{version}/{name}: {why}")
        raise MlcoreError(
            "REGISTRY_ARTIFACT_DAMAGED",
            f"{len(bad)} file(s) of {version} fail verification; `mlcore registry restore "
            f"{version}` puts back the archived copies",
        )
    text(f"{version}: every file matches its recorded checksum")
    if not rebuild_:
        return
    with coded(DataQualityError, "REGISTRY_REBUILD_INVALID"):
        from mlcore.data import Catalog
        from mlcore.registry import rebuild

        rep = rebuild(cfg, Catalog(cfg), reg.served_folder(version))
    for w in rep.warnings:
        text(f"warning: {w}")
    text(f"rebuild: {len(rep.identical)} file(s) byte-identical")
    for name in rep.differing:
        text(f"  differs: {name}")
    for name in rep.missing:
        text(f"  not produced: {name}")
    if not rep.ok:
        raise MlcoreError(
            "REGISTRY_REBUILD_DIFFERS",
            f"{len(rep.differing) + len(rep.missing)} file(s) of {version} do not rebuild "
            "identically",
        )


@command(registry_app, "restore")
def registry_restore(
    version: VersionArg,
    actor: ActorOpt = "cli",
) -> None:
    """Put back a version's missing or damaged files from the registry's archived copy."""
    reg = open_registry(load_config())
    restored = registry_call(lambda: reg.restore(version, actor=actor))
    for name, why in restored.items():
        text(f"restored {version}/{name} ({why})")
    text(f"{version}: {len(restored)} file(s) restored, every file verified")


@command(registry_app, "prune")
def registry_prune(
    dry_run: Annotated[bool, typer.Option(help="Only list what would go.")] = False,
    actor: ActorOpt = "cli",
) -> None:
    """Delete the files of versions beyond data_retention.yaml's model_versions (never a
    deployed, rolled-back or earlier deployed one)."""
    cfg = load_config()
    reg = open_registry(cfg)
    keep = cfg.data_retention.model_versions
    gone = registry_call(lambda: reg.prune(keep, actor=actor, dry_run=dry_run))
    verb = "would delete" if dry_run else "deleted"
    text(f"keeping the newest {keep}: {verb} {len(gone)} version(s) {', '.join(gone)}")
