"""Which model version the workers serve: the deployed one, checked against the checksums the
registry recorded (a damaged file is first restored from the artifact store); when it cannot be
served, the version deployed before it, and so on — each fallback logged and recorded as an
alert. An operator may name a version instead (``mlcore serve --model``): it goes through the
same check (:func:`mlcore.registry.check_model`), and a folder the registry does not hold is
served only with ``--unregistered``, every signal then saying so."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlcore.config import AppConfig
from mlcore.errors import FatalError
from mlcore.execution import (
    PairModels,
    checked_theta,
    previous_theta,
    resolve_model,
    version_config,
)
from mlcore.registry import Registry, check_model

log = logging.getLogger("mlcore.serving")


@dataclass(frozen=True)
class ServedModel:
    """The version served, its folder, the θ in force and why this one."""

    version: str
    folder: Path
    theta: tuple[float, float]
    why: str
    registered: bool = True
    #: the checksums the registry recorded (empty for an unregistered folder): a worker checks
    #: the files against these whenever it loads them, so a file swapped (and checksums.json
    #: rewritten) after start-up is refused by a restarting worker, not served
    checksums: tuple[tuple[str, str], ...] = ()

    def spec_fields(self) -> dict[str, Any]:
        """The fields of a :class:`WorkerSpec` that say which model to serve."""
        return {"model_folder": str(self.folder), "theta": self.theta,
                "model_registered": self.registered, "model_checksums": self.checksums}  # fmt: skip


def _theta(
    cfg: AppConfig, models: PairModels, t1: float | None, t2: float | None
) -> tuple[float, float]:
    """θ as the version's backtest adopted it (the registry row), else the initial θ the version
    recorded at training (never today's core_policy)."""
    if t1 is None or t2 is None:
        return models.decision_params().theta_initial
    return checked_theta(cfg, (float(t1), float(t2)), f"registry row of {models.version}")


def named_model(
    cfg: AppConfig, registry: Registry, name: str | None, *, allow_unregistered: bool = False,
    allow_rejected: bool = False,
) -> ServedModel:  # fmt: skip
    """A version named by the operator (or the newest trained one), checked against the
    registry as the deployed one is (an unregistered folder only with ``allow_unregistered``, a
    rejected version only with ``allow_rejected``); θ is the one its backtest adopted (checked:
    finite, inside theta_search_range), else core_policy's initial θ."""
    checked = check_model(registry, resolve_model(cfg, name),
                          allow_unregistered=allow_unregistered, actor="serving")  # fmt: skip
    if checked.registered and registry.get(checked.version).status == "rejected":
        if not allow_rejected:
            raise FatalError(
                "SERVING_MODEL_REJECTED",
                f"model version {checked.version} was rejected in the registry: not served "
                "(pass --force-rejected to serve it anyway)",
            )
        log.warning("SERVING A REJECTED MODEL VERSION %s (--force-rejected)", checked.version)
    sums = _recorded(registry, checked.version) if checked.registered else ()
    models = PairModels.load(checked.folder, sums=dict(sums) if sums else None)
    theta, source = previous_theta(version_config(cfg, models.decision_params()), models)
    why = f"named with --model{'' if checked.registered else ', UNREGISTERED'}; θ {source}"
    if allow_rejected and checked.registered and registry.get(checked.version).status == "rejected":
        why = "REJECTED version, --force-rejected; " + why
    return ServedModel(models.version, checked.folder, theta, why, checked.registered, sums)


def _recorded(registry: Registry, version: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(registry.get(version).checksums.items()))


def deployed_model(cfg: AppConfig, registry: Registry, skip: set[str] | None = None) -> ServedModel:
    """The deployed version, else the most recently deployed one before it that passes its
    checks (see the module docstring); ``skip`` names versions already found unusable."""
    skip = set(skip or ())
    records = sorted(
        (r for r in registry.records() if r.deployed_at is not None),
        key=lambda r: (r.status != "deployed", -r.deployed_at.timestamp()),  # type: ignore[union-attr]
    )
    if not records:
        raise ValueError("no model version has been deployed: deploy one (mlcore registry "
                         "promote) or name one with --model")  # fmt: skip
    failures = []
    for rec in records:
        if rec.model_version in skip or rec.status == "rejected":
            continue
        version = rec.model_version
        try:
            folder = registry.checked(version, actor="serving")
            sums = tuple(sorted(rec.checksums.items()))
            models = PairModels.load(folder, sums=rec.checksums)
            theta = _theta(cfg, models, rec.theta1, rec.theta2)
        except (ValueError, OSError) as exc:
            failures.append(f"{version}: {exc}")
            log.error("model %s cannot be served, falling back: %s", version, exc)
            registry.raise_alert(
                "CORE_SERVING_FALLBACK", f"model {version} cannot be served: {exc}",
                channel=cfg.retrain.notification_channel, severity="critical",
                details={"version": version},
            )  # fmt: skip
            continue
        why = (
            "deployed" if rec.status == "deployed" else f"fallback ({rec.status}, deployed before)"
        )
        if failures:
            why += "; unusable: " + "; ".join(failures)
        return ServedModel(version, folder, theta, why, True, sums)
    raise ValueError("no deployed model version can be served: " + "; ".join(failures))


def read_notice(path: Path) -> dict[str, Any] | None:
    """``deployed.json``, the notice of the publish flow and of ops rollbacks (None when
    absent or not a JSON object naming a model_version)."""
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("model_version"), str):
        return None
    return doc
