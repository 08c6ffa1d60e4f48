"""θ1/θ2 search on the search window (out of sample for the models' fit): a coarse grid, then
an Optuna TPE study that stops after ``patience`` trials without improvement; and the
stabilisation that turns the θ found into the θ adopted (spec: θ1/θ2 最適化; 001)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd
from scipy import stats

from mlcore.backtest._portfolio import PortfolioRun, finite_or
from mlcore.config import StabilisationPolicy, ThetaRange, ThetaSearchPolicy

Theta = tuple[float, float]


def objective(metrics: dict[str, Any], policy: ThetaSearchPolicy) -> float:
    """Annual return less the penalties for drawdown beyond the limit, trades per year short of
    the minimum (as a share of it) and the share of trades that ended at a stop."""
    annual = finite_or(metrics.get("annual_return"), -1.0)
    dd = finite_or(metrics.get("max_drawdown"), 1.0)
    tpy = finite_or(metrics.get("trades_per_year"), 0.0)
    shortfall = max(0.0, 1.0 - tpy / policy.min_trades_per_year)
    return (
        annual
        - policy.lambda_dd * max(0.0, dd - policy.dd_limit)
        - policy.lambda_trades * shortfall
        - policy.lambda_stop * float(metrics.get("stop_share", 0.0))
    )


def grid(box: ThetaRange, step: float) -> list[Theta]:
    """Every (θ1, θ2) on the box's grid, rounded to 1e-9 so that steps add up exactly."""

    def axis(lo: float, hi: float) -> list[float]:
        n = math.floor((hi - lo) / step + 1e-9)
        return [round(lo + i * step, 9) for i in range(n + 1)]

    return [(t1, t2) for t1 in axis(*box.theta1) for t2 in axis(*box.theta2)]


@dataclass
class SearchResult:
    """Every θ tried, the best, and the grid's daily returns (for PBO)."""

    best: Theta
    best_objective: float
    tried: pd.DataFrame
    grid_returns: np.ndarray
    optuna_trials: int
    stopped_early: bool
    runs: dict[Theta, PortfolioRun] = field(repr=False, default_factory=dict)

    @property
    def n_trials(self) -> int:
        """θ settings actually evaluated (grid + Optuna)."""
        return len(self.tried)


def search_theta(
    run: Callable[[float, float], PortfolioRun], box: ThetaRange, policy: ThetaSearchPolicy,
    seed: int,
) -> SearchResult:  # fmt: skip
    """Grid, then Optuna from the grid's best; ``run(θ1, θ2)`` backtests the search window."""
    rows: list[dict[str, Any]] = []
    runs: dict[Theta, PortfolioRun] = {}

    def evaluate(t1: float, t2: float, stage: str) -> float:
        key = (round(t1, 9), round(t2, 9))
        if key not in runs:
            runs[key] = run(*key)
        m = runs[key].metrics
        score = objective(m, policy)
        rows.append({
            "stage": stage, "theta1": key[0], "theta2": key[1], "objective": score,
            "annual_return": m.get("annual_return"), "sharpe": m.get("sharpe"),
            "max_drawdown": m.get("max_drawdown"), "trades_per_year": m.get("trades_per_year"),
            "stop_share": m.get("stop_share"),
        })  # fmt: skip
        return score

    points = grid(box, policy.grid_step)
    for t1, t2 in points:
        evaluate(t1, t2, "grid")
    grid_returns = np.column_stack([runs[p].returns for p in points])
    start = max(points, key=lambda p: objective(runs[p].metrics, policy))
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial({"theta1": start[0], "theta2": start[1]})
    state = {"best": -math.inf, "since": 0, "stopped": False}

    def trial_fn(trial: optuna.Trial) -> float:
        t1 = trial.suggest_float("theta1", *box.theta1)
        t2 = trial.suggest_float("theta2", *box.theta2)
        return evaluate(t1, t2, "optuna")

    def patience(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        value = finite_or(trial.value, -math.inf)
        if value > state["best"] + 1e-12:
            state["best"], state["since"] = value, 0
        else:
            state["since"] += 1
            if state["since"] >= policy.patience:
                state["stopped"] = True
                study.stop()

    if policy.trials > 0:
        study.optimize(trial_fn, n_trials=policy.trials, callbacks=[patience])
    tried = pd.DataFrame(rows)
    # Ties go to the first θ tried (the grid, in order), so the result does not hinge on float
    # noise between equally good settings.
    at = int(np.argmax(tried["objective"].to_numpy()))
    t1s, t2s = tried["theta1"].to_numpy(), tried["theta2"].to_numpy()
    best = (float(t1s[at]), float(t2s[at]))
    return SearchResult(
        best, float(tried["objective"].to_numpy()[at]), tried, grid_returns,
        int((tried["stage"] == "optuna").sum()), bool(state["stopped"]), runs,
    )  # fmt: skip


@dataclass
class Stabilised:
    """The θ adopted, and why it is what it is."""

    theta: Theta
    found: Theta
    previous: Theta
    kept_previous: bool
    steps: list[str]
    gate_pass_rate: float
    t_stat: float | None


def _pass_rate(risk: np.ndarray, theta2: float) -> float:
    """Share of the bars with a risk score whose score is below θ2."""
    scored = risk[np.isfinite(risk)]
    return float(np.mean(scored < theta2)) if len(scored) else 0.0


def _band_target(
    theta2: float, risk: np.ndarray, policy: StabilisationPolicy, box: ThetaRange,
    steps: list[str],
) -> float:  # fmt: skip
    """The θ2 nearest to ``theta2`` (within the θ2 range) whose gate pass rate, the share of
    bars with risk < θ2, is inside the band."""
    low, high = policy.gate_pass_rate
    rate = _pass_rate(risk, theta2)
    if not np.isfinite(risk).any() or low <= rate <= high:
        return theta2
    ordered = np.sort(risk[np.isfinite(risk)])
    # θ on a 1e-6 grid: just above the score that must pass, or at/below the first that must not.
    if rate < low:
        edge = float(ordered[max(math.ceil(low * len(ordered)) - 1, 0)])
        target = math.floor(edge * 1e6) / 1e6 + 1e-6
    else:
        edge = float(ordered[min(math.floor(high * len(ordered)), len(ordered) - 1)])
        target = math.floor(edge * 1e6) / 1e6
    moved = round(min(max(target, box.theta2[0]), box.theta2[1]), 6)
    after = _pass_rate(risk, moved)
    note = "" if low <= after <= high else " (the band is out of reach inside the θ2 range)"
    steps.append(
        f"θ2 target {theta2:.4f} -> {moved:.4f}: gate pass rate {rate:.1%} outside "
        f"[{low:.0%}, {high:.0%}], {after:.1%} there{note}"
    )
    return moved


def _step(
    name: str, target: float, previous: float, policy: StabilisationPolicy,
    bounds: list[float], steps: list[str],
) -> float:  # fmt: skip
    """``target``, moved from ``previous`` by at most ``max_step``, within ``bounds``."""
    step = float(np.clip(target - previous, -policy.max_step, policy.max_step))
    if abs(target - previous) > policy.max_step + 1e-12:
        steps.append(f"{name} step limited to {policy.max_step} (asked {target - previous:+.4f})")
    return round(min(max(previous + step, bounds[0]), bounds[1]), 6)


def stabilise(
    found: Theta, previous: Theta, found_run: PortfolioRun, previous_run: PortfolioRun,
    risk: np.ndarray, policy: StabilisationPolicy, box: ThetaRange, found_why: str = "",
) -> Stabilised:  # fmt: skip
    """From the θ found to the θ adopted. The previous θ is kept when the found θ has too few
    trades or no significant gain; otherwise the target is the EWMA of found and previous.
    θ2's target is then brought into the gate pass rate band. No θ moves more than max_step in
    a run, so a θ2 far outside the band reaches it over several runs. ``found_why``: why the
    found θ makes no trade (``why_no_trades``), said when it makes none."""
    steps: list[str] = []
    trades = int(found_run.metrics.get("trades", 0))
    diff = found_run.returns - previous_run.returns
    t_stat: float | None = None
    if len(diff) >= 3 and float(np.std(diff, ddof=1)) > 0:
        t_stat = float(np.mean(diff) / (np.std(diff, ddof=1) / math.sqrt(len(diff))))
    need = float(stats.norm.ppf(policy.confidence))
    kept = True
    if trades < policy.min_trades:
        why = f"; {found_why}" if trades == 0 and found_why else ""
        steps.append(
            f"kept previous θ: {trades} trades at the found θ < min_trades {policy.min_trades}"
            + why
        )
    elif found != previous and (t_stat is None or t_stat < need):
        shown = "undefined" if t_stat is None else f"{t_stat:.2f}"
        steps.append(
            f"kept previous θ: gain over it not significant (t = {shown} < {need:.2f} at "
            f"{policy.confidence:.0%})"
        )
    else:
        kept = False
    w = 0.0 if kept else policy.weight_new
    blended = (w * found[0] + (1 - w) * previous[0], w * found[1] + (1 - w) * previous[1])
    if not kept:
        steps.append(
            f"EWMA {w:g} x found + {1 - w:g} x previous = ({blended[0]:.4f}, {blended[1]:.4f})"
        )
    # The band is an operating limit: θ2's target goes fully into it (the step limit still holds).
    t2 = _band_target(blended[1], risk, policy, box, steps)
    theta = (
        _step("θ1", blended[0], previous[0], policy, box.theta1, steps),
        _step("θ2", t2, previous[1], policy, box.theta2, steps),
    )
    rate = _pass_rate(risk, theta[1])
    low, high = policy.gate_pass_rate
    if np.isfinite(risk).any() and not low <= rate <= high:
        steps.append(f"gate pass rate {rate:.1%} still outside [{low:.0%}, {high:.0%}]")
    steps.append(f"θ = ({theta[0]:.4f}, {theta[1]:.4f})")
    return Stabilised(theta, found, previous, kept, steps, rate, t_stat)
