"""The REST API's request and response bodies (pydantic), built from the service's dataclasses.

Card keys appear in no answer: a new card's come back as check values only
(`CardCreated.key_checks`). Keys a client sends are `SecretStr`, so they stay out of reprs,
logs and validation errors."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from openscws.ota import COUNTER_MAX
from openscws.ras.service import (
    CampaignCard,
    CampaignInfo,
    CardInfo,
    ContentInfo,
    JobInfo,
    Operation,
    SessionLogInfo,
)

__all__ = [
    "AuditOut",
    "CampaignCardOut",
    "CampaignCreate",
    "CampaignDetail",
    "CampaignOut",
    "CancelResult",
    "CardCreate",
    "CardCreated",
    "CardDetail",
    "CardOut",
    "ContentOut",
    "FieldError",
    "Health",
    "JobOut",
    "KeyChecks",
    "LoginIn",
    "Me",
    "OperationOut",
    "Problem",
    "Progress",
    "SessionLogOut",
    "TokenCreate",
    "TokenCreated",
    "TokenOut",
    "campaign_detail",
    "card_created",
    "card_detail",
]

JobStateName = Literal["pending", "triggered", "in_session", "done", "failed"]
CampaignStateName = Literal["active", "cancelled", "finished"]
_HEX: Final = re.compile(r"(?:[0-9A-Fa-f]{2})+")


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class _In(BaseModel):
    # Unknown fields are typos: refuse them rather than silently ignore a setting.
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- errors ----------------------------------------------------------------------------------


class FieldError(_Out):
    loc: str = Field(description="Where: body.iccid, query.limit, ...")
    msg: str


class Problem(_Out):
    """An RFC 9457 problem document (media type application/problem+json)."""

    type: str = "about:blank"
    title: str = Field(description="The HTTP status phrase, e.g. Not Found")
    status: int
    detail: str = Field(description="What went wrong with this request, for people")
    errors: list[FieldError] | None = Field(
        default=None, description="422 only: each field that failed validation"
    )


class Health(_Out):
    status: Literal["ok"] = "ok"
    version: str


# -- cards -----------------------------------------------------------------------------------


class CardCreate(_In):
    """A card to register, with its keys (made by whoever personalises the card; the
    console makes them in the browser). The answer names them by check value only."""

    iccid: str = Field(pattern=r"^[0-9]{19,20}$", examples=["8988211000000000003"])
    msisdn: str | None = Field(default=None, pattern=r"^\+?[0-9]{3,20}$")
    psk_identity: str | None = Field(
        default=None, max_length=128, description='Default "scws-<iccid>"'
    )
    agent_id: str | None = Field(
        default=None, max_length=255, description='Default "//se-id/iccid/<iccid>"'
    )
    psk_key: SecretStr = Field(description="Hex, 16 to 64 bytes")
    ota_tar: str | None = Field(
        default=None, pattern=r"^[0-9A-Fa-f]{6}$", description="3 bytes hex; default 000000"
    )
    kic: int = Field(default=0x12, ge=0, le=0xFF, description="The KIc byte (0x12: v1, AES)")
    kid: int = Field(default=0x12, ge=0, le=0xFF, description="The KID byte (0x12: v1, AES)")
    kic_key: SecretStr = Field(description="Hex, sized for the KIc byte's algorithm")
    kid_key: SecretStr = Field(description="Hex, sized for the KID byte's algorithm")
    ota_counter: int = Field(default=0, ge=0, le=COUNTER_MAX, description="The last CNTR used")

    @field_validator("psk_key", "kic_key", "kid_key")
    @classmethod
    def _hex(cls, value: SecretStr) -> SecretStr:
        # The message names no value: the input is a key.
        if not _HEX.fullmatch(value.get_secret_value()):
            raise ValueError("must be an even number of hex digits")
        return value


class CardOut(_Out):
    iccid: str
    msisdn: str | None
    agent_id: str
    psk_identity: str
    ota_tar: str = Field(description="3 bytes hex")
    ota_kic: int = Field(description="The KIc byte")
    ota_kid: int = Field(description="The KID byte")
    ota_counter: int = Field(description="The last CNTR used")
    created_at: datetime

    @classmethod
    def of(cls, card: CardInfo) -> CardOut:
        return cls(**_card_fields(card))


class KeyChecks(_Out):
    """Check values of the keys just stored (the first 3 bytes of each key's SHA-256, hex):
    compare them with the personalisation's. The keys themselves are never shown."""

    psk_key: str
    kic_key: str
    kid_key: str


class CardCreated(CardOut):
    key_checks: KeyChecks


class OperationOut(_Out):
    op: Literal["put", "delete", "rotate-keys", "acp"]
    path: str
    version: int | None = None

    @classmethod
    def of(cls, op: Operation) -> OperationOut:
        return cls(op=op.op, path=op.path, version=op.version)


class JobOut(_Out):
    id: str
    campaign_id: int | None
    state: JobStateName
    operations: list[OperationOut]
    attempts: int
    max_attempts: int
    next_attempt_at: datetime
    lease_owner: str | None
    lease_until: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, job: JobInfo) -> JobOut:
        return cls(
            id=job.id,
            campaign_id=job.campaign_id,
            state=_job_state(job.state),
            operations=[OperationOut.of(op) for op in job.operations],
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            next_attempt_at=job.next_attempt_at,
            lease_owner=job.lease_owner,
            lease_until=job.lease_until,
            last_error=job.last_error,
            created_at=job.created_at,
            updated_at=job.updated_at,
            finished_at=job.finished_at,
        )


class CardDetail(CardOut):
    jobs: list[JobOut] = Field(description="The card's latest jobs, newest first")


class SessionLogOut(_Out):
    id: int
    iccid: str
    job_id: str | None
    started_at: datetime
    ended_at: datetime | None
    outcome: str
    detail: list[str] = Field(description="One line per event of the session")

    @classmethod
    def of(cls, entry: SessionLogInfo) -> SessionLogOut:
        return cls(
            id=entry.id,
            iccid=entry.iccid,
            job_id=entry.job_id,
            started_at=entry.started_at,
            ended_at=entry.ended_at,
            outcome=entry.outcome,
            detail=list(entry.detail),
        )


# -- content ---------------------------------------------------------------------------------


class ContentOut(_Out):
    path: str
    version: int
    sha256: str
    size: int
    content_type: str
    content_encoding: str | None
    content_language: str | None
    realm: str | None
    deleted: bool = Field(description="A tombstone: campaigns delete the path on cards")
    created_at: datetime

    @classmethod
    def of(cls, info: ContentInfo) -> ContentOut:
        return cls(
            path=info.path,
            version=info.version,
            sha256=info.sha256,
            size=info.size,
            content_type=info.content_type,
            content_encoding=info.content_encoding,
            content_language=info.content_language,
            realm=info.realm,
            deleted=info.deleted,
            created_at=info.created_at,
        )


# -- campaigns -------------------------------------------------------------------------------


class CampaignCreate(_In):
    name: str = Field(min_length=1, max_length=255)
    paths: list[str] | None = Field(
        default=None, description="Repository paths; default: every path, deletions included"
    )
    cards: list[str] | None = Field(default=None, description="ICCIDs; default: every card")
    trigger: Literal["sms", "sip-push"] | None = None
    """How the cards are woken: a formatted SMS or an OMA SIP push (default: the server's)."""
    max_attempts: int | None = Field(default=None, ge=1, le=1000)
    acp: dict[str, Any] | None = Field(
        default=None,
        description='Also set the cards\' SCWS access rules: {"rules": [{"app", "ports", '
        '"paths", "access"}]}; content then goes only for `paths`',
    )


class Progress(_Out):
    """Jobs per state."""

    pending: int = 0
    triggered: int = 0
    in_session: int = 0
    done: int = 0
    failed: int = 0


class CampaignOut(_Out):
    id: int
    name: str
    state: CampaignStateName = Field(description="finished: every job is done or failed")
    operations: list[OperationOut]
    created_at: datetime
    jobs: int
    open_jobs: int
    progress: Progress
    trigger: str | None = Field(
        default=None,
        description='"sms" or "sip-push"; null: the server\'s configured default (admin.trigger)',
    )

    @classmethod
    def of(cls, info: CampaignInfo, progress: dict[str, int]) -> CampaignOut:
        return cls(**_campaign_fields(info, progress))


class CampaignCardOut(_Out):
    iccid: str
    job_id: str
    state: JobStateName
    attempts: int
    max_attempts: int
    last_error: str | None
    updated_at: datetime
    pap_code: int | None = Field(
        default=None,
        description="PAP result code of the job's last SIP push trigger (1000: delivered); "
        "null: no SIP push yet",
    )

    @classmethod
    def of(cls, row: CampaignCard) -> CampaignCardOut:
        return cls(
            iccid=row.iccid,
            job_id=row.job_id,
            state=_job_state(row.state),
            attempts=row.attempts,
            max_attempts=row.max_attempts,
            last_error=row.last_error,
            updated_at=row.updated_at,
            pap_code=row.pap_code,
        )


class CampaignDetail(CampaignOut):
    cards: list[CampaignCardOut] = Field(description="One job per card, by ICCID")


class CancelResult(_Out):
    cancelled: int = Field(description="Jobs failed by the cancel (running sessions finish)")
    campaign: CampaignOut


# -- operators -------------------------------------------------------------------------------

RoleName = Literal["viewer", "operator", "admin"]


class LoginIn(_In):
    name: str = Field(min_length=1, max_length=64)
    password: SecretStr = Field(min_length=1, max_length=1024)


class Me(_Out):
    """Who is logged in. `csrf_token` (console sessions only) goes into the X-CSRF-Token
    header of every POST, PUT and DELETE."""

    user: str
    role: RoleName
    via: Literal["token", "session"]
    token_id: str | None = None
    csrf_token: str | None = None


class TokenCreate(_In):
    name: str = Field(min_length=1, max_length=64, description="What the token is for")
    role: RoleName | None = Field(default=None, description="At most yours (default: yours)")
    expires_in_days: int = Field(default=90, ge=1, le=3650)


class TokenOut(_Out):
    token_id: str
    user: str
    name: str
    role: RoleName
    state: Literal["active", "expired", "revoked"]
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="The bearer token itself: shown this once, stored hashed")


class AuditOut(_Out):
    id: int
    at: datetime
    actor: str = Field(description="user, user/token-id, local:<login> (CLI) or - (nobody)")
    address: str
    action: str
    target: str
    result: str = Field(description="ok, or the refusal's status")
    detail: str


# -- helpers ---------------------------------------------------------------------------------


def _card_fields(card: CardInfo) -> dict[str, Any]:
    return {
        "iccid": card.iccid,
        "msisdn": card.msisdn,
        "agent_id": card.agent_id,
        "psk_identity": card.psk_identity,
        "ota_tar": card.ota_tar,
        "ota_kic": card.ota_kic,
        "ota_kid": card.ota_kid,
        "ota_counter": card.ota_counter,
        "created_at": card.created_at,
    }


def card_created(card: CardInfo, checks: KeyChecks) -> CardCreated:
    return CardCreated(**_card_fields(card), key_checks=checks)


def card_detail(card: CardInfo, jobs: list[JobInfo]) -> CardDetail:
    return CardDetail(**_card_fields(card), jobs=[JobOut.of(j) for j in jobs])


def _campaign_fields(info: CampaignInfo, progress: dict[str, int]) -> dict[str, Any]:
    state: CampaignStateName
    match info.state:
        case "cancelled":
            state = "cancelled"
        case "finished":
            state = "finished"
        case _:
            state = "active"
    return {
        "id": info.id,
        "name": info.name,
        "state": state,
        "operations": [OperationOut.of(op) for op in info.operations],
        "created_at": info.created_at,
        "jobs": info.jobs,
        "open_jobs": info.open_jobs,
        "trigger": info.trigger,
        "progress": Progress(**progress),
    }


def campaign_detail(
    info: CampaignInfo, progress: dict[str, int], cards: list[CampaignCard]
) -> CampaignDetail:
    return CampaignDetail(
        **_campaign_fields(info, progress), cards=[CampaignCardOut.of(c) for c in cards]
    )


def _job_state(state: str) -> JobStateName:
    match state:
        case "pending" | "triggered" | "in_session" | "done" | "failed":
            return state
    raise ValueError(f"unknown job state {state!r}")
