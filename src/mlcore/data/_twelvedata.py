"""TwelveData ``time_series`` REST provider: paging, rate limit, retries, circuit breaker."""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

import httpx
import pandas as pd
import pybreaker
import tenacity

from mlcore._logging import get_logger
from mlcore.config import TIMEFRAMES, PipelinePolicy, ProviderSpec
from mlcore.data._parse import parse_table
from mlcore.data._provider import FetchResult
from mlcore.data._twelvedata_decoder import Decoder, read_bounded, redact
from mlcore.errors import ConfigError, FatalError, MlcoreError, RetryableError

T = TypeVar("T")
BreakerState = Literal["closed", "open", "half-open"]

_LOG = get_logger("data.twelvedata")
_INTERVALS: dict[str, str] = {
    "1min": "1min",
    "5min": "5min",
    "15min": "15min",
    "30min": "30min",
    "1h": "1h",
    "4h": "4h",
    "1day": "1day",
}
_VALUE_COLUMNS = ("datetime", "open", "high", "low", "close")
_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


class TokenBucket:
    """Thread-safe token bucket: ``burst`` tokens, refilled at ``requests_per_minute``.

    Parameters
    ----------
    requests_per_minute : int
        Long-run request rate.
    burst : int
        Bucket size; the bucket starts full.
    clock, sleep : callable
        Monotonic clock in seconds and the sleep function (injectable for tests).
    """

    def __init__(
        self,
        requests_per_minute: int,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if requests_per_minute <= 0 or burst <= 0:
            raise ValueError("requests_per_minute and burst must be positive")
        self._rate_per_s = requests_per_minute / 60.0
        self._capacity = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._updated_s = clock()
        self._lock = threading.Lock()

    def _take(self) -> float:
        """Take a token and return 0.0, or return how long to wait for the next one."""
        with self._lock:
            now_s = self._clock()
            elapsed_s = max(0.0, now_s - self._updated_s)
            self._tokens = min(self._capacity, self._tokens + elapsed_s * self._rate_per_s)
            self._updated_s = now_s
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self._rate_per_s

    def acquire(self) -> float:
        """Block until a token is available; return the seconds waited."""
        waited_s = 0.0
        while True:
            wait_s = self._take()
            if wait_s == 0.0:
                return waited_s
            # Sleep outside the lock so other threads can refill-check meanwhile.
            self._sleep(wait_s)
            waited_s += wait_s


class _StateListener(pybreaker.CircuitBreakerListener):
    """Log breaker transitions and remember when it last opened (monotonic seconds)."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.opened_at_s: float | None = None

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        if new_state.name == pybreaker.STATE_OPEN:
            self.opened_at_s = time.monotonic()
        old = old_state.name if old_state is not None else None
        _LOG.warning("circuit_state_change", provider=self.provider, old=old, new=new_state.name)


class _Circuit:
    """A pybreaker circuit that admits one trial call at a time once the reset timeout passed."""

    def __init__(self, provider: str, fail_max: int, reset_timeout_s: float) -> None:
        self._provider = provider
        self._reset_timeout_s = reset_timeout_s
        self._listener = _StateListener(provider)
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_timeout_s,
            # Only transient upstream failures measure upstream health.
            exclude=[lambda exc: not isinstance(exc, RetryableError)],
            listeners=[self._listener],
            throw_new_error_on_trip=False,
            name=provider,
        )
        self._lock = threading.Lock()
        self._trial_running = False

    @property
    def state(self) -> BreakerState:
        raw = str(self._breaker.current_state)
        if raw == pybreaker.STATE_OPEN:
            opened_at_s = self._listener.opened_at_s
            if opened_at_s is not None and time.monotonic() - opened_at_s >= self._reset_timeout_s:
                return "half-open"
            return "open"
        return "half-open" if raw == pybreaker.STATE_HALF_OPEN else "closed"

    def _open_error(self, what: str) -> RetryableError:
        return RetryableError(
            "DATA_API_CIRCUIT_OPEN",
            f"{what}: circuit of provider '{self._provider}' is open; no request sent",
            details={"provider": self._provider},
        )

    def _admit(self, what: str) -> bool:
        """Refuse the call while open; return whether it is the half-open trial."""
        with self._lock:
            state = self.state
            if state == "open" or (state == "half-open" and self._trial_running):
                raise self._open_error(what)
            if state == "half-open":
                self._trial_running = True
                return True
            return False

    def call(self, what: str, func: Callable[[], T]) -> T:
        """Run ``func`` under the breaker; one failure is counted per call."""
        trial = self._admit(what)
        try:
            # calling() does not hold the breaker's lock while func runs (breaker.call does),
            # so slow requests and backoff sleeps do not serialize other threads.
            with self._breaker.calling():
                return func()
        except pybreaker.CircuitBreakerError as exc:
            raise self._open_error(what) from exc
        finally:
            if trial:
                with self._lock:
                    self._trial_running = False


class _Watchdog:
    """Ends one request at its deadline, whatever part of it is running: httpx's timeout bounds
    each read, so headers or a body trickling in a byte at a time would never end. httpx's
    ``trace`` extension hands over each connection it opens; at the deadline its socket is
    shut down, which wakes the blocked read (the request then fails and is named a timeout).
    """

    def __init__(self, seconds: float) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self.fired = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpx's trace callback: remember the socket of each connection (TCP, then TLS)."""
        if not event.endswith((".connect_tcp.complete", ".start_tls.complete")):
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            with self._lock:
                self._sock = sock
                if self.fired:  # connected after the deadline
                    self._shut()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            self._shut()

    def _shut(self) -> None:
        if self._sock is None:
            return  # still connecting: httpx's connect timeout (the same seconds) bounds it
        try:
            # socket.socket's own shutdown: an SSLSocket's would also drop its TLS state
            # under the thread reading it.
            socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
        except OSError:
            pass  # already closed

    def cancel(self) -> None:
        self._timer.cancel()


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    utc = value.astimezone(UTC)
    # A plain datetime: pandas Timestamps would carry nanoseconds into the window arithmetic.
    return datetime(*utc.timetuple()[:6], utc.microsecond, tzinfo=UTC)


def _ceil_second(value: datetime) -> datetime:
    floor = value.replace(microsecond=0)
    return floor if floor == value else floor + timedelta(seconds=1)


def _page_span(values: list[dict[str, Any]]) -> tuple[datetime, datetime] | None:
    """Earliest and latest timestamp of a page, for paging only (rows are parsed later)."""
    stamps: list[datetime] = []
    for row in values:
        try:
            stamp = datetime.fromisoformat(str(row.get("datetime", "")))
        except ValueError:
            continue
        stamps.append(stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC))
    if not stamps:
        return None
    return min(stamps), max(stamps)


def _values_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    # FX series have no volume; a volume column of NaN would reject every row.
    columns = list(_VALUE_COLUMNS)
    if any("volume" in row for row in rows):
        columns.append("volume")
    return pd.DataFrame(rows).reindex(columns=columns)


class TwelveDataProvider:
    """Bars from TwelveData's ``GET {base_url}/time_series`` (or a server of the same shape).

    Parameters
    ----------
    spec : ProviderSpec
        A ``kind: twelvedata`` entry of sources.yaml (name, base_url, api_key_env).
    pipeline : PipelinePolicy
        Timeouts, page size, retry/backoff, rate limit, circuit breaker, DQ tolerance.
    environ : mapping, optional
        Where the API key is read (``os.environ`` by default), at each fetch.
    sleep : callable, optional
        Sleep used between retries (tests make it instant).
    rate_limiter : TokenBucket, optional
        Shared or test bucket; by default one built from ``pipeline.rate_limit``.
    rng : random.Random, optional
        Source of backoff jitter.
    """

    def __init__(
        self,
        spec: ProviderSpec,
        pipeline: PipelinePolicy,
        *,
        environ: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rate_limiter: TokenBucket | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if spec.kind != "twelvedata" or not spec.base_url or not spec.api_key_env:
            raise ValueError(f"provider '{spec.name}' is not a twelvedata entry with url and key")
        self.name = spec.name
        self._key_env = spec.api_key_env
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        self._policy = pipeline
        self._sleep = sleep
        # Jitter only spreads retries; it needs no cryptographic randomness.
        self._rng = rng or random.Random()  # noqa: S311
        self._bucket = rate_limiter or TokenBucket(
            pipeline.rate_limit.requests_per_minute, pipeline.rate_limit.burst
        )
        self._circuit = _Circuit(
            spec.name, pipeline.circuit_breaker.fail_max, pipeline.circuit_breaker.reset_timeout_s
        )
        self._client = httpx.Client(
            base_url=spec.base_url,
            timeout=pipeline.request_timeout_s,
            headers={"Accept": "application/json"},
            # A connection per request, so the watchdog always knows the request's socket
            # (the rate limit allows a few requests a minute: reuse would save little).
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    @property
    def breaker_state(self) -> BreakerState:
        """``closed``, ``open`` or ``half-open`` (the next call is the trial call)."""
        return self._circuit.state

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def __enter__(self) -> TwelveDataProvider:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- fetch ---------------------------------------------------------------------------
    def fetch(self, symbol: str, timeframe: str, start: datetime, end: datetime) -> FetchResult:
        """Return bars with ``start <= ts <= end`` (UTC), sorted by ts, plus rejected rows.

        Raises
        ------
        ConfigError
            The API key variable is not set (``DATA_API_AUTH_MISSING``).
        RefusedError
            The key refused (401, ``DATA_API_UNAUTHORIZED``) or the request forbidden to it
            (403, ``DATA_API_FORBIDDEN``), as HTTP status or as the error body's code.
        FatalError
            Any other refused request (``DATA_API_REFUSED``, its HTTP status and reason
            named), bad schema, paging that does not advance.
        RetryableError
            Rate limit, server error, 408/425, timeout, connection error or bad body after all
            retries, or ``DATA_API_CIRCUIT_OPEN``.
        """
        if timeframe not in _INTERVALS:
            raise ValueError(f"timeframe must be one of {sorted(_INTERVALS)}, got {timeframe!r}")
        start_utc, end_utc = _utc(start, "start"), _utc(end, "end")
        if start_utc > end_utc:
            raise ValueError(f"start {start_utc.isoformat()} is after end {end_utc.isoformat()}")
        api_key = self._api_key()
        interval = _INTERVALS[timeframe]
        rows = self._collect_pages(symbol, interval, start_utc, end_utc, api_key)
        parsed = parse_table(
            _values_frame(rows),
            origin=f"twelvedata {symbol} {interval}",
            timeframe=timeframe,
            tz="UTC",
            price_abs_tolerance=self._policy.dq_thresholds.price_abs_tolerance,
            earliest=pd.Timestamp(self._policy.earliest_bar, tz="UTC"),
            isolation=self._policy.isolated_rows,
        )
        bars = self._clip(parsed.bars, symbol, start_utc, end_utc)
        _LOG.info(
            "twelvedata_fetched",
            provider=self.name,
            symbol=symbol,
            interval=interval,
            rows=len(rows),
            bars=len(bars),
            rejects=len(parsed.rejects),
        )
        return FetchResult(bars=bars, rejects=parsed.rejects, source=self.name, rows_read=len(rows))

    def _api_key(self) -> str:
        key = self._environ.get(self._key_env, "").strip()
        if not key:
            raise ConfigError(
                "DATA_API_AUTH_MISSING",
                f"provider '{self.name}': environment variable {self._key_env} is not set: set "
                "it to the provider's API key",
                details={"provider": self.name, "env_var": self._key_env},
            )
        return key

    def _clip(
        self, bars: pd.DataFrame, symbol: str, start: datetime, end: datetime
    ) -> pd.DataFrame:
        in_range = (bars["ts"] >= pd.Timestamp(start)) & (bars["ts"] <= pd.Timestamp(end))
        clipped = bars[in_range]
        unique = clipped.drop_duplicates("ts", keep="first").reset_index(drop=True)
        dropped = len(bars) - len(clipped)
        if dropped or len(unique) != len(clipped):
            _LOG.warning(
                "twelvedata_rows_dropped",
                provider=self.name,
                symbol=symbol,
                out_of_range=dropped,
                duplicates=len(clipped) - len(unique),
            )
        return unique

    def _collect_pages(
        self, symbol: str, interval: str, start: datetime, end: datetime, api_key: str
    ) -> list[dict[str, Any]]:
        """Fetch every page of [start, end]; a full page is split around what it returned.

        TwelveData truncates a full page to the bars nearest ``end_date``; other servers of
        the same shape may keep the oldest. Both uncovered sides of a full page are requested,
        so paging is correct either way.
        """
        step = timedelta(seconds=TIMEFRAMES[interval])
        pending = [(_ceil_second(start), end.replace(microsecond=0))]
        rows: list[dict[str, Any]] = []
        while pending:
            lo, hi = pending.pop()
            if lo > hi:
                continue
            values = self._request_page(symbol, interval, lo, hi, api_key)
            rows.extend(values)
            if len(values) < self._policy.page_size:
                continue
            first, last = self._full_page_span(values, symbol, interval, lo, hi)
            pending.append((last + step, hi))
            pending.append((lo, first - step))
        return rows

    def _full_page_span(
        self, values: list[dict[str, Any]], symbol: str, interval: str, lo: datetime, hi: datetime
    ) -> tuple[datetime, datetime]:
        span = _page_span(values)
        # Progress needs the page to overlap the window; bars outside it are clipped later.
        if span is None or span[1] < lo or span[0] > hi:
            got = "no parsable datetime" if span is None else f"{span[0]} .. {span[1]}"
            raise FatalError(
                "DATA_API_PAGING",
                f"{self.name} {symbol} {interval}: full page for [{lo} .. {hi}] does not advance "
                f"(bars {got})",
                details={"provider": self.name, "symbol": symbol, "window": [str(lo), str(hi)]},
            )
        return span

    # -- one page: breaker around retries around one HTTP request --------------------------
    def _request_page(
        self, symbol: str, interval: str, lo: datetime, hi: datetime, api_key: str
    ) -> list[dict[str, Any]]:
        what = f"{self.name} {symbol} {interval} [{lo:{_DATE_FORMAT}} .. {hi:{_DATE_FORMAT}}]"
        params = {
            "symbol": symbol,
            "interval": interval,
            "start_date": lo.strftime(_DATE_FORMAT),
            "end_date": hi.strftime(_DATE_FORMAT),
            "timezone": "UTC",
            "order": "ASC",
            "outputsize": str(self._policy.page_size),
            "format": "JSON",
        }
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(RetryableError),
            stop=tenacity.stop_after_attempt(self._policy.retry_max + 1),
            wait=self._backoff_s,
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        values: list[dict[str, Any]] = self._circuit.call(
            what, lambda: retrying(self._attempt, what, params, api_key)
        )
        _LOG.debug("twelvedata_page", provider=self.name, request=what, rows=len(values))
        return values

    def _backoff_s(self, state: tenacity.RetryCallState) -> float:
        policy = self._policy
        backoff_s = policy.backoff_initial_s * 2.0 ** (state.attempt_number - 1)
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, RetryableError) and exc.retry_after_s is not None:
            backoff_s = max(backoff_s, exc.retry_after_s)
        return min(policy.backoff_max_s, backoff_s) + self._rng.uniform(
            0.0, policy.backoff_jitter_s
        )

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        wait_s = state.next_action.sleep if state.next_action is not None else None
        _LOG.warning(
            "twelvedata_retry",
            provider=self.name,
            attempt=state.attempt_number,
            code=exc.code if isinstance(exc, MlcoreError) else type(exc).__name__,
            wait_s=wait_s,
        )

    def _get(self, path: str, params: dict[str, str], headers: dict[str, str]) -> httpx.Response:
        """GET ``path`` within request_timeout_s in all (connect, headers, body): httpx's
        timeout bounds each read, so headers or a body trickling in a byte at a time would
        never end; a deadline per chunk and a watchdog on the connection bound the whole."""
        timeout_s = self._policy.request_timeout_s
        deadline = time.monotonic() + timeout_s
        watchdog = _Watchdog(timeout_s)
        try:
            with self._client.stream(
                "GET", path, params=params, headers=headers, extensions={"trace": watchdog.trace}
            ) as streamed:
                # Decoded as it comes and bounded: a 4 MB gzip body once decoded to 8 GB.
                body = read_bounded(streamed, deadline, self.name)
        except httpx.TransportError as exc:
            if watchdog.fired:  # the watchdog's shutdown, seen as a dropped connection
                raise httpx.ReadTimeout("the whole request took too long") from exc
            raise
        finally:
            watchdog.cancel()
        return body

    def _attempt(self, what: str, params: dict[str, str], api_key: str) -> list[dict[str, Any]]:
        self._bucket.acquire()
        # The key goes in the documented Authorization header, never in the URL: httpx logs
        # request URLs at INFO and error messages may quote them.
        headers = {"Authorization": f"apikey {api_key}"}
        try:
            response = self._get("/time_series", params, headers)
        except httpx.TimeoutException as exc:
            raise RetryableError(
                "DATA_API_TIMEOUT",
                f"{what}: no complete answer within {self._policy.request_timeout_s} s "
                "(pipeline_policy request_timeout_s, for the whole request)",
                details={"provider": self.name},
            ) from exc
        except httpx.TransportError as exc:
            raise RetryableError(
                "DATA_API_CONNECTION",
                f"{what}: {type(exc).__name__}: {redact(str(exc), api_key)}",
                details={"provider": self.name},
            ) from exc
        return Decoder(self.name, what, api_key, self._key_env).values(response)


__all__ = ["BreakerState", "TokenBucket", "TwelveDataProvider"]
