"""Accounts and authentication: register, login, token rotation, logout, API-key and token checks."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from email_validator import EmailNotValidError, validate_email

from cryptoorchestrator.core.clock import Clock
from cryptoorchestrator.core.errors import (
    AuthenticationFailed,
    Conflict,
    InvalidCredentials,
    PermissionDenied,
    TwoFactorRequired,
    ValidationFailed,
)
from cryptoorchestrator.core.ids import new_uuid
from cryptoorchestrator.domain.identity import (
    AuditEventType,
    Principal,
    RequestMeta,
    Role,
    User,
)
from cryptoorchestrator.security import apikeys, passwords, totp
from cryptoorchestrator.security.encryption import SecretBox
from cryptoorchestrator.security.passwords import PasswordHasher
from cryptoorchestrator.security.tokens import TokenService
from cryptoorchestrator.services import audit
from cryptoorchestrator.services.ports import UnitOfWork, UnitOfWorkFactory

USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,31}$")
API_KEY_TOUCH_INTERVAL = timedelta(minutes=1)


def field_error(field: str, message: str, kind: str = "value_error") -> ValidationFailed:
    """A 422 in the same shape as request validation errors."""
    return ValidationFailed(
        message, details={"errors": [{"loc": ["body", field], "msg": message, "type": kind}]}
    )


def normalise_email(email: str) -> str:
    try:
        return validate_email(email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise field_error("email", f"Invalid email address: {exc}") from exc


def check_username(username: str) -> str:
    username = username.strip()
    if not USERNAME_PATTERN.fullmatch(username):
        raise field_error(
            "username",
            "Username must be 3-32 characters (letters, digits, '_', '.', '-'), "
            "starting with a letter or digit.",
        )
    return username


class SessionCache:
    """Live sessions recently checked against the database, so an authenticated request does not
    pay a database round trip each time.

    Every revocation or user change in this process clears it at once; another API process
    sees a revocation within ``ttl_seconds`` (default 5 s) — far tighter than trusting a JWT
    for its whole 30-minute life, as most platforms do.
    """

    def __init__(self, clock: Clock, *, ttl_seconds: float = 5.0, max_entries: int = 10_000) -> None:
        self._clock = clock
        self._ttl = ttl_seconds
        self._max = max_entries
        # (session id, user id) -> (deadline, the session's principal)
        self._entries: dict[tuple[str, int], tuple[float, Principal]] = {}
        # Bumped by every invalidation: a lookup that raced one is not cached (see ``put``).
        self.generation = 0

    def principal(self, session_id: str, user_id: int) -> Principal | None:
        """The session's principal when it was checked less than ``ttl_seconds`` ago."""
        if self._ttl <= 0:
            return None
        entry = self._entries.get((session_id, user_id))
        if entry is None:
            return None
        if entry[0] <= self._clock.monotonic():
            self._entries.pop((session_id, user_id), None)
            return None
        return entry[1]

    def get(self, session_id: str, user_id: int) -> User | None:
        principal = self.principal(session_id, user_id)
        return None if principal is None else principal.user

    def put(self, session_id: str, user: User, *, generation: int | None = None) -> Principal:
        """Remember a session checked just now. ``generation``: the value read before the check;
        when a revocation came in meanwhile, the answer may be stale and is not kept."""
        principal = Principal(user=user, session_id=session_id)
        if self._ttl <= 0 or (generation is not None and generation != self.generation):
            return principal
        if len(self._entries) >= self._max:
            self._entries.pop(next(iter(self._entries)))
        self._entries[(session_id, user.id)] = (self._clock.monotonic() + self._ttl, principal)
        return principal

    def invalidate_all(self) -> None:
        self.generation += 1
        self._entries.clear()


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    user: User


class AuthService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        *,
        hasher: PasswordHasher,
        tokens: TokenService,
        secret_box: SecretBox,
        clock: Clock,
        session_cache: SessionCache | None = None,
    ) -> None:
        self._uow = uow_factory
        self._hasher = hasher
        self._tokens = tokens
        self._box = secret_box
        self._clock = clock
        self.session_cache = session_cache or SessionCache(clock, ttl_seconds=0)
        # Session checks in flight, by (session id, user id, cache generation): see _session_user.
        self._lookups: dict[tuple[str, int, int], asyncio.Future[User | None]] = {}

    # --- registration -------------------------------------------------------------------

    async def register(
        self,
        *,
        email: str,
        password: str,
        username: str | None,
        first_name: str | None = None,
        last_name: str | None = None,
        role: Role = Role.USER,
        meta: RequestMeta,
    ) -> TokenPair:
        email = normalise_email(email)
        async with self._uow() as uow:
            if username is None:
                username = await self._derive_username(uow, email)
            username = check_username(username)
            problems = passwords.password_problems(password, username=username, email=email)
            if problems:
                raise field_error("password", " ".join(problems))
            if await uow.users.exists(username=username):
                raise Conflict("This username is taken.", details={"field": "username"})
            if await uow.users.exists(email=email):
                raise Conflict("An account with this email exists.", details={"field": "email"})
            now = self._clock.now()
            user = await uow.users.add(
                username=username,
                email=email,
                password_hash=self._hasher.hash(password),
                role=role,
                first_name=first_name,
                last_name=last_name,
                now=now,
            )
            await audit.record(uow, AuditEventType.REGISTER, now=now, meta=meta, actor_user_id=user.id)
            pair = await self._open_session(uow, user, now=now, meta=meta)
            await uow.commit()
            return pair

    async def _derive_username(self, uow: UnitOfWork, email: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_.-]", "", email.split("@", 1)[0])[:24] or "user"
        if len(base) < 3:
            base = f"{base}_user"
        if not base[0].isalnum():
            base = f"u{base}"[:24]
        candidate, n = base, 1
        while await uow.users.exists(username=candidate):
            n += 1
            candidate = f"{base}{n}"
        return candidate

    # --- login and sessions --------------------------------------------------------------

    async def login(
        self, *, login: str, password: str, totp_code: str | None, meta: RequestMeta
    ) -> TokenPair:
        async with self._uow() as uow:
            now = self._clock.now()
            creds = await uow.users.find_credentials_by_login(login)
            ok = self._hasher.verify(password, creds.password_hash if creds else None)
            if creds is None or not ok:
                await audit.record(
                    uow,
                    AuditEventType.LOGIN_FAILURE,
                    now=now,
                    meta=meta,
                    success=False,
                    actor_user_id=creds.user.id if creds else None,
                    reason="bad_password" if creds else "unknown_user",
                )
                await uow.commit()
                raise InvalidCredentials()
            user = creds.user
            if not user.is_active:
                await audit.record(
                    uow, AuditEventType.LOGIN_FAILURE, now=now, meta=meta, success=False,
                    actor_user_id=user.id, reason="disabled",
                )  # fmt: skip
                await uow.commit()
                raise PermissionDenied("This account is disabled.", code="ACCOUNT_DISABLED")
            if user.totp_enabled:
                await self._check_second_factor(uow, creds.totp_secret_encrypted, totp_code, user, now, meta)
            if self._hasher.needs_rehash(creds.password_hash):
                await uow.users.update(user.id, now=now, password_hash=self._hasher.hash(password))
            user = await uow.users.update(user.id, now=now, last_login_at=now)
            await audit.record(uow, AuditEventType.LOGIN_SUCCESS, now=now, meta=meta, actor_user_id=user.id)
            pair = await self._open_session(uow, user, now=now, meta=meta)
            await uow.commit()
            return pair

    async def _check_second_factor(
        self,
        uow: UnitOfWork,
        encrypted: str | None,
        code: str | None,
        user: User,
        now: datetime,
        meta: RequestMeta,
    ) -> None:
        if not code:
            raise TwoFactorRequired()
        if encrypted is None or not totp.verify(self._box.decrypt(encrypted), code, at=now):
            await audit.record(
                uow, AuditEventType.LOGIN_FAILURE, now=now, meta=meta, success=False,
                actor_user_id=user.id, reason="bad_totp",
            )  # fmt: skip
            await uow.commit()
            raise InvalidCredentials("The two-factor code is wrong.", code="INVALID_TOTP_CODE")

    async def _open_session(
        self, uow: UnitOfWork, user: User, *, now: datetime, meta: RequestMeta
    ) -> TokenPair:
        session_id = new_uuid()
        await uow.sessions.add_session(
            session_id=session_id,
            user_id=user.id,
            now=now,
            expires_at=now + self._tokens.refresh_ttl,
            meta_ip=meta.ip,
        )
        return await self._issue_pair(uow, user, session_id, now)

    async def _issue_pair(self, uow: UnitOfWork, user: User, session_id: str, now: datetime) -> TokenPair:
        access = self._tokens.issue(user_id=user.id, session_id=session_id, token_type="access", now=now)
        refresh = self._tokens.issue(user_id=user.id, session_id=session_id, token_type="refresh", now=now)
        await uow.sessions.add_refresh_token(
            token_id=refresh.claims.token_id,
            session_id=session_id,
            user_id=user.id,
            expires_at=refresh.claims.expires_at,
        )
        return TokenPair(
            access_token=access.token,
            refresh_token=refresh.token,
            expires_in=int(self._tokens.access_ttl.total_seconds()),
            user=user,
        )

    async def refresh(self, *, refresh_token: str, meta: RequestMeta) -> TokenPair:
        """Rotate a refresh token. Presenting a used one revokes its whole family (theft signal)."""
        now = self._clock.now()
        claims = self._tokens.decode(refresh_token, expected_type="refresh", now=now)
        async with self._uow() as uow:
            record = await uow.sessions.get_refresh_token(claims.token_id)
            session = await uow.sessions.get_session(claims.session_id)
            if record is None or session is None or record.session_id != session.id:
                raise AuthenticationFailed("The refresh token is not valid.")
            if session.is_revoked:
                raise AuthenticationFailed("This session has ended; log in again.", code="SESSION_REVOKED")
            if not await uow.sessions.mark_refresh_token_used(claims.token_id, now=now):
                await uow.sessions.revoke_session(session.id, now=now, reason="refresh_token_reuse")
                self.session_cache.invalidate_all()
                await audit.record(
                    uow, AuditEventType.REFRESH_REUSE, now=now, meta=meta, success=False,
                    actor_user_id=record.user_id, session_id=session.id,
                )  # fmt: skip
                await uow.commit()
                raise AuthenticationFailed(
                    "This refresh token was already used; the session has been revoked. Log in again.",
                    code="TOKEN_REUSED",
                )
            user = await uow.users.get(record.user_id)
            if user is None or not user.is_active:
                raise AuthenticationFailed("The account is not active.")
            pair = await self._issue_pair(uow, user, session.id, now)
            await uow.commit()
            return pair

    async def logout(self, principal: Principal, *, meta: RequestMeta) -> None:
        if principal.session_id is None:
            raise PermissionDenied("API keys have no session to log out of; revoke the key instead.")
        async with self._uow() as uow:
            now = self._clock.now()
            await uow.sessions.revoke_session(principal.session_id, now=now, reason="logout")
            await audit.record(
                uow, AuditEventType.LOGOUT, now=now, meta=meta, actor_user_id=principal.user.id
            )
            await uow.commit()
        self.session_cache.invalidate_all()

    # --- request authentication ----------------------------------------------------------

    async def authenticate_token(self, token: str) -> Principal:
        claims = self._tokens.decode(token, expected_type="access", now=self._clock.now())
        principal = self.session_cache.principal(claims.session_id, claims.user_id)
        if principal is not None and principal.user.is_active:
            return principal
        generation = self.session_cache.generation
        user = await self._session_user(claims.session_id, claims.user_id, generation)
        if user is None:
            raise AuthenticationFailed("This session has ended; log in again.", code="SESSION_REVOKED")
        if not user.is_active:
            raise AuthenticationFailed("The account is disabled.", code="ACCOUNT_DISABLED")
        return self.session_cache.put(claims.session_id, user, generation=generation)

    async def _session_user(self, session_id: str, user_id: int, generation: int) -> User | None:
        """The session's user if the session is live, from the database - one query for all the
        requests of a session that miss the cache together (they do, each time its entry expires:
        a client with 16 requests in flight used to send 16 queries and wait for all of them).

        Only a check that started after the latest revocation in this process is shared (the
        generation is in the key), and it runs as a task of its own, so a caller that goes away
        (a client disconnecting) does not cancel it for the others."""
        key = (session_id, user_id, generation)
        pending = self._lookups.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._load_session_user(session_id, user_id))
            self._lookups[key] = pending
            pending.add_done_callback(lambda _: self._lookups.pop(key, None))
        return await asyncio.shield(pending)

    async def _load_session_user(self, session_id: str, user_id: int) -> User | None:
        async with self._uow() as uow:
            return await uow.sessions.get_active_session_user(session_id, user_id)

    async def authenticate_api_key(self, key: str) -> Principal:
        prefix = apikeys.parse_prefix(key)
        if prefix is None:
            raise AuthenticationFailed("The API key is invalid.")
        now = self._clock.now()
        async with self._uow() as uow:
            found = await uow.api_keys.find_by_prefix(prefix)
            if found is None or not apikeys.digest_matches(key, found.digest):
                raise AuthenticationFailed("The API key is invalid.")
            record = found.key
            if record.revoked_at is not None:
                raise AuthenticationFailed("The API key has been revoked.")
            if record.expires_at is not None and record.expires_at <= now:
                raise AuthenticationFailed("The API key has expired.", code="TOKEN_EXPIRED")
            user = await uow.users.get(record.user_id)
            if user is None or not user.is_active:
                raise AuthenticationFailed("The account is disabled.", code="ACCOUNT_DISABLED")
            if record.last_used_at is None or now - record.last_used_at >= API_KEY_TOUCH_INTERVAL:
                await uow.api_keys.touch(record.id, now=now)
                await uow.commit()
        return Principal(user=user, api_key_id=record.id, scopes=record.scopes)
