"""The automatic-rollback verdict (spec 002 運用 Runbook: Sharpe -20% or MaxDD +3 points), as
properties against a direct restatement of the rule."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mlcore.config import AutoRollbackPolicy
from mlcore.feedback._autorollback import RollbackVerdict as V
from mlcore.feedback._autorollback import decide
from tests._rollback_doubles import Bt, Live

POLICY = AutoRollbackPolicy(sharpe_drop_fraction=0.2, max_drawdown_rise=0.03, min_bars=500,
                            min_trades=30, max_in_a_row=3)  # fmt: skip


def test_the_spec_examples() -> None:
    bt = Bt(sharpe=1.5, max_drawdown=0.08)
    assert decide(Live(600, 40, 1.21, 0.10), bt, POLICY).verdict is V.HOLD
    assert decide(Live(600, 40, 1.19, 0.10), bt, POLICY).verdict is V.ROLLBACK  # < 1.2
    assert decide(Live(600, 40, 1.4, 0.111), bt, POLICY).verdict is V.ROLLBACK  # > 11%
    assert decide(Live(600, 40, 1.4, 0.109), bt, POLICY).verdict is V.HOLD
    # The same decay on too small a sample is inconclusive: hold and alert, never a rollback.
    small = decide(Live(499, 40, -3.0, 0.5), bt, POLICY)
    assert small.verdict is V.INCONCLUSIVE and "min_bars 500" in small.reasons[0]
    assert decide(Live(600, 29, -3.0, 0.5), bt, POLICY).verdict is V.INCONCLUSIVE


finite = st.floats(-10, 10, allow_nan=False)
dd = st.floats(0, 1, allow_nan=False)


@given(st.integers(0, 2000), st.integers(0, 100), st.none() | finite, st.none() | dd,
       st.none() | finite, st.none() | dd)  # fmt: skip
def test_the_verdict_is_the_rule(
    bars: int, trades: int, ls: float | None, ldd: float | None, bs: float | None, bdd: float | None
) -> None:
    got = decide(Live(bars, trades, ls, ldd), Bt(bs, bdd), POLICY).verdict
    if bars < 500 or trades < 30:
        assert got is V.INCONCLUSIVE
        return
    sharpe_bad = ls is not None and bs is not None and ls < bs - 0.2 * abs(bs)
    dd_bad = ldd is not None and bdd is not None and ldd > bdd + 0.03
    if sharpe_bad or dd_bad:
        assert got is V.ROLLBACK
    elif ls is None or bs is None:
        assert got is V.INCONCLUSIVE
    else:
        assert got is V.HOLD
