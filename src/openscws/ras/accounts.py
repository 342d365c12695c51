"""Operators of the admin server: accounts with argon2id password hashes, API tokens, console
sessions, and the audit trail of every state change.

Like `RasService` (which carries one `Accounts` as `.accounts`), every method is one database
transaction and returns frozen dataclasses. Secrets are never stored: a password is kept as
its argon2id hash (RFC 9106, through argon2-cffi), an API token and a console session cookie
as the SHA-256 of a value with 256 random bits (a slow hash adds nothing to a secret nobody
chose). A token or a password is shown to its owner once, when it is made.

`LoginThrottle` is the sans-IO part: login failures per account and per address in, "locked
until" out."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from openscws.ras.db import Conflict, NotFound, RasDatabase, RasError
from openscws.ras.models import ApiToken, AuditEntry, ConsoleSession, Role, User

__all__ = [
    "Accounts",
    "AuditInfo",
    "LoginThrottle",
    "Principal",
    "Role",
    "TokenInfo",
    "UserInfo",
    "key_checksum",
]

log = logging.getLogger(__name__)

TOKEN_PREFIX: Final = "oscws_"
_TOKEN: Final = re.compile(r"oscws_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MAX_HASHING: Final = 2
"""Password hashes computed at once: each argon2id run takes 64 MiB, and a flood of logins
must not take the server's memory."""
MIN_PASSWORD: Final = 12
MAX_PASSWORD: Final = 1024
DEFAULT_TOKEN_TTL: Final = timedelta(days=90)
MAX_TOKEN_TTL: Final = timedelta(days=3650)
SESSION_TTL: Final = timedelta(hours=8)
FIRST_ADMIN: Final = "admin"
_LAST_USE_GRANULARITY: Final = timedelta(minutes=1)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def key_checksum(key: bytes) -> str:
    """What the audit trail and the logs may say about a key: the first 3 bytes of its
    SHA-256 (a check value that tells keys apart and reveals nothing useful)."""
    return hashlib.sha256(key).hexdigest()[:6].upper()


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class UserInfo:
    name: str
    role: Role
    created_at: datetime
    password_changed_at: datetime


@dataclass(frozen=True, slots=True)
class TokenInfo:
    token_id: str
    user: str
    name: str
    role: Role
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= now else "active"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who makes a request, and with what role."""

    user: str
    role: Role
    via: str
    """"token" or "session"."""
    token_id: str | None = None
    csrf_token: str | None = None
    """A console session's CSRF token (sessions only)."""

    @property
    def actor(self) -> str:
        return f"{self.user}/{self.token_id}" if self.token_id else self.user


@dataclass(frozen=True, slots=True)
class AuditInfo:
    id: int
    at: datetime
    actor: str
    address: str
    action: str
    target: str
    result: str
    detail: str


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise RasError("a user name has 1 to 64 letters, digits, '.', '_', '@' or '-' (not first)")


def _check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise RasError(f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters")


def _user_info(user: User) -> UserInfo:
    return UserInfo(user.name, Role(user.role), user.created_at, user.password_changed_at)


def _token_info(token: ApiToken, user: str) -> TokenInfo:
    return TokenInfo(
        token_id=token.token_id,
        user=user,
        name=token.name,
        role=Role(token.role),
        created_at=token.created_at,
        expires_at=token.expires_at,
        revoked_at=token.revoked_at,
        last_used_at=token.last_used_at,
    )


def _lower(a: Role, b: Role) -> Role:
    return a if a.rank <= b.rank else b


class Accounts:
    """Users, tokens, sessions and the audit trail in the RAS database."""

    def __init__(
        self,
        db: RasDatabase,
        *,
        clock: Callable[[], datetime] = _utc_now,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._hasher = hasher or PasswordHasher()
        self._hashing = threading.BoundedSemaphore(MAX_HASHING)
        self._dummy: str | None = None

    def _dummy_hash(self) -> str:
        """Verified when the user does not exist, so that a wrong name costs the same time."""
        if self._dummy is None:
            self._dummy = self._hasher.hash(secrets.token_urlsafe(16))
        return self._dummy

    # -- users -------------------------------------------------------------------------------

    def add_user(self, name: str, password: str, role: Role) -> UserInfo:
        _check_name(name)
        _check_password(password)
        now = self._clock()
        user = User(
            name=name,
            password_hash=self._hasher.hash(password),
            role=Role(role).value,
            created_at=now,
            password_changed_at=now,
        )
        try:
            with self._db.write() as s:
                if s.scalar(select(User.id).where(User.name == name)) is not None:
                    raise Conflict(f"user {name} exists")
                s.add(user)
                s.flush()
                info = _user_info(user)
        except IntegrityError:
            raise Conflict(f"user {name} exists") from None
        log.info("user %s added (%s)", name, role)
        return info

    def ensure_first_admin(self) -> str | None:
        """On a database without any user: adds `admin` with a random password and returns
        the password (to be shown once). None when there are users already."""
        with self._db.read() as s:
            if s.scalar(select(func.count()).select_from(User)):
                return None
        password = secrets.token_urlsafe(18)
        try:
            self.add_user(FIRST_ADMIN, password, Role.ADMIN)
        except Conflict:
            return None  # another process made it first
        return password

    def list_users(self) -> list[UserInfo]:
        with self._db.read() as s:
            return [_user_info(u) for u in s.scalars(select(User).order_by(User.name))]

    def user(self, name: str) -> UserInfo | None:
        with self._db.read() as s:
            user = s.scalar(select(User).where(User.name == name))
            return None if user is None else _user_info(user)

    def remove_user(self, name: str) -> bool:
        """Removes the user with their tokens and sessions. The last admin cannot go."""
        with self._db.write() as s:
            user = s.scalar(select(User).where(User.name == name))
            if user is None:
                return False
            if user.role == Role.ADMIN:
                # Locked (PostgreSQL; SQLite's writers queue anyway): two removals at once
                # cannot leave no admin.
                admins = s.scalars(
                    select(User.id).where(User.role == Role.ADMIN.value).with_for_update()
                ).all()
                if len(admins) <= 1:
                    raise RasError(f"{name} is the last admin: add another admin first")
            s.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
            s.execute(delete(ConsoleSession).where(ConsoleSession.user_id == user.id))
            s.delete(user)
        log.info("user %s removed", name)
        return True

    def set_password(self, name: str, password: str) -> None:
        """A new password; the user's console sessions end (tokens stay)."""
        _check_password(password)
        hashed = self._hasher.hash(password)
        with self._db.write() as s:
            user = s.scalar(select(User).where(User.name == name))
            if user is None:
                raise NotFound(f"no user {name}")
            user.password_hash = hashed
            user.password_changed_at = self._clock()
            s.execute(delete(ConsoleSession).where(ConsoleSession.user_id == user.id))
        log.info("user %s: password changed", name)

    def check_password(self, name: str, password: str) -> UserInfo | None:
        """The user when `password` is theirs, else None (a missing user costs the same)."""
        with self._db.read() as s:
            user = s.scalar(select(User).where(User.name == name))
            stored = None if user is None else user.password_hash
            info = None if user is None else _user_info(user)
        try:
            with self._hashing:
                self._hasher.verify(stored or self._dummy_hash(), password[:MAX_PASSWORD])
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if info is None or stored is None:
            return None
        if self._hasher.check_needs_rehash(stored):
            with self._db.write() as s:
                s.execute(
                    update(User)
                    .where(User.name == name, User.password_hash == stored)
                    .values(password_hash=self._hasher.hash(password))
                )
        return info

    # -- API tokens --------------------------------------------------------------------------

    def create_token(
        self,
        user: str,
        name: str,
        role: Role | None = None,
        ttl: timedelta = DEFAULT_TOKEN_TTL,
    ) -> tuple[TokenInfo, str]:
        """A new token of `user` (role: at most theirs, default theirs) valid for `ttl`.
        Returns its info and the token itself, which is never available again."""
        if not 0 < len(name) <= 64 or not name.isprintable():
            raise RasError("a token name has 1 to 64 printable characters")
        if not timedelta(minutes=1) <= ttl <= MAX_TOKEN_TTL:
            raise RasError("a token lives from one minute to ten years")
        token_id = secrets.token_hex(6)
        token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        now = self._clock()
        with self._db.write() as s:
            owner = s.scalar(select(User).where(User.name == user))
            if owner is None:
                raise NotFound(f"no user {user}")
            user_role = Role(owner.role)
            wanted = user_role if role is None else Role(role)
            if not user_role.allows(wanted):
                raise RasError(f"{user} is {user_role}: a token cannot have the {wanted} role")
            row = ApiToken(
                token_id=token_id,
                user_id=owner.id,
                name=name,
                token_sha256=_sha256(token),
                role=wanted.value,
                created_at=now,
                expires_at=now + ttl,
                revoked_at=None,
                last_used_at=None,
            )
            s.add(row)
            s.flush()
            info = _token_info(row, user)
        log.info("token %s of %s created (%s)", token_id, user, info.role)
        return info, token

    def list_tokens(self, user: str | None = None) -> list[TokenInfo]:
        query = select(ApiToken, User.name).join(User, User.id == ApiToken.user_id)
        if user is not None:
            query = query.where(User.name == user)
        with self._db.read() as s:
            rows = s.execute(query.order_by(ApiToken.created_at, ApiToken.id)).all()
            return [_token_info(t, n) for t, n in rows]

    def revoke_token(self, token_id: str, *, user: str | None = None) -> bool:
        """Revokes a token (of `user` only, when given). False if there is no such token;
        revoking a revoked token again changes nothing and is True."""
        with self._db.write() as s:
            query = select(ApiToken).join(User, User.id == ApiToken.user_id)
            query = query.where(ApiToken.token_id == token_id)
            if user is not None:
                query = query.where(User.name == user)
            token = s.scalar(query)
            if token is None:
                return False
            if token.revoked_at is None:
                token.revoked_at = self._clock()
        log.info("token %s revoked", token_id)
        return True

    def authenticate_token(self, token: str) -> Principal | None:
        """The principal of a valid (known, unrevoked, unexpired) token, else None."""
        match = _TOKEN.fullmatch(token)
        if match is None:
            return None
        now = self._clock()
        with self._db.read() as s:
            row = s.execute(
                select(ApiToken, User.name, User.role)
                .join(User, User.id == ApiToken.user_id)
                .where(ApiToken.token_id == match.group(1))
            ).first()
        if row is None:
            return None
        found, user, user_role = row
        if not hmac.compare_digest(found.token_sha256, _sha256(token)):
            return None
        if found.revoked_at is not None or found.expires_at <= now:
            return None
        last = found.last_used_at
        if last is None or now - last >= _LAST_USE_GRANULARITY:
            with self._db.write() as s:
                s.execute(update(ApiToken).where(ApiToken.id == found.id).values(last_used_at=now))
        role = _lower(Role(found.role), Role(user_role))
        return Principal(user, role, "token", token_id=found.token_id)

    # -- console sessions --------------------------------------------------------------------

    def open_session(
        self, user: str, address: str, ttl: timedelta = SESSION_TTL
    ) -> tuple[str, str]:
        """A console session of `user`: returns (cookie value, CSRF token)."""
        cookie = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = self._clock()
        with self._db.write() as s:
            user_id = s.scalar(select(User.id).where(User.name == user))
            if user_id is None:
                raise NotFound(f"no user {user}")
            s.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= now))
            s.add(
                ConsoleSession(
                    id=_sha256(cookie),
                    user_id=user_id,
                    csrf_token=csrf,
                    address=address[:64],
                    created_at=now,
                    expires_at=now + ttl,
                )
            )
        return cookie, csrf

    def session(self, cookie: str) -> Principal | None:
        if not 20 <= len(cookie) <= 128:
            return None
        with self._db.read() as s:
            row = s.execute(
                select(ConsoleSession, User.name, User.role)
                .join(User, User.id == ConsoleSession.user_id)
                .where(ConsoleSession.id == _sha256(cookie))
            ).first()
        if row is None:
            return None
        found, user, role = row
        if found.expires_at <= self._clock():
            return None
        return Principal(user, Role(role), "session", csrf_token=found.csrf_token)

    def close_session(self, cookie: str) -> bool:
        with self._db.write() as s:
            done = s.execute(delete(ConsoleSession).where(ConsoleSession.id == _sha256(cookie)))
            return bool(getattr(done, "rowcount", 0))

    # -- audit trail -------------------------------------------------------------------------

    def audit(
        self,
        actor: str,
        action: str,
        target: str,
        result: str,
        *,
        address: str = "local",
        detail: str = "",
    ) -> None:
        with self._db.write() as s:
            s.add(
                AuditEntry(
                    at=self._clock(),
                    actor=actor[:128],
                    address=address[:64],
                    action=action[:64],
                    target=target[:1024],
                    result=result[:32],
                    detail=detail,
                )
            )

    def audit_log(self, limit: int = 100, *, before: int | None = None) -> list[AuditInfo]:
        """The newest entries first (those with an id below `before`, when given)."""
        query = select(AuditEntry)
        if before is not None:
            query = query.where(AuditEntry.id < before)
        with self._db.read() as s:
            rows = s.scalars(query.order_by(AuditEntry.id.desc()).limit(limit)).all()
            return [
                AuditInfo(r.id, r.at, r.actor, r.address, r.action, r.target, r.result, r.detail)
                for r in rows
            ]


@dataclass
class LoginThrottle:
    """Login failures per account and per address within `window` seconds; at the limit,
    logins are refused until the oldest counted failure ages out. Sans-IO: `now` comes in."""

    per_account: int = 5
    per_address: int = 20
    window: float = 300.0
    _failures: dict[str, list[float]] = field(default_factory=dict, repr=False)

    def _limits(self, account: str, address: str) -> tuple[tuple[str, int], ...]:
        return ((f"user:{account}", self.per_account), (f"addr:{address}", self.per_address))

    max_keys: int = 100_000
    """Accounts and addresses remembered; beyond, the expired ones are dropped at once."""

    def _recent(self, key: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(key, ()) if now - t < self.window]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        return times

    def locked_for(self, account: str, address: str, now: float) -> float:
        """Seconds until a login of `account` from `address` may be tried (0: now)."""
        wait = 0.0
        for key, limit in self._limits(account, address):
            times = self._recent(key, now)
            if len(times) >= limit:
                wait = max(wait, times[-limit] + self.window - now)
        return wait

    def failed(self, account: str, address: str, now: float) -> bool:
        """Records a failure; True when this one locks the account or the address."""
        if len(self._failures) >= self.max_keys:
            for key in list(self._failures):
                self._recent(key, now)
        locked = False
        for key, limit in self._limits(account, address):
            times = [*self._recent(key, now), now][-limit:]
            self._failures[key] = times
            locked = locked or len(times) == limit
        return locked

    def succeeded(self, account: str) -> None:
        self._failures.pop(f"user:{account}", None)
