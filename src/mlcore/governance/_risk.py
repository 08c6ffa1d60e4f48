"""The risk rating of a config change: one table, per policy file and top-level key.

A change whose values are unchanged (descriptions, labels, units, comments only) is ``low``.
Otherwise each changed key is rated by :data:`RISK_TABLE` (``"*"``: any other key of the
file; a file not listed: ``medium``), and the change takes its highest rating. A ``high``
change needs two distinct approvers (docs/configuration.md, "Governed changes").
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Final


class Risk(StrEnum):
    """How much a change can hurt if it is wrong."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


_ORDER: Final = {Risk.LOW: 0, Risk.MEDIUM: 1, Risk.HIGH: 2}

#: file -> key -> rating; "*" is any other key of that file. Money at risk, positions and what
#: is traded are high; how models are trained or data kept is medium.
RISK_TABLE: Final[Mapping[str, Mapping[str, Risk]]] = {
    "dd_policy.yaml": {"*": Risk.HIGH},
    "cost_table.yaml": {"*": Risk.HIGH},
    "serving_policy.yaml": {"*": Risk.HIGH},
    "universe.yaml": {"*": Risk.HIGH},
    "core_policy.yaml": {"theta_search_range": Risk.HIGH, "*": Risk.MEDIUM},
    "backtest_policy.yaml": {"account": Risk.HIGH, "gates": Risk.HIGH, "*": Risk.MEDIUM},
    "storage.yaml": {"*": Risk.HIGH},
    "ml_core_storage.yaml": {"*": Risk.HIGH},
    # Where critical alerts page: a change there can silence the pager.
    "slack_policy.yaml": {"channels": Risk.HIGH, "pagerduty": Risk.HIGH, "*": Risk.MEDIUM},
}


def highest(ratings: list[Risk]) -> Risk:
    """The highest of ``ratings`` (low for none)."""
    return max(ratings, key=_ORDER.__getitem__, default=Risk.LOW)


def key_risk(file: str, key: str) -> Risk:
    """The rating of a change to ``key`` of ``file``."""
    table = RISK_TABLE.get(file, {})
    return table.get(key, table.get("*", Risk.MEDIUM))


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Top-level keys whose ``value`` differs (added and removed keys included)."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        va = a.get("value") if isinstance(a, dict) else a
        vb = b.get("value") if isinstance(b, dict) else b
        if key not in old or key not in new or va != vb:
            out.append(str(key))
    return out


def rate(file: str, keys: list[str]) -> Risk:
    """The rating of a change of ``file`` whose values changed at ``keys`` (low: none)."""
    return highest([key_risk(file, k) for k in keys])
