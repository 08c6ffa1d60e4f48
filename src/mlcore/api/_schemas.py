"""Every request and response body of the API (pydantic, strict, unknown keys refused)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

#: One line of printable text: a reason is written into the audit trail as it is.
Reason = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=2000, pattern=r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$"
    ),
    Field(description="why, one line of printable text (at most 2,000 characters)"),
]
PairId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{1,32}$")]
Pairs = Annotated[
    list[PairId] | None,
    Field(min_length=1, max_length=500, description="universe pair ids; null: the whole book"),
]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class Body(BaseModel):
    """Base of every body: strict, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class ErrorOut(Body):
    """Every refusal: the code, what is wrong, and the field at fault (null if none)."""

    code: str
    message: str
    field: str | None


class HealthOut(Body):
    """The server answers."""

    status: Literal["ok"]
    version: str


class FlagsOut(Body):
    """The ops flags document in force."""

    flags: dict[str, Any]


class HaltIn(Body):
    """Halt new entries (soft) or every signal (hard), of named pairs or the whole book."""

    level: Literal["soft", "hard"]
    pairs: Pairs = None
    reason: Reason


class FlattenIn(Body):
    """Latch a flatten: the pairs go reduce-only, their exits are signalled, then they stay
    halted until a resume."""

    pairs: Pairs = None
    reason: Reason


class ResumeIn(Body):
    """Ask to lift the halts and latches of named pairs (or of every halted pair)."""

    pairs: Pairs = None
    reason: Reason


class ApproveIn(Body):
    """Approve a resume request: ``request_sha256`` is the hash of the exact request seen."""

    request_sha256: Sha256
    reason: Reason


class AdvanceIn(Body):
    """Resume the rest after the canary (``early``: before the KPI watch ends, as a second
    approved step by a person other than the requester and the approver)."""

    reason: Reason
    early: bool = False


VersionName = Annotated[str, StringConstraints(pattern=r"^\d{8}_\d{4}_[A-Za-z0-9]+(_\d+)?$")]
Rate = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class ModelRollbackIn(Body):
    """Put back the model version deployed before the one in service (``to``: that version,
    named to make sure)."""

    kind: Literal["model"]
    to: VersionName | None = None
    reason: Reason


class ThetaRollbackIn(Body):
    """θ of the deployed version back to its previous θ record, or to ``to`` (θ1, θ2) inside
    core_policy's theta_search_range."""

    kind: Literal["theta"]
    to: Annotated[list[Rate], Field(min_length=2, max_length=2)] | None = None
    reason: Reason


class ConfigVersionRollbackIn(Body):
    """The config version back to the one applied before (or ``to``, a git SHA applied
    before): a revert commit, put in force, recorded as CONFIG_ROLLBACK."""

    kind: Literal["config"]
    to: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{7,64}$")] | None = None
    reason: Reason


RollbackIn = Annotated[
    ModelRollbackIn | ThetaRollbackIn | ConfigVersionRollbackIn, Field(discriminator="kind")
]


class OpsOut(Body):
    """What an /ops action did: the flags before and after, and its audit row."""

    action: str
    request_id: str
    audit_id: int
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class ResumeOut(Body):
    """A resume request and where it stands."""

    request_id: str
    request_sha256: str
    status: Literal["requested", "canary", "done", "expired"]
    requester: str
    expires_at: datetime
    pairs: list[str]
    canary_pairs: list[str]
    rest_pairs: list[str]
    approver: str | None
    watch_until: datetime | None
    audit_id: int


PolicyFile = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}\.yaml$")]
ChangeId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
GitSha = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{7,64}$")]


class ConfigFilesIn(Body):
    """Proposed policy files: file name -> its whole YAML text."""

    files: Annotated[
        dict[PolicyFile, str],
        # No key but a policy file name: said in the document too (patternProperties alone
        # lets any other key through).
        Field(min_length=1, max_length=20, json_schema_extra={"additionalProperties": False}),
    ]


class ConfigPrIn(ConfigFilesIn):
    """Propose a change of policy files, with why."""

    reason: Reason


class ChangeIdIn(Body):
    """A change, by the id its pr gave, and why."""

    change_id: ChangeId
    reason: Reason


class ConfigApplyIn(Body):
    """Put in force a merged change (``change_id``) or a commit of main (``sha``)."""

    change_id: ChangeId | None = None
    sha: GitSha | None = None
    reason: Reason


class ConfigRollbackIn(Body):
    """Back to the previously applied version (or ``to``, a SHA applied before)."""

    to: GitSha | None = None
    reason: Reason


class ConfigOut(Body):
    """What a /configs call did: the governance part's record, and the audit row."""

    action: str
    request_id: str
    audit_id: int
    result: dict[str, Any]


class AuditVerifyOut(Body):
    """The audit chains checked: rows per table, each head, each broken row."""

    intact: bool
    rows: dict[str, int]
    heads: dict[str, dict[str, Any]]
    heads_missing: list[str]
    breaks: list[dict[str, Any]]


class AuditAtOut(Body):
    """What was in force at ``at``, and who changed each last (null: nothing recorded)."""

    at: datetime
    model_version: str | None
    model_changed: dict[str, Any] | None
    theta: list[float] | None
    theta_changed: dict[str, Any] | None
    config: dict[str, Any] | None
    config_changed: dict[str, Any] | None
    flags: dict[str, Any] | None
    flags_changed: dict[str, Any] | None
