"""Which of the universe's pairs a step at one timeframe takes: those that trade there
(``PairSpec.timeframes``) and whose legs both have included bars at it in the catalog. A
daily pair in a universe is then no reason for an hourly run to fail: it is skipped, with one
line saying why."""

from __future__ import annotations

from dataclasses import dataclass

from mlcore.config import AppConfig, PairSpec
from mlcore.data._catalog import Catalog
from mlcore.errors import MissingDataError, MissingInputError


@dataclass(frozen=True)
class PairChoice:
    """The pairs a step takes at ``timeframe``, and one line per pair it skips."""

    timeframe: str
    pairs: list[PairSpec]
    skipped: list[str]

    @property
    def pair_ids(self) -> list[str]:
        """The taken pairs' ids, in universe order."""
        return [p.pair_id for p in self.pairs]


def pairs_at(
    cfg: AppConfig, cat: Catalog, timeframe: str, pair_ids: list[str] | None = None
) -> PairChoice:
    """The universe's pairs (or ``pair_ids``) with bars at ``timeframe``.

    Pairs named in ``pair_ids`` are asked for explicitly: one that does not trade at
    ``timeframe`` or lacks bars is an error (MissingInputError, MissingDataError), not a skip.
    Without ``pair_ids`` such pairs are skipped; none left is a MissingDataError naming each
    pair's reason.
    """
    known = {p.pair_id: p for p in cfg.universe.pairs}
    unknown = sorted(set(pair_ids or []) - set(known))
    if unknown:
        raise MissingInputError(
            "UNIVERSE_PAIR_UNKNOWN",
            f"pair(s) {unknown} are not in universe.yaml {sorted(known)}: add them "
            "(`mlcore universe add-pair A B`) or name listed pairs",
            details={"pairs": unknown},
        )
    # Universe order whatever order they were named in: the data hash and the model files
    # depend on it, and a rebuild names them sorted.
    asked = [p for p in cfg.universe.pairs if not pair_ids or p.pair_id in pair_ids]
    pairs: list[PairSpec] = []
    skipped: list[str] = []
    for pair in asked:
        why = _why_not(cat, pair, timeframe)
        if why is None:
            pairs.append(pair)
        elif pair_ids:
            said = f"pair {pair.pair_id}: {why}"
            if not pair.trades_at(timeframe):
                raise MissingInputError(
                    "UNIVERSE_PAIR_TIMEFRAME", said, details={"pair_id": pair.pair_id}
                )
            raise MissingDataError(
                "DATA_PAIR_NO_BARS", said, details={"pair_id": pair.pair_id, "timeframe": timeframe}
            )
        else:
            skipped.append(f"pair {pair.pair_id} skipped: {why}")
    if not pairs:
        raise MissingDataError(
            "DATA_PAIR_NO_BARS",
            f"no pair of universe.yaml has {timeframe} bars to use: " + "; ".join(skipped),
            details={"timeframe": timeframe},
        )
    return PairChoice(timeframe, pairs, skipped)


def _why_not(cat: Catalog, pair: PairSpec, timeframe: str) -> str | None:
    if not pair.trades_at(timeframe):
        shown = ", ".join(pair.timeframes or [])
        return f"it trades at {shown}, not {timeframe}"
    empty = [s for s in (pair.leg_a, pair.leg_b) if not cat.partitions(timeframe, s)]
    if empty:
        return (
            f"no included {timeframe} bars of "
            f"{' and '.join(empty)} in the catalog (ingest them, then `mlcore catalog build`)"
        )
    return None
