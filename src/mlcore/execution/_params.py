"""A model version's decision parameters: everything that decides its signals besides its models
and its adopted θ, fixed at training in ``decision.json`` (canonical JSON, sorted keys).

The record holds the timeframe, the pairs and their legs, the label policy (entry_z, exit_z,
horizons...), core_policy's initial θ (used until a backtest adopts one), the pair feature
windows, the time stop and fill latency, the account's sizing, the drawdown stops, the cost
table and the trading rules of the legs. Its SHA256 (listed in the version's ``checksums.json``
and in the checksums the registry records) is the version's *parameter hash*: every signal
names it. The backtest of a version and the workers serving it read these values from the
version (:func:`version_config`), never from the policy files in force, so editing a policy
file changes nothing for a version already trained.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mlcore.config import (
    AccountPolicy,
    AppConfig,
    CostTable,
    DrawdownPolicy,
    ExecutionPolicy,
    LabelPolicy,
    PairFeatureWindows,
    PairSpec,
    TradingRules,
)
from mlcore.errors import ConfigError
from mlcore.execution._artifacts import read_checked, read_checksums

DECISION_RECORD = "decision.json"
RECORD_VERSION = 1


def decision_record(cfg: AppConfig, timeframe: str, pairs: list[PairSpec]) -> dict[str, Any]:
    """The decision parameters of a version trained now on ``pairs`` at ``timeframe``."""
    legs = sorted({s for p in pairs for s in (p.leg_a, p.leg_b)})
    return {
        "record_version": RECORD_VERSION,
        "timeframe": timeframe,
        "pairs": [{"pair_id": p.pair_id, "leg_a": p.leg_a, "leg_b": p.leg_b} for p in pairs],
        "labels": cfg.core.labels_at(timeframe).model_dump(mode="json"),
        "theta_initial": [cfg.core.theta1_initial, cfg.core.theta2_initial],
        "feature_windows": cfg.features.pair.model_dump(mode="json"),
        "execution": cfg.backtest.execution_at(timeframe).model_dump(mode="json"),
        "account": cfg.backtest.account.model_dump(mode="json"),
        "drawdown": cfg.drawdown.model_dump(mode="json"),
        "costs": cfg.costs.model_dump(mode="json"),
        "trading": {s: cfg.universe.trading[s].model_dump(mode="json") for s in legs},
    }


def record_bytes(record: Mapping[str, Any]) -> bytes:
    """The canonical bytes of a record: sorted keys, two-space indent, one final newline."""
    return (json.dumps(record, sort_keys=True, indent=2, allow_nan=False) + "\n").encode()


@dataclass(frozen=True)
class VersionParams:
    """A version's decision record as read from its folder, with its SHA256."""

    version: str
    sha256: str
    timeframe: str
    pairs: tuple[PairSpec, ...]
    theta_initial: tuple[float, float]
    record: Mapping[str, Any]

    def pair_ids(self) -> list[str]:
        """The pairs the version was trained on, in the record's order."""
        return [p.pair_id for p in self.pairs]


def parse_params(version: str, data: bytes) -> VersionParams:
    """A checked ``decision.json``; ``ValueError`` naming what is wrong."""
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("record_version") != RECORD_VERSION:
            raise ValueError(f"record_version is not {RECORD_VERSION}")
        pairs = tuple(PairSpec.model_validate(p) for p in doc["pairs"])
        t1, t2 = (float(v) for v in doc["theta_initial"])
        timeframe = str(doc["timeframe"])
        _sections(doc)  # every section must validate now, not when first used
    except (ValueError, KeyError, TypeError, ValidationError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise ValueError(f"{DECISION_RECORD}: not a usable decision record ({first})") from None
    return VersionParams(version, hashlib.sha256(data).hexdigest(), timeframe, pairs, (t1, t2),
                         doc)  # fmt: skip


def _sections(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "labels": LabelPolicy.model_validate(doc["labels"]),
        "windows": PairFeatureWindows.model_validate(doc["feature_windows"]),
        "execution": ExecutionPolicy.model_validate(doc["execution"]),
        "account": AccountPolicy.model_validate(doc["account"]),
        "drawdown": DrawdownPolicy.model_validate(doc["drawdown"]),
        "costs": CostTable.model_validate(doc["costs"]),
        "trading": {s: TradingRules.model_validate(r) for s, r in doc["trading"].items()},
    }


def read_params(folder: Path, sums: Mapping[str, str] | None = None) -> VersionParams:
    """A version folder's decision parameters, checked against ``sums`` (the registry's) or
    its own ``checksums.json``; ``ConfigError`` MODEL_PARAMS_MISSING when it has none,
    ``ValueError`` when the file fails its checksum or is not a record."""
    sums = dict(sums) if sums else read_checksums(folder)
    if DECISION_RECORD not in sums and not (folder / DECISION_RECORD).exists():
        raise no_record(folder.name)
    return parse_params(folder.name, read_checked(folder, DECISION_RECORD, sums))


def no_record(version: str) -> ConfigError:
    """The refusal for a version trained before versions carried their decision parameters."""
    return ConfigError(
        "MODEL_PARAMS_MISSING",
        f"model version {version} has no {DECISION_RECORD} (trained before versions carried "
        "their decision parameters): its signals would follow today's policy files, so it is "
        "not used; retrain it (`mlcore train`) and use the new version",
    )


def version_config(cfg: AppConfig, params: VersionParams) -> AppConfig:
    """``cfg`` with every section that decides signals replaced by the version's record: labels
    and initial θ, feature windows, time stop and latency, sizing, drawdown stops, costs, the
    legs' trading rules and the universe's pairs (the capital is split over the version's)."""
    s = _sections(params.record)
    t1, t2 = params.theta_initial
    core = cfg.core.model_copy(
        update={
            "labels": {params.timeframe: s["labels"]},
            "theta1_initial": t1,
            "theta2_initial": t2,
        }
    )
    features = cfg.features.model_copy(update={"pair": s["windows"]})
    backtest = cfg.backtest.model_copy(
        update={"execution": {params.timeframe: s["execution"]}, "account": s["account"]}
    )
    trading = dict(cfg.universe.trading) | s["trading"]
    universe = cfg.universe.model_copy(update={"trading": trading, "pairs": list(params.pairs)})
    return replace(
        cfg, core=core, features=features, backtest=backtest, drawdown=s["drawdown"],
        costs=s["costs"], universe=universe,
    )  # fmt: skip


def check_serving(
    params: VersionParams, pair_ids: list[str], timeframe: str,
    source: str | None = "serving_policy.yaml", edit: str | None = None,
) -> None:  # fmt: skip
    """Refuse (``ConfigError``, one line) serving ``pair_ids`` at ``timeframe`` with a version
    not trained on each of those pairs at that timeframe. ``source`` is the policy file whose
    ``timeframe`` key set it (None: ``mlcore serve --timeframe`` did), ``edit`` the file a
    user would change instead of passing the option (default: ``source``)."""
    if timeframe != params.timeframe:
        tf, edit = params.timeframe, edit or source
        where = "--timeframe" if source is None else f"timeframe in {source}"
        there = "" if edit is None else " there" if edit == source else f" in {edit}"
        also = "" if edit is None else f" (or set timeframe: {tf}{there})"
        raise ConfigError(
            "SERVING_TIMEFRAME_MISMATCH",
            f"model version {params.version} was trained at {tf}, serving is at {timeframe} "
            f"({where}): serve it with `mlcore serve --timeframe {tf}`{also}, or serve a "
            f"version trained at {timeframe}",
        )
    missing = [p for p in pair_ids if p not in params.pair_ids()]
    if missing:
        raise ConfigError(
            "SERVING_PAIR_NOT_IN_VERSION",
            f"model version {params.version} was not trained on pair(s) {missing} (it was on "
            f"{params.pair_ids()}): serve only those (--pairs) or train a version on them",
        )


def pairs_to_serve(
    params: VersionParams, universe: list[str], named: list[str] | None
) -> tuple[list[str], list[str]]:
    """The pairs to serve and one line per universe pair left out. Pairs named (``--pairs``)
    are served as named (``check_serving`` refuses one the version lacks); by default the
    universe's pairs the version was trained on (a workspace cannot remove the shipped pairs,
    so a version of its own pairs was refused whole). None in common: the universe, refused."""
    if named:
        return list(named), []
    trained = set(params.pair_ids())
    keep = [p for p in universe if p in trained]
    skipped = [
        f"pair {p} skipped: model version {params.version} was not trained on it"
        for p in universe
        if p not in trained
    ]
    return (keep, skipped) if keep else (list(universe), [])
