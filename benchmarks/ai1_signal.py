"""AI1 on generated pairs whose spreads revert in some regimes and not in others: the demo's
pipeline (ingest, catalog, features, labels, purged CV, calibration, canary) on 4 years of
hourly bars of the three demo pairs built by ``mlcore.data.regime_pairs``.

Usage: .venv/bin/python benchmarks/ai1_signal.py [--years 4] [--seed 7]
Prints AI1's out-of-sample AUC (raw and calibrated), its CV AUC and the leakage canary; then
backtests the model version (θ search, gates) and, on the test window at the adopted θ2, compares
the strategy with AI1's filter (θ1 adopted) and without it (θ1 = 0: every AI1 event taken).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--years", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--regime-bars", type=int, default=600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ARCHIVE_PATH"] = str(Path(tmp) / "archive")
        os.environ.pop("SERVICE_ENV", None)
        from mlcore.config import load_config
        from mlcore.data import regime_pairs
        from mlcore.demo import train_generated

        cfg = load_config(env_name="dev")
        start = time.perf_counter()
        report = train_generated(cfg, regime_pairs(args.regime_bars), args.years, args.seed)
        took = time.perf_counter() - start
        from mlcore.backtest import run_backtest, run_portfolio
        from mlcore.data import Catalog

        bt = run_backtest(cfg, Catalog(cfg), report.folder)
        th = bt.theta_run
        t1, t2 = th.stabilised.theta
        sweep = {
            theta1: run_portfolio(th.test_bars, th.setups, theta1, t2, account=th.account).metrics
            for theta1 in (0.0, 0.7, 0.8, 0.85, 0.9, 0.95)
        }
        probs = np.concatenate([b.prob[np.isfinite(b.prob)] for b in th.test_bars])
    m = report.metrics["ai1"]
    print(
        f"regime pairs (mean regime {args.regime_bars} bars), {args.years} years of 1h bars, "
        f"seed {args.seed} ({took:.0f} s)"
    )
    print(f"AI1 events: {report.events['ai1']}")
    print(
        f"AI1 out-of-sample AUC: raw {m['oos_raw']['auc']:.3f}, calibrated "
        f"{m['oos_calibrated']['auc']:.3f} on {m['oos_raw']['n']} events "
        f"({m['oos_raw']['positive_rate']:.0%} reverted)"
    )
    print(
        f"AI1 CV: out-of-fold AUC {m['cv_out_of_fold']['auc']:.3f}, per-fold mean "
        f"{m['cv_fold_auc_mean']:.3f}"
    )
    c = m["canary"]
    print(f"leakage canary: control AUC {c['auc_mean']:.3f} ({'pass' if c['passed'] else 'FAIL'})")
    top = sorted(m["feature_importance"].items(), key=lambda kv: -kv[1])[:4]
    print("top features (gain share): " + ", ".join(f"{k} {v:.2f}" for k, v in top))
    print(f"retrain_status={report.status} {'; '.join(report.blocked_reasons)}")

    def line(name: str, x: dict) -> str:  # type: ignore[type-arg]
        return (
            f"{name}: {x['trades']} trades, win rate {x['win_rate'] or 0:.2f}, annual return "
            f"{x['annual_return'] or 0:.3f}, Sharpe {x['sharpe'] or float('nan'):.2f}, MaxDD "
            f"{x['max_drawdown']:.3f}"
        )

    print(f"backtest: θ adopted ({t1:.3f}, {t2:.3f}); decision {bt.decision}")
    print(
        f"  AI1 on the test window's {len(probs)} event bars: calibrated probability quartiles "
        + ", ".join(f"{q:.3f}" for q in np.quantile(probs, [0.25, 0.5, 0.75]))
    )
    print(f"  test window at θ2 = {t2:.3f}, by θ1 (0: every AI1 event taken):")
    for theta1, x in sweep.items():
        print("    " + line(f"θ1 {theta1:.2f}", x))
    failed = [f"{g['gate']} ({g['reason']})" for g in bt.gates if not g["passed"]]
    print("  failed gates: " + ("; ".join(failed) or "none"))


if __name__ == "__main__":
    main()
