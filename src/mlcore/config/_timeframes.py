"""The bar timeframes and the spellings users bring for them."""

from __future__ import annotations

import re

TIMEFRAMES: dict[str, int] = {
    "1min": 60,
    "5min": 300,
    "15min": 900,
    "30min": 1800,
    "1h": 3600,
    "4h": 14400,
    "1day": 86400,
}

# Unit spellings (lower case) and their length in seconds. ``m`` is a minute, as in ccxt's
# and TradingView's ``1m``/``5m``; a month is never a timeframe here, and an upper-case ``M``
# (a month in pandas and ccxt) is refused rather than guessed.
_UNITS: dict[str, int] = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "t": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
}  # fmt: skip
_WORDS: dict[str, int] = {"minutely": 60, "hourly": 3600, "daily": 86400}
_SPELLING = re.compile(r"^(\d+)?\s*([a-z]+)$")
ACCEPTED_EXAMPLES = "1m, 5m, 15m, 30m, 60min, 1H, h, hourly, 4H, 1d, 1D, D, daily, 24h"


def _seconds(text: str) -> int | None:
    word = text.strip().replace("_", "").replace("-", "")
    if word.lower() in _WORDS:
        return _WORDS[word.lower()]
    match = _SPELLING.match(word.lower())
    if match is None or match.group(2) not in _UNITS:
        return None
    count = int(match.group(1)) if match.group(1) is not None else 1
    return count * _UNITS[match.group(2)]


def parse_timeframe(text: str) -> str:
    """Return the canonical timeframe (a key of ``TIMEFRAMES``) that ``text`` spells.

    Case-insensitive count-and-unit spellings are accepted (``5m``, ``5min``, ``60min``,
    ``1H``, ``h``, ``4hours``, ``1d``, ``D``, ``24h``) and the words ``hourly``, ``daily``;
    ``m`` means minute. An upper-case ``M`` is refused: pandas and ccxt read it as a month.

    Raises
    ------
    ValueError
        ``text`` names no timeframe of ``TIMEFRAMES``; the message lists what is accepted.

    Examples
    --------
    >>> parse_timeframe("60min"), parse_timeframe("daily"), parse_timeframe("5m")
    ('1h', '1day', '5min')
    """
    if text in TIMEFRAMES:
        return text
    canonical = ", ".join(TIMEFRAMES)
    if re.fullmatch(r"\s*\d*\s*M\s*", text):
        raise ValueError(
            f"{text!r} is ambiguous (M is a month in pandas and ccxt, and a month is not a "
            f"timeframe here): write 1min or 1m for one minute; timeframes: {canonical}"
        )
    seconds = _seconds(text)
    for name, length in TIMEFRAMES.items():
        if seconds == length:
            return name
    raise ValueError(
        f"{text!r} is not one of the timeframes {canonical} (spellings such as "
        f"{ACCEPTED_EXAMPLES} are accepted too)"
    )
