"""Drift detectors' measured error rates (issue 19): false alarms on stationary data, and
detection delay for planted shifts.

False alarms: the share of live windows in which the detector declares any feature drifted
(Holm over all (feature, check) tests at α = analytics_policy drift.false_alarm_rate), when
training and live windows come from the same stationary process, at live windows of 100, 500,
1,000 and 5,000 bars. Two processes: (a) four independent AR(1) features (φ 0.6); (b) real
hourly bars (EURUSD 2017-2018, the `backtesting` package's test file) turned into four features
(1-bar log return, its absolute value, log high-low range, 20-bar z-score of the close), then
stationary-block-bootstrapped (Politis-White block length) into a long stationary series from
which training and live windows are drawn independently. Each training window (20,000 bars, at
least analytics_policy drift.min_training_to_live_ratio × the live window) is redrawn
``--trainings`` times; each gets its own null simulation, calibrated by the policy's
second-level bootstrap, as ``mlcore feedback check`` builds it.

Detection delay: a stream whose first ``window`` bars come from the training process, then a
planted change; the detector looks at the trailing ``window`` bars every ``--step`` bars;
delay = bars from the change to the first alarm (censored at ``--horizon``); training windows of
10,000 bars. Changes: a 0.5σ
mean shift of one AR(1) feature, 1.5× its volatility, and a correlation break between the two
legs of a pair (leg returns correlated 0.8, then 0.3) seen through pair features (rolling
50-bar return correlation, spread return, rolling spread volatility, leg-B return).

Run: .venv/bin/python benchmarks/bench_drift.py [--quick] [--seed S] [--json]
     [--trainings N] [--trials N] [--process ar1|real|both] [--windows 100,500] [--no-delays]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from mlcore.config import DriftPolicy, load_config
from mlcore.feedback import (
    BlockRule,
    CalibrationPlan,
    assess_drift,
    block_length,
    calibrate,
    min_draws,
    null_table,
    reference,
    scaled,
)
from mlcore.feedback._nullsim import stationary_indices

REPO = Path(__file__).resolve().parents[1]
PHI = 0.6
Stream = Callable[[np.random.Generator, int], np.ndarray]
#: alarms, windows, single tests over, single tests, per-training rates (any, single)
Cell = tuple[int, int, int, int, list[float], list[float]]


def ar1(rng: np.random.Generator, n: int, f: int = 4, scale: float = 1.0) -> np.ndarray:
    """``f`` independent stationary AR(1) series (unit marginal variance times ``scale``)."""
    e = rng.standard_normal((n + 200, f)) * np.sqrt(1 - PHI * PHI) * scale
    return np.asarray(lfilter([1.0], [1.0, -PHI], e, axis=0)[200:])


def real_features() -> np.ndarray:
    """Four features of real hourly EURUSD bars (rows with a NaN dropped)."""
    import backtesting

    path = Path(backtesting.__file__).parent / "test" / "EURUSD.csv"
    bars = pd.read_csv(path, index_col=0)
    ret = np.log(bars["Close"]).diff()
    z = (bars["Close"] - bars["Close"].rolling(20).mean()) / bars["Close"].rolling(20).std()
    log_range = np.log(bars["High"] / bars["Low"] + 1e-9)
    frame = pd.DataFrame({"ret_1": ret, "abs_ret": ret.abs(), "log_range": log_range, "z_20": z})
    return frame.dropna().to_numpy()


def bootstrapped(real: np.ndarray, block: int) -> Stream:
    """A stationary process: the real rows, stationary-block-bootstrapped."""

    def draw(rng: np.random.Generator, n: int) -> np.ndarray:
        return real[stationary_indices(rng, len(real), n, 1, block)[0]]

    return draw


def pair_features(rng: np.random.Generator, n: int, rho: np.ndarray) -> np.ndarray:
    """Pair features of two legs whose returns have correlation ``rho[t]``."""
    rb = rng.standard_normal(n + 60)
    rho_t = np.concatenate([np.full(60, rho[0]), rho])
    ra = rho_t * rb + np.sqrt(1 - rho_t**2) * rng.standard_normal(n + 60)
    a, b = pd.Series(ra), pd.Series(rb)
    spread = a - 0.8 * b  # β fixed at the training correlation
    corr = a.rolling(50).corr(b)
    vol = spread.rolling(50).std()
    out = np.column_stack([corr, spread, vol, b])[60:]
    return np.asarray(out)


@dataclass(frozen=True)
class Detector:
    """One training window's reference and null tables."""

    ref: object
    tables: dict[int, object]


def _detector(train: np.ndarray, windows: list[int], draws: int, seed: int,
              p: DriftPolicy) -> Detector:  # fmt: skip
    """The reference and calibrated null tables, as ``mlcore feedback check`` builds them
    (the policy's bins, block rule and calibration; ``draws`` first-level windows)."""
    names = tuple(f"f{j}" for j in range(train.shape[1]))
    ref = reference(train, names, p.psi_bins, p.psi_epsilon)
    block = block_length(train, BlockRule(p.block_length_rule), p.max_block_bars)
    plan = CalibrationPlan(p.calibration_replicates, p.calibration_draws, p.calibration_windows,
                           p.calibration_power, p.psi_bins)  # fmt: skip
    tables = {}
    for w in windows:
        table = null_table(train, ref, w, block, draws, seed)
        if plan.replicates:
            cal = calibrate(train, ref, w, block, p.false_alarm_rate, plan, seed)
            table = scaled(table, cal.psi_scale, cal.shift_scale)
        tables[w] = table
    return Detector(ref, tables)


def training_bars(train_bars: int, window: int, p: DriftPolicy) -> int:
    """The training window for a live window: ``train_bars``, or the policy's minimum ratio
    times the live window when that is longer."""
    return max(train_bars, int(np.ceil(p.min_training_to_live_ratio * window)))


def false_alarms(stream: Stream, windows: list[int], args: argparse.Namespace, p: DriftPolicy,
                 draws: int) -> dict[int, Cell]:  # fmt: skip
    """Per live window size: windows with any feature drifted (Holm), windows, single
    (feature, check) tests over their (1 − α) null quantile, single tests, and per training
    window its two rates (any, single). Each training series is drawn once; a live window
    size uses its first ``training_bars`` bars."""
    rng = np.random.default_rng(args.seed)
    alpha = p.false_alarm_rate
    out = {w: [0, 0, 0, 0] for w in windows}
    per: dict[int, tuple[list[float], list[float]]] = {w: ([], []) for w in windows}
    longest = max(training_bars(args.train_bars, w, p) for w in windows)
    for t in range(args.trainings):
        series = stream(rng, longest)
        for w in windows:
            train = series[: training_bars(args.train_bars, w, p)]
            det = _detector(train, [w], draws, args.seed + t, p)
            before = list(out[w])
            for _ in range(args.trials):
                live = stream(rng, w)
                report = assess_drift(det.ref, det.tables[w], live, alpha)  # type: ignore[arg-type]
                out[w][0] += bool(report.drifted)
                out[w][1] += 1
                for f in report.features:
                    out[w][2] += (f.psi > f.psi_threshold) + (f.shift > f.shift_threshold)
                    out[w][3] += 2
            per[w][0].append((out[w][0] - before[0]) / (out[w][1] - before[1]))
            per[w][1].append((out[w][2] - before[2]) / (out[w][3] - before[3]))
    return {w: (a, n, e, m, *per[w]) for w, (a, n, e, m) in out.items()}


Planted = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]


def delays(make: Planted, window: int, args: argparse.Namespace, p: DriftPolicy,
           draws: int) -> list[int | None]:  # fmt: skip
    """Per repetition: bars from the change to the first alarm (None: not within horizon)."""
    rng = np.random.default_rng(args.seed + 1)
    out: list[int | None] = []
    for r in range(args.repeats):
        train, stream = make(rng, window + args.horizon)
        det = _detector(train, [window], draws, args.seed + 100 + r, p)
        found = None
        for end in range(window + args.step, window + args.horizon + 1, args.step):
            live = stream[end - window : end]
            report = assess_drift(det.ref, det.tables[window], live, p.false_alarm_rate)  # type: ignore[arg-type]
            if report.drifted:
                found = end - window
                break
        out.append(found)
    return out


def _planted(kind: str, train_bars: int, pre: int) -> Planted:
    """A training window and a stream whose change starts at bar ``pre``."""

    def make(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        if kind == "corr_break":
            rho = np.full(n, 0.8)
            rho[pre:] = 0.3
            return pair_features(rng, train_bars, np.full(train_bars, 0.8)), pair_features(
                rng, n, rho
            )
        train, stream = ar1(rng, train_bars), ar1(rng, n)
        if kind == "mean_0.5sd":
            stream[pre:, 0] += 0.5
        else:  # vol_1.5x
            stream[pre:, 0] = ar1(rng, n - pre, 1, 1.5)[:, 0]
        return train, stream

    return make


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="A smoke run (seconds), not a measure.")
    ap.add_argument("--seed", type=int, default=19)
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--trainings",
        type=int,
        default=16,
        help="Training windows drawn per false-alarm cell (each with its null).",
    )
    ap.add_argument("--trials", type=int, default=125, help="Live windows per training window.")
    ap.add_argument("--process", choices=["ar1", "real", "both"], default="both")
    ap.add_argument("--windows", default="100,500,1000,5000", help="Live window sizes (bars).")
    ap.add_argument("--no-delays", action="store_true", help="False alarms only.")
    args = ap.parse_args(argv)
    cfg = load_config(REPO / "configs", "dev")
    policy = cfg.analytics.drift
    alpha = policy.false_alarm_rate
    draws = min_draws(8, alpha) + 201  # 4 features x 2 checks
    windows = [int(w) for w in args.windows.split(",")]
    args.train_bars = 20_000
    args.delay_train_bars, args.repeats, args.horizon, args.step = 10_000, 20, 3000, 10
    delay_window = 500
    if args.quick:
        windows, draws = [100], min_draws(8, alpha) + 1
        policy = policy.model_copy(update={"calibration_replicates": 2,
                                           "calibration_draws": 200})  # fmt: skip
        args.train_bars, args.trainings, args.trials = 2000, 1, 10
        args.delay_train_bars, args.repeats, args.horizon, args.step = 2000, 2, 400, 50
        delay_window = 100
    started = time.perf_counter()
    real = real_features()
    real_block = block_length(real, BlockRule.POLITIS_WHITE, 500)
    result: dict[str, object] = {"alpha": alpha, "draws": draws, "train_bars": args.train_bars,
                                 "training_bars": {str(w): training_bars(args.train_bars, w,
                                                                        policy)
                                                   for w in windows},
                                 "calibration": [policy.calibration_replicates,
                                                 policy.calibration_draws,
                                                 policy.calibration_windows,
                                                 policy.calibration_power],
                                 "real_bars": len(real), "real_block": real_block}  # fmt: skip
    streams: dict[str, Stream] = {"ar1": lambda g, n: ar1(g, n),
                                  "real_bootstrap": bootstrapped(real, real_block)}  # fmt: skip
    wanted = {"ar1": ["ar1"], "real": ["real_bootstrap"], "both": list(streams)}[args.process]
    fa = {k: false_alarms(streams[k], windows, args, policy, draws) for k in wanted}
    result["trainings"], result["trials"] = args.trainings, args.trials
    result["false_alarms"] = {k: {str(w): list(v) for w, v in d.items()} for k, d in fa.items()}
    dl = {} if args.no_delays else {
        kind: delays(_planted(kind, args.delay_train_bars, delay_window), delay_window, args,
                     policy, draws)
        for kind in ("mean_0.5sd", "vol_1.5x", "corr_break")}  # fmt: skip
    result["delays"] = dl
    result["delay_train_bars"] = args.delay_train_bars
    result["delay_window"], result["step"], result["horizon"] = (
        delay_window,
        args.step,
        args.horizon,
    )
    result["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print(result, fa, dl)
    return result


def _between(rates: list[float]) -> str:
    """The mean of per-training rates with the standard error between training windows, and
    their range, in percent (the binomial error of pooled windows understates the uncertainty:
    a long-memory feature's rate depends mostly on which training window was drawn)."""
    r = np.asarray(rates)
    se = r.std(ddof=1) / np.sqrt(r.size) if r.size > 1 else float("nan")
    return f"{100 * r.mean():.2f} % ± {100 * se:.2f} ({100 * r.min():.1f}–{100 * r.max():.1f})"


def _print(result: dict[str, object],
           fa: dict[str, dict[int, Cell]],
           dl: dict[str, list[int | None]]) -> None:  # fmt: skip
    print(f"alpha {result['alpha']}, {result['draws']} null draws, training window "
          f"{result['train_bars']} bars, {result['trainings']} training windows × "
          f"{result['trials']} live windows per cell; real bars {result['real_bars']} (block "
          f"{result['real_block']})")  # fmt: skip
    ratio = result["training_bars"]
    assert isinstance(ratio, dict)
    print(
        "| process | live window (bars) | training bars (ratio) | any feature (Holm): alarms / "
        "windows | rate ± s.e. between trainings (range) | single test over its (1 − α) "
        "quantile | rate ± s.e. between trainings (range) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, per in fa.items():
        for w, (a, n, e, m, any_t, single_t) in per.items():
            t = ratio[str(w)]
            print(f"| {name} | {w:,} | {t:,} ({t / w:.0f}×) | {a} / {n} | {_between(any_t)} | "
                  f"{e} / {m} | {_between(single_t)} |")  # fmt: skip
    if dl:
        print("\n| planted change | detected | median delay (bars) | 90th pct (bars) |")
        print("| --- | ---: | ---: | ---: |")
    for kind, ds in dl.items():
        got = sorted(d for d in ds if d is not None)
        med = f"{np.median(got):.0f}" if got else "-"
        p90 = f"{np.quantile(got, 0.9):.0f}" if got else "-"
        print(f"| {kind} | {len(got)} / {len(ds)} | {med} | {p90} |")
    print(f"\n{result['seconds']} s")


if __name__ == "__main__":
    main()
