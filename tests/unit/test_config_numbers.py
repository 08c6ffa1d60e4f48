"""Every number of every shipped policy refuses non-finite and absurdly large values at load.

Walks each numeric leaf of configs/base and sets it to nan, inf, -inf, ±1e308 and 10**30: the
schema must refuse each one (an ``inf`` timeout never times out, an ``inf`` DQ tolerance
disables its rule, a 1e21-month lookback overflows the calendar later, exit 70)."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from mlcore.config import POLICY_SCHEMAS
from tests.conftest import CONFIG_ROOT

_BAD = (math.nan, math.inf, -math.inf, 1e308, -1e308, 10**30, -(10**30))


def _leaves(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, (*path, i))
    else:
        yield path, obj


def _values(name: str) -> dict[str, Any]:
    data = yaml.safe_load((CONFIG_ROOT / "base" / f"{name}.yaml").read_text())
    return {k: e["value"] for k, e in data.items()}


def _numeric_leaves() -> list[tuple[str, tuple[Any, ...]]]:
    out = []
    for name in sorted(POLICY_SCHEMAS):
        for path, v in _leaves(_values(name)):
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append((name, path))
    return out


def _set(obj: Any, path: tuple[Any, ...], value: Any) -> None:
    for p in path[:-1]:
        obj = obj[p]
    obj[path[-1]] = value


@pytest.mark.parametrize(("name", "path"), _numeric_leaves(), ids=lambda x: str(x))
def test_every_number_refuses_non_finite_and_huge_values(name: str, path: tuple[Any, ...]) -> None:
    base = _values(name)
    accepted = []
    for bad in _BAD:
        data = copy.deepcopy(base)
        _set(data, path, bad)
        try:
            POLICY_SCHEMAS[name].model_validate(data)
        except ValidationError:
            continue
        accepted.append(bad)
    assert not accepted, f"{name}: {'.'.join(map(str, path))} accepted {accepted}"


@pytest.mark.parametrize(
    ("name", "path", "value"),
    [
        ("pipeline_policy", ("history_lookback_months",), 30000),
        ("training_policy", ("seed",), 2**32),
        ("backtest_policy", ("stress", "seed"), 2**32),
        ("backtest_policy", ("gates", "min_sharpe"), -1e6),
        ("pipeline_policy", ("request_timeout_s",), 1e9),
        ("serving_policy", ("signal_valid_seconds",), 1e10),
        ("serving_policy", ("signal_valid_seconds", "1day"), 1e10),
        ("data_retention", ("raw_months",), 100_000),
        ("data_retention", ("ingest_reports_days",), 10**7),
    ],
)
def test_counts_of_months_days_seconds_and_seeds_are_bounded(
    name: str, path: tuple[Any, ...], value: Any
) -> None:
    data = _values(name)
    _set(data, path, value)
    with pytest.raises(ValidationError):
        POLICY_SCHEMAS[name].model_validate(data)


def test_shipped_seeds_fit_the_cli_range() -> None:
    for name, path in (("training_policy", ("seed",)), ("backtest_policy", ("stress", "seed"))):
        data = _values(name)
        _set(data, path, 2**32 - 1)
        POLICY_SCHEMAS[name].model_validate(data)
