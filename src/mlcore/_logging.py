"""Structured JSON-lines logging (structlog) to stderr."""

from __future__ import annotations

import logging
import os
import sys

import structlog
import structlog.tracebacks

_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


def _stderr_logger(*_args: object) -> structlog.PrintLogger:
    return structlog.PrintLogger(file=sys.stderr)


def configure_logging(level: str = "INFO") -> None:
    """Send JSON-lines logs at ``level`` and above to stderr."""
    name = level.upper()
    if name not in _LEVELS:
        raise ValueError(f"LOG_LEVEL must be one of {sorted(_LEVELS)}, got {level!r}")
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # Tracebacks as data, without local variables (they may hold secrets and configs).
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[name]),
        # Resolve sys.stderr at each logger creation: it may be replaced (tests, daemons).
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=_LEVELS[name], stream=sys.stderr, format="%(message)s")


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    """Return a structured logger bound to ``component=name``."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(component=name)
    return logger


# Libraries whose info logs are console chatter for a command line user ("Finished in state
# Completed()", "Context impl PostgresqlImpl.", numba's compiler and Optuna's trial lines).
_CHATTY = ("prefect", "alembic", "numba", "optuna", "httpx", "httpcore")
_PREFECT_LEVEL = os.environ.get("PREFECT_LOGGING_LEVEL")
# A failed flow or task run is logged at ERROR by Prefect ("Finished in state Failed(...)",
# "Encountered exception during execution: ..."): for a failure the user caused, that is two
# more lines beside the command's own one-line error (which says it, with its code), so they
# show only under --verbose. Prefect reads its logging overrides from these variables.
_PREFECT_RUN_LOGGERS = {
    var: os.environ.get(var)
    for var in ("PREFECT_LOGGING_LOGGERS_PREFECT_FLOW_RUNS_LEVEL",
                "PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL")
}  # fmt: skip
VERBOSE_ENV = "MLCORE_VERBOSE"  # as the user set it, if they did


def set_third_party_verbosity(verbose: bool) -> None:
    """Show third-party libraries' info logs only when ``verbose`` (else warnings and up).

    Prefect reads ``PREFECT_LOGGING_LEVEL`` when it first sets up its logging, so it is set
    here too (unless the user set it) before any command imports Prefect.
    """
    level = logging.INFO if verbose else logging.WARNING
    for name in _CHATTY:
        logging.getLogger(name).setLevel(level)
    # SQLAlchemy's info level is an echo of every statement: never console output.
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    if _PREFECT_LEVEL is None:
        os.environ["PREFECT_LOGGING_LEVEL"] = logging.getLevelName(level)
    for var, user_set in _PREFECT_RUN_LOGGERS.items():
        if user_set is None:
            os.environ[var] = "NOTSET" if verbose else "CRITICAL"
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.CRITICAL)
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"  # for the processes this one starts


def inherit_third_party_verbosity() -> None:
    """In a child process (a serving worker): the verbosity its parent command chose."""
    set_third_party_verbosity(os.environ.get(VERBOSE_ENV, "0") == "1")
