"""A model version's folder and its decision parameters: θ = (θ1, θ2) as its backtest adopted it,
read by the θ search (the θ in force) and by the workers (the θ they serve with)."""

from __future__ import annotations

import json
from pathlib import Path

from mlcore.config import AppConfig
from mlcore.errors import MissingInputError
from mlcore.execution._models import PairModels

BACKTEST_RECORD = "backtest.json"  # {reports}/backtest/{version}/, written by the backtest


def resolve_model(cfg: AppConfig, name: str | None) -> Path:
    """A model version folder: a path, a version name under the models root, or (None) the
    newest version there."""
    root = cfg.paths.models
    if name is None:
        versions = sorted(p for p in root.glob("*") if p.is_dir() and not p.name.startswith("."))
        if not versions:
            raise MissingInputError(
                "MODEL_VERSION_NONE", f"no model version under {root}: run `mlcore train` first"
            )
        return versions[-1]
    path = Path(name)
    folder = path if path.is_dir() else root / name
    if not folder.is_dir():
        raise MissingInputError(
            "MODEL_VERSION_NOT_FOUND",
            f"model version {name!r} not found (neither a folder nor under {root}); "
            "`mlcore registry list` shows the registered ones",
        )
    return folder


def previous_theta(cfg: AppConfig, baseline: PairModels | None) -> tuple[tuple[float, float], str]:
    """θ in force and where it comes from: the θ adopted for the model in service, else
    core_policy's initial θ."""
    initial = (cfg.core.theta1_initial, cfg.core.theta2_initial)
    if baseline is None:
        return initial, "core_policy.yaml theta1/theta2_initial (no model in service)"
    record = cfg.paths.reports / "backtest" / baseline.version / BACKTEST_RECORD
    if not record.exists():
        return initial, (
            f"core_policy.yaml theta1/theta2_initial (model in service {baseline.version} has no "
            "backtest record)"
        )
    try:
        theta = json.loads(record.read_bytes())["theta"]["adopted"]
        return (float(theta[0]), float(theta[1])), f"adopted for {baseline.version} ({record})"
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"{record}: no adopted θ in it ({exc})") from None
