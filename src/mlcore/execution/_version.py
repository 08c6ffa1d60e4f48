"""A model version's folder and its decision parameters: θ = (θ1, θ2) as its backtest adopted it,
read by the θ search (the θ in force) and by the workers (the θ they serve with)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mlcore.config import AppConfig
from mlcore.errors import MissingInputError, ThetaMalformed, ThetaOutOfRange
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


def checked_theta(
    cfg: AppConfig, theta: Any, source: str, *, search_range: bool = True
) -> tuple[float, float]:
    """θ from ``source`` (a file, a registry row, a flag) cleared for trading: a pair of finite
    numbers each inside core_policy's ``theta_search_range`` (without ``search_range``: inside
    [0, 1], as any probability threshold). ``ThetaMalformed`` (exit 65) when it is not a pair of
    numbers, ``ThetaOutOfRange`` (exit 1) when a value is not finite or out of the range; the
    message names the source and the values."""
    if (
        not isinstance(theta, list | tuple)
        or len(theta) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in theta)
    ):
        raise ThetaMalformed(
            "MODEL_THETA_MALFORMED",
            f"{source}: θ {str(theta)[:80]!r} is not a pair of numbers [θ1, θ2]",
        )
    values = (float(theta[0]), float(theta[1]))
    box = cfg.core.theta_search_range
    bounds = (box.theta1, box.theta2) if search_range else ((0.0, 1.0), (0.0, 1.0))
    where = "core_policy.yaml theta_search_range" if search_range else "the rates"
    for name, value, (low, high) in zip(("θ1", "θ2"), values, bounds, strict=True):
        if not math.isfinite(value) or not low <= value <= high:
            raise ThetaOutOfRange(
                "MODEL_THETA_OUT_OF_RANGE",
                f"{source}: {name} = {value!r} is outside {where} [{low}, {high}]; "
                f"θ {list(values)} not used",
            )
    return values


def read_theta(cfg: AppConfig, record: Path) -> tuple[float, float]:
    """The θ adopted in a backtest record, checked (see :func:`checked_theta`)."""
    try:
        adopted = json.loads(record.read_bytes())["theta"]["adopted"]
    except OSError as exc:
        raise ThetaMalformed(
            "MODEL_THETA_MALFORMED", f"{record}: unreadable ({exc.strerror or exc})"
        ) from None
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise ThetaMalformed(
            "MODEL_THETA_MALFORMED",
            f"{record}: no adopted θ in it ({type(exc).__name__}: {str(exc)[:80]})",
        ) from None
    return checked_theta(cfg, adopted, str(record))


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
    return read_theta(cfg, record), f"adopted for {baseline.version} ({record})"
