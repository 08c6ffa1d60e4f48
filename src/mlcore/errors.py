"""Errors named ``{DOMAIN}_{CATEGORY}_{CODE}``, grouped by how the caller reacts.

- :class:`FatalError`: needs a person (bad config, bad file, refused request).
- :class:`RetryableError`: transient (network, rate limit, server error); retry with backoff.
- :class:`DataQualityError`: the data are wrong; quarantine or reject and go on.
- :class:`BadDataError` (a FatalError): an input that cannot be used at all; exit 65.
- :class:`RefusedError` (a FatalError): an external service refused our credentials; exit 69.

Errors a user meets through the registry, the retraining flows and the pipeline's stages (each
also a ``ValueError`` or ``RuntimeError`` where callers caught those before):

=========================================  =====================  ==================================
code                                       class                  when
=========================================  =====================  ==================================
``REGISTRY_DB_UNAVAILABLE``                RegistryUnavailable    the registry database does not
                                           (Retryable)            answer when it is opened
``REGISTRY_DB_UNUSABLE``                   ConfigError (exit 2)   the SQLite registry's place holds
                                                                  a folder (or its folder a file)
``REGISTRY_DB_CORRUPT``                    FatalError (exit 1)    the SQLite registry file is not a
                                                                  database
``REGISTRY_VERSION_ID_INVALID``            ConfigError at the     registering a folder whose name
                                           CLI (exit 2);          is not YYYYMMDD_HHMM_<code>
                                           RegistryError below
``REGISTRY_ARTIFACT_FOLDER_BLOCKED``       RegistryError          restore where a file holds the
                                                                  version's folder (or a folder a
                                                                  file's place)
``REGISTRY_DB_REFUSED``                    ConfigError (exit 2)   the registry database refused the
                                                                  connection's settings: a database
                                                                  or role that does not exist, a
                                                                  failed login, a bad URL option, a
                                                                  registry.db SQLite cannot open
``REGISTRY_VERSION_NOT_FOUND``             RegistryError (Fatal)  a version that is not registered
``REGISTRY_VERSION_EXISTS``                RegistryError          registering a version twice
``REGISTRY_VERSION_UNREADABLE``            RegistryError          a model folder missing or lacking
                                                                  run.json, params.yaml, models
``REGISTRY_STATE_INVALID_TRANSITION``      RegistryError          a status change the state machine
                                                                  refuses (or a bad first status)
``REGISTRY_STATE_UNKNOWN_STATUS``          RegistryError          a status that does not exist
``REGISTRY_STATE_NO_ROLLBACK_TARGET``      RegistryError          rollback with nothing deployed or
                                                                  no earlier deployed version
``REGISTRY_STATE_CONFLICT``                RegistryError          ``rollback --from V`` when V is no
                                                                  longer deployed (another change
                                                                  came first; nothing rolled back)
``REGISTRY_REQUEST_NOTES_MISSING``         RegistryError          a decision without its notes
``REGISTRY_REQUEST_THETA_INVALID``        RegistryError          θ to record that is not two finite
                                                                  rates in [0, 1]
``REGISTRY_ARTIFACT_NO_STORE``             RegistryError          restore without an artifact store
``REGISTRY_ARTIFACT_DAMAGED``              RegistryError          a file failing its checksum (on
                                                                  archiving, or its archived copy);
                                                                  a ``--model`` version whose files
                                                                  (or checksums.json) fail the
                                                                  checksums recorded at
                                                                  registration and cannot be
                                                                  restored, or such a copy kept
                                                                  elsewhere (exit 1); a promotion
                                                                  to approved/deployed of such a
                                                                  version (exit 1)
``REGISTRY_ARTIFACT_MISSING``              RegistryError          a file absent from the store
``REGISTRY_RETENTION_KEEP_TOO_LOW``        RegistryError          prune asked to keep fewer than 5
``REGISTRY_RUN_NOT_FOUND``                 RegistryError          a retraining run not recorded
``REGISTRY_RUN_INVALID_STATUS``            RegistryError          a run ended with a bad status or
                                                                  without its error message
``REGISTRY_REBUILD_LINEAGE_UNREADABLE``    RegistryError          rebuild of a folder whose lineage
                                                                  files cannot be read
``AUDIT_REQUEST_VALUE_INVALID``            RegistryError          an audit row (action, config
                                                                  event) with a field that cannot
                                                                  be recorded: empty, too long,
                                                                  not JSON, NaN, NUL, bad UTF-8
``AUDIT_CHAIN_BROKEN``                     FatalError (exit 1)    ``audit verify``: a row whose
                                                                  content does not match its hash,
                                                                  or whose prev_hash is not the
                                                                  row before's (removed/reordered),
                                                                  or a ``--head`` no longer there
``AUDIT_REQUEST_TIMESTAMP_INVALID``        ConfigError (exit 2)   ``audit at`` of a time that is
                                                                  not ISO 8601
``AUDIT_REQUEST_HEAD_INVALID``             ConfigError (exit 2)   ``audit verify --head`` that is
                                                                  not 64 hex digits
``TRAIN_RUN_BLOCKED``                      FatalError (exit 1)    ``mlcore train`` wrote a version
                                                                  whose training was blocked (the
                                                                  models named; registered as
                                                                  rejected)
``RETRAIN_GUARD_STOPPED``                  RetrainRefused         retraining stopped after
                                           (Fatal)                consecutive failures
``RETRAIN_GUARD_BUSY``                     RetrainRefused         another retraining run is on (its
                                                                  process alive or on another host)
``FLOWS_SERVER_MISSING``                   ConfigError            cron serving without a Prefect
                                                                  server (PREFECT_API_URL)
``FLOWS_SERVER_URL_INVALID``               ConfigError (exit 2)   PREFECT_API_URL is not an http(s)
                                                                  URL with a host and a valid port
``FLOWS_SERVER_NOT_PREFECT``               ConfigError (exit 2)   PREFECT_API_URL answers, but its
                                                                  /health is not a Prefect API's
``FLOWS_SERVER_UNREACHABLE``               RetryableError         the Prefect server does not answer
                                           (exit 75)              its health check (or answers 5xx)
``FLOWS_NOTICE_UNREACHABLE``               RetryableError         the publish flow deployed a
                                           (exit 75)              version, but Redis did not answer
                                                                  its notice (the deployment and
                                                                  deployed.json stand; re-send with
                                                                  ``flows run publish``)
``FLOWS_NOTICE_REFUSED``                   RefusedError           ... Redis refused it: a failed
                                           (exit 69)              login, WRONGTYPE, READONLY, OOM,
                                                                  NOPERM
``FLOWS_NOTICE_URL_INVALID``               ConfigError (exit 2)   ... REDIS_URL names no such db or
                                                                  a port that does not speak Redis
``UNIVERSE_PAIR_UNKNOWN``                  MissingInputError      a pair id not in universe.yaml
                                           (Config)
``MODEL_VERSION_NOT_FOUND``                MissingInputError      a model folder that does not exist
``MODEL_VERSION_NONE``                     MissingInputError      no model version trained yet
``MODEL_VERSION_UNREGISTERED``             MissingInputError      ``--model`` names a folder the
                                                                  registry does not hold, without
                                                                  ``--unregistered`` (exit 2)
``UNIVERSE_FX_MISSING``                    MissingInputError      no FX instrument converting a
                                                                  quote currency to the account's
``DATA_PAIR_NO_BARS``                      MissingDataError       a universe pair whose legs have no
                                           (DataQuality)          bars at the timeframe
``DATA_SYMBOL_NO_BARS``                    MissingDataError       a symbol with no bars at the
                                                                  timeframe
``FEATURES_CACHE_MISSING``                 MissingDataError       features never built (or stale)
``DATA_FX_NO_BARS``                        MissingDataError       no fresh bars of the FX instrument
``DATA_ROWS_TOO_FEW``                      MissingDataError       too few labelled rows to train on
``DATA_WINDOW_NO_BARS``                    MissingDataError       no bars in a version's θ search or
                                                                  test window
``DATA_FILE_EMPTY`` / ``_MALFORMED`` /     BadDataError (Fatal,   a file that is empty, not CSV or
``_SCHEMA`` / ``_NOTHING_ACCEPTED``        exit 65)               Parquet, without a needed column,
                                                                  or none of whose rows is accepted
``DATA_FILE_TOO_LARGE``                    BadDataError (exit 65) a file over pipeline_policy
                                                                  ``max_file_bytes`` (a Parquet's
                                                                  data also uncompressed)
``DATA_FILE_LINE_TOO_LONG``                BadDataError (exit 65) a CSV line over 64 KiB (or a
                                                                  quoted cell over 128 KiB), a
                                                                  Parquet text cell over 64 KiB
``DATA_FILE_DATE_AMBIGUOUS``               BadDataError (exit 65) 03/04/2024-style dates and no day
                                                                  above 12 to tell the order; give
                                                                  ``ingest --date-format``
``DATA_FILE_DATE_CONFLICT``                BadDataError (exit 65) rows that only read day first and
                                                                  rows that only read month first
``DATA_SYMBOL_INVALID``                    ConfigError (exit 2)   a symbol not of the universe's
                                                                  shape (``.``, ``..``, empty, a
                                                                  path, control characters, long)
``DATA_SYMBOL_UNKNOWN``                    ConfigError (exit 2)   a symbol not in universe.yaml and
                                                                  no ``--calendar`` (names the
                                                                  ``universe add-instrument``
                                                                  command that adds it)
``DATA_ARCHIVE_HOLDS_DEMO``                ConfigError (exit 2)   ingest into an archive holding the
                                                                  demo's synthetic market
``CONFIG_WORKSPACE_*``                     ConfigError (exit 2)   a workspace refused: ``_REFUSED``
                                                                  (init in a non-empty folder),
                                                                  ``_MISSING``/``_INVALID`` marker,
                                                                  ``_BASE_MISSING`` shipped configs
                                                                  gone, ``_UNKNOWN_KEY``/``_FILE``
                                                                  in its overlay, ``_NONE`` (not in
                                                                  a workspace)
``CONFIG_SYMBOL_INVALID`` /                ConfigError (exit 2)   ``universe add-instrument`` /
``CONFIG_INSTRUMENT_EXISTS`` / ``_UNKNOWN``                       ``add-pair`` refusals, nothing
``CONFIG_CALENDAR_UNKNOWN`` /                                     written (docs/workspace.md)
``CONFIG_ASSET_CLASS_UNKNOWN`` /
``CONFIG_TRADING_RULES_MISSING`` /
``CONFIG_PAIR_INVALID`` / ``_EXISTS``
``DATA_ARCHIVE_UNUSABLE``                  ConfigError (exit 2)   the archive folder (ARCHIVE_PATH)
                                                                  or its ingest lock folder cannot
                                                                  be created or written
``DATA_ARCHIVE_UNUSABLE`` (a root)         ConfigError (exit 2)   a data root (raw_root ...
                                                                  serving_root) that is a file or,
                                                                  outside the archive, cannot be
                                                                  created or written
``CONFIG_GOV_INVALID``                     ConfigError (exit 2)   a governed change refused at
                                                                  validate/pr/merge: a file name,
                                                                  size, encoding, YAML, schema or
                                                                  cross-file problem (each named)
``CONFIG_GOV_DRIFT``                       ConfigError (exit 2)   policy files edited by hand after
                                                                  a governed apply (serve, flows,
                                                                  apply and rollback refuse)
``CONFIG_GOV_ROLE_DENIED`` /               GovernanceError        a role below the verb's, the
``_SELF_APPROVAL`` / ``_ALREADY_APPROVED`` (Fatal, exit 1)        author approving, an approver
``_STATE_INVALID`` / ``_MERGE_CONFLICT`` /                        twice, a transition the state
``_CHANGE_NOT_FOUND`` / ``_SHA_UNKNOWN`` /                        machine refuses, a conflicting
``_NO_ROLLBACK_TARGET`` /                                         merge, an unknown change or SHA,
``_ACTOR_INVALID`` / ``_REASON_MISSING``                          nothing to roll back to, a bad
                                                                  actor or reason
``CONFIG_GOV_AUTH_TOKEN_MISSING`` /        GovernanceError        a command-line verb once API users
``_TOKEN_INVALID`` / ``_TOTP_INVALID``     (Fatal, exit 1)        exist: no token, an unknown or
                                                                  revoked one, a missing or bad TOTP
``CONFIG_GOV_BUSY``                        RetryableError         another governed verb holds the
                                           (exit 75)              repository's lock
``CONFIG_GOV_GIT_MISSING`` /               ConfigError / Fatal    no git installed; a git command
``CONFIG_GOV_GIT_FAILED`` /                                       failed; configs/.git without a
``CONFIG_GOV_REPO_INVALID``                                       main branch
``CONFIG_STORAGE_OVERLAP``                 ConfigError (exit 2)   two data roots (or the SQLite
                                                                  registry.db) are one folder or
                                                                  one is inside another
``CATALOG_PARTITION_UNREADABLE``           DataQualityError       ``catalog build`` left out a
                                           (exit 65)              partition it could not read, one
                                                                  whose ``__meta.json`` names
                                                                  another folder (copied), or a
                                                                  raw month never made canonical
``CATALOG_INDEX_UNREADABLE``               FatalError (exit 1)    the filtered index is no regular
                                                                  file or not a JSON object
``DATA_FILE_UNUSABLE``                     ConfigError (exit 2)   ``--path`` names a FIFO, device,
                                                                  socket, or a name over 255 bytes
``DATA_API_UNAUTHORIZED``                  RefusedError (Fatal,   a data API refused the key (HTTP
                                           exit 69)               401, or 401 in its error body)
``DATA_API_FORBIDDEN``                     RefusedError           a data API forbade the key this
                                                                  request (HTTP 403, or 403 in body)
``DATA_API_REFUSED``                       FatalError (exit 1)    any other refused request (3xx,
                                                                  400, 404, 422 ...): status named
``DATA_API_AUTH_MISSING``                  ConfigError (exit 2)   a provider's key variable not set
``DATA_API_TOO_LARGE`` /                   BadDataError (exit 65) an answer over 64 MiB decoded;
``DATA_API_NOTHING_ACCEPTED``                                     rows of which none is accepted
``DATA_API_RATE_LIMIT`` /                  RetryableError         429; 5xx; 408 or no answer in
``_SERVER_ERROR`` / ``_TIMEOUT`` /         (exit 75)              time; refused connection; body
``_CONNECTION`` / ``_BAD_RESPONSE``                               not complete JSON (all retried)
``DATA_API_CIRCUIT_OPEN``                  RetryableError         the provider's circuit is open
``DATA_PROVIDER_ALL_FAILED``               RetryableError         every provider failed for now (if
                                                                  one for good: its error, 69/1/2)
``MODEL_THETA_MALFORMED``                  ThetaMalformed         a backtest.json whose
                                           (BadData, exit 65)     theta.adopted is not a pair of
                                                                  numbers (or not JSON at all)
``MODEL_THETA_OUT_OF_RANGE``               ThetaOutOfRange        θ (backtest.json, registry row)
                                           (Fatal, exit 1)        not finite or outside
                                                                  core_policy theta_search_range
``MODEL_PARAMS_MISSING``                   ConfigError (exit 2)   a version without decision.json
                                                                  (trained before versions carried
                                                                  their decision parameters):
                                                                  backtest and serving refuse it
``SERVING_PAIR_NOT_IN_VERSION``            ConfigError (exit 2)   serving a pair the version was
                                                                  not trained on
``SERVING_TIMEFRAME_MISMATCH``             ConfigError (exit 2)   serving at a timeframe the
                                                                  version was not trained at
``REGISTRY_PROMOTION_BACKTEST_REJECTED``   ConfigError (exit 2)   promote to approved/deployed a
                                                                  version its backtest rejected,
                                                                  without --override --reason
``SERVING_MODEL_REJECTED``                 FatalError (exit 1)    ``serve --model`` of a rejected
                                                                  version without --force-rejected
``SERVING_SOURCE_UNREACHABLE``             RetryableError         Redis bars do not answer at start
``SERVING_SOURCE_REFUSED``                 ConfigError (exit 2)   Redis refused REDIS_URL's settings
                                                                  (failed login, no such db number,
                                                                  a port that does not speak Redis)
``SERVING_FOLDER_UNUSABLE``                ConfigError            the serving folder is not writable
``SERVING_BARS_FILE_UNUSABLE``             ConfigError (exit 2)   the file bar source's path holds
                                                                  a folder, a FIFO, a device
``SERVING_WORKER_GIVEN_UP``                FatalError             a worker died too often to restart
``API_AUTH_TOKEN_*`` (``_MISSING`` /      ApiError (HTTP 401)    Ops API: no token, not ``Bearer
``_MALFORMED`` / ``_INVALID`` /                                   <token>``, unknown, revoked
``_REVOKED``)                                                     (each audited ``api.denied``)
``API_AUTH_TOTP_*`` (``_MISSING`` /        ApiError (HTTP 401)    an approver-level route without
``_INVALID`` / ``_REPLAYED``)                                     ``X-TOTP``, a wrong or used code
``API_AUTH_ROLE_DENIED`` /                 ApiError (HTTP 403)    the caller's role is below the
``API_AUTH_DUTY_DENIED``                                          route's, or the duty not its
``API_REQUEST_MALFORMED`` / ``_INVALID``   ApiError (400 / 422)   a body that is not JSON; a field
/ ``_TOO_LARGE`` / ``_CONTENT_TYPE`` /     (413 / 415 / 400 /     wrong (named); over 64 KiB; not
``_ID_INVALID`` / ``_TIMEOUT``             408)                   JSON; a bad ``X-Request-ID``; a
                                                                  body not in within 10 s
``API_ROUTE_NOT_FOUND`` /                  ApiError (404 / 405 /  no such route or method; an
``API_METHOD_NOT_ALLOWED`` /               500)                   unexpected error (never a
``API_SERVER_ERROR``                                              traceback in the body)
``API_TLS_REQUIRED`` / ``_INCOMPLETE`` /   ConfigError (exit 2)   ``api serve`` off loopback
``_UNREADABLE``                                                   without TLS; half a pair; no file
``API_USER_REFUSED``                       ConfigError (exit 2)   ``api user add`` of a bad or taken
                                                                  name, a token of no user
``OPS_PAIR_UNKNOWN``                       ApiError (HTTP 404)    a halt/flatten/resume naming a
                                                                  pair not in universe.yaml
``OPS_FLAGS_UNAVAILABLE`` /                ApiError (503 / 409)   the flags store does not answer;
``OPS_FLAGS_UNREADABLE``                                          its document is refused
``OPS_RESUME_*`` (``_SELF_APPROVAL``,      ResumeRefused (HTTP    a resume step breaking a rule of
``_SAME_DUTY``, ``_ALREADY_APPROVED``,     403 / 404 / 409)       the two-person resume
``_EXPIRED``, ``_REQUEST_CHANGED``,                               (docs/api.md)
``_DUTY_MISSING``, ``_NOTHING_HALTED``,
``_NOT_IN_CANARY``, ``_WATCH_PENDING``,
``_CANARY_DRAWDOWN``, ``_HALTED_AGAIN``,
``_NOT_FOUND``)
``SERVING_FLAGS_INVALID``                  FlagsInvalid (Fatal,   the ops flags document is refused
                                           ValueError)            (read_flags, update_flags: never
                                                                  overwritten by a change)
``SERVING_FLAGS_UNREACHABLE``              RetryableError         the ops flags store does not
                                                                  answer (Redis away, file unusable)
``SERVING_FLAGS_CONTENDED``                RetryableError         update_flags lost 100 WATCH races
                                                                  in a row, or the file lock stayed
                                                                  taken for 10 s
``OPS_REQUEST_INVALID``                   OpsError (Fatal)       an ops request without an actor,
                                                                  role or reason
``OPS_ROLLBACK_NO_TARGET``                 OpsError (Fatal)       rollback with nothing deployed, no
                                                                  earlier deployed version or no
                                                                  earlier θ record
``OPS_ROLLBACK_TARGET_MISMATCH``           OpsError (Fatal)       ``to_version`` is not the version
                                                                  a rollback puts back
``OPS_ROLLBACK_TARGET_UNUSABLE``           OpsError (Fatal)       the version to put back fails
                                                                  serving's checks: nothing changed
``OPS_ROLLBACK_THETA_INVALID``             OpsError (Fatal)       a θ ``to`` outside
                                                                  theta_search_range or not numbers
``OPS_ROLLBACK_CONFLICT``                  OpsError (Fatal)       the deployed version changed under
                                                                  the rollback: decide again
=========================================  =====================  ==================================
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

_CODE_RE = re.compile(r"^[A-Z][A-Z0-9]*_[A-Z][A-Z0-9]*_[A-Z][A-Z0-9_]*$")


def shown(value: Any, limit: int = 40) -> str:
    """``value`` for a message: its repr, cut to ``limit`` characters (control characters are
    escaped by repr, so nothing reaches a terminal raw)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


class Severity(StrEnum):
    """How bad an event is, for routing notifications."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class MlcoreError(Exception):
    """Base error: a code, a severity, a message and a structured payload."""

    default_severity = Severity.ERROR
    #: ``str(error)`` is ``"CODE: message"``; False for errors that replaced a plain
    #: ``ValueError``/``RuntimeError``, whose callers format ``str(error)`` into their own line.
    str_with_code: ClassVar[bool] = True

    def __init__(
        self,
        code: str,
        message: str,
        *,
        severity: Severity | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        if not _CODE_RE.match(code):
            raise ValueError(f"error code {code!r} does not follow DOMAIN_CATEGORY_CODE")
        super().__init__(message)
        self.code = code
        self.message = message
        self.severity = severity or self.default_severity
        self.details: dict[str, Any] = dict(details or {})
        self.event_id = uuid.uuid4().hex
        self.occurred_at = datetime.now(UTC)

    def payload(self) -> dict[str, Any]:
        """Return the structured payload the spec requires for every error event."""
        return {
            "code": self.code,
            "severity": str(self.severity),
            "message": self.message,
            "event_id": self.event_id,
            "occurred_at": self.occurred_at.isoformat(),
            "details": self.details,
        }

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.str_with_code else self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process boundaries (Dask workers, Prefect results): rebuild from the
        # code and message, then restore every attribute (severity, details, event id...).
        return (self.__class__, (self.code, self.message), self.__dict__)


class FatalError(MlcoreError):
    """An error a person must fix; retrying will not help."""

    default_severity = Severity.CRITICAL


class ConfigError(FatalError):
    """A policy file or ENV variable is missing, malformed or out of range."""


class BadDataError(FatalError):
    """An input that cannot be used at all (a file that is empty, malformed, without the
    columns it needs, or none of whose rows passes): a person must fix it; the CLI exits 65."""


class RefusedError(FatalError):
    """An external service refused our credentials: a key it does not accept (HTTP 401) or a
    request the key may not make (403). A person must fix the key or its plan; retrying will
    not help. The CLI exits 69 (EX_UNAVAILABLE)."""


class RetryableError(MlcoreError):
    """A transient failure; the operation may succeed when retried."""

    default_severity = Severity.WARNING

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retry_after_s: float | None = None,
        severity: Severity | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(code, message, severity=severity, details=details)
        self.retry_after_s = retry_after_s


class DataQualityError(MlcoreError):
    """Input data break a quality rule; quarantine or reject them and go on."""

    default_severity = Severity.WARNING


class MissingInputError(ConfigError, ValueError):
    """A request names something the workspace does not have: a pair not in universe.yaml, a
    model folder that does not exist. The message names the thing and what to do; retrying
    will not help. Also a ``ValueError``, as these conditions were before they had codes.
    """

    str_with_code = False


class MissingDataError(DataQualityError, ValueError):
    """Data the configuration asks for are not there: a universe pair or symbol without bars
    at the timeframe, features never built. The message names the pair (or symbol), the
    timeframe and what to do (ingest, build, or drop the pair from universe.yaml); a scheduled
    run may retry, as an ingest may still be under way. Also a ``ValueError``, as before.
    """

    str_with_code = False


class ThetaMalformed(BadDataError, ValueError):
    """A record of θ that cannot be read as a pair of numbers (exit 65). Also a ``ValueError``,
    as callers caught before it had a code."""

    str_with_code = False


class ThetaOutOfRange(FatalError, ValueError):
    """θ that is not finite or lies outside core_policy's ``theta_search_range``: never traded
    on (exit 1). Also a ``ValueError``, so a deployed version carrying it is passed over."""

    str_with_code = False
