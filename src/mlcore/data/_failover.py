"""Try market-data providers in priority order until one serves the request."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from mlcore._logging import get_logger
from mlcore.config import PipelinePolicy, SourcesPolicy
from mlcore.data._provider import FetchResult, MarketDataProvider
from mlcore.data._twelvedata import TwelveDataProvider
from mlcore.errors import FatalError, RetryableError

_LOG = get_logger("data.failover")


class FailoverProvider:
    """A provider that asks each of ``providers`` in turn and returns the first answer.

    A :class:`RetryableError` (including an open circuit) or a :class:`FatalError` (a refused
    key too: the next provider has its own) from one provider is recorded and the next one is
    tried; ``FetchResult.source`` names the provider that served the bars.

    Parameters
    ----------
    providers : sequence of MarketDataProvider
        In the order to try them (see :func:`build_providers`).
    """

    name = "failover"

    def __init__(self, providers: Sequence[MarketDataProvider]) -> None:
        if not providers:
            raise ValueError("FailoverProvider needs at least one provider")
        self.providers: tuple[MarketDataProvider, ...] = tuple(providers)

    def fetch(self, symbol: str, timeframe: str, start: datetime, end: datetime) -> FetchResult:
        """Return the first provider's bars for ``start <= ts <= end``.

        Raises
        ------
        FatalError
            When every provider failed and one of them for good (a refused key, a missing
            key, a refused request): the first such error, with its own class and code (a
            :class:`~mlcore.errors.RefusedError` stays one, exit 69), its message followed by
            every provider's code. Retrying later would not mend it, whatever the others said.
        RetryableError
            ``DATA_PROVIDER_ALL_FAILED`` when every provider failed for now; the message and
            ``details["errors"]`` give each provider's name and error code, in order.
        """
        errors: list[tuple[str, str]] = []
        fatal: FatalError | None = None
        for provider in self.providers:
            try:
                result = provider.fetch(symbol, timeframe, start, end)
            except (RetryableError, FatalError) as exc:
                errors.append((provider.name, exc.code))
                if fatal is None and isinstance(exc, FatalError):
                    fatal = exc
                _LOG.warning(
                    "provider_failed",
                    provider=provider.name,
                    code=exc.code,
                    fatal=isinstance(exc, FatalError),
                    symbol=symbol,
                    timeframe=timeframe,
                    error=exc.message,
                )
                continue
            result.source = provider.name
            if errors:
                _LOG.info("provider_failover_served", provider=provider.name, failed=dict(errors))
            return result
        listing = "; ".join(f"{name}: {code}" for name, code in errors)
        every = [{"provider": name, "code": code} for name, code in errors]
        if fatal is not None:
            raise type(fatal)(
                fatal.code,
                fatal.message
                if len(errors) == 1
                else f"{fatal.message}; every provider failed: {listing}",
                details={**fatal.details, "errors": every},
            ) from fatal
        raise RetryableError(
            "DATA_PROVIDER_ALL_FAILED",
            f"every provider failed for {symbol} {timeframe}: {listing}",
            details={
                "errors": every,
                "symbol": symbol,
                "timeframe": timeframe,
            },
        )

    def close(self) -> None:
        """Close every provider that holds connections."""
        for provider in self.providers:
            close: Callable[[], None] | None = getattr(provider, "close", None)
            if close is not None:
                close()


def build_providers(
    sources: SourcesPolicy,
    pipeline: PipelinePolicy,
    environ: Mapping[str, str] | None = None,
) -> list[MarketDataProvider]:
    """Create the REST providers of sources.yaml: enabled ones, lowest priority number first.

    ``kind: file`` entries are skipped (files are read by the file provider). API keys are
    read from ``environ`` (default ``os.environ``) when a provider fetches.
    """
    specs = sorted((p for p in sources.providers if p.enabled), key=lambda p: p.priority)
    providers: list[MarketDataProvider] = []
    for spec in specs:
        if spec.kind == "twelvedata":
            providers.append(TwelveDataProvider(spec, pipeline, environ=environ))
    _LOG.debug("providers_built", providers=[p.name for p in providers])
    return providers


__all__ = ["FailoverProvider", "build_providers"]
