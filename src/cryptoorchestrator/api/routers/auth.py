"""/auth: register, login, refresh, logout, me, two-factor, API keys."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from cryptoorchestrator.api.deps import (
    ContainerDep,
    LimiterDep,
    MetaDep,
    PageDep,
    PrincipalDep,
    SessionDep,
    current_principal,
)
from cryptoorchestrator.core.errors import InvalidCredentials
from cryptoorchestrator.domain.identity import ApiKey, Scope, User
from cryptoorchestrator.schemas.auth import (
    ApiKeyCreated,
    ApiKeyCreateRequest,
    ApiKeyOut,
    LoginRequest,
    RefreshRequest,
    RegisterRequest,
    TokenResponse,
    TwoFactorCodeRequest,
    TwoFactorDisableRequest,
    TwoFactorSetupRequest,
    TwoFactorSetupResponse,
    TwoFactorStatus,
    UserOut,
)
from cryptoorchestrator.schemas.common import ERROR_RESPONSES, MessageResponse, Page
from cryptoorchestrator.services.auth import TokenPair

router = APIRouter(prefix="/auth", tags=["auth"], responses=ERROR_RESPONSES)


def user_out(user: object) -> UserOut:
    return UserOut.model_validate(user)


_USER_JSON: dict[int, tuple[User, bytes]] = {}


def user_json(user: User) -> bytes:
    """``UserOut`` of a user as JSON, made once per ``User`` object: the session cache hands the
    same (immutable) object to every request of a session, so /me mostly answers stored bytes."""
    cached = _USER_JSON.get(user.id)
    if cached is not None and cached[0] is user:
        return cached[1]
    model = user_out(user)
    body = model.__pydantic_serializer__.to_json(model)
    if len(_USER_JSON) >= 4096:
        _USER_JSON.clear()
    _USER_JSON[user.id] = (user, body)
    return body


def token_response(pair: TokenPair) -> TokenResponse:
    return TokenResponse(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=pair.expires_in,
        user=user_out(pair.user),
    )


def api_key_out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        scopes=sorted(scope.value for scope in key.scopes),
        created_at=key.created_at,
        last_used_at=key.last_used_at,
        expires_at=key.expires_at,
    )


@router.post("/register", status_code=status.HTTP_201_CREATED, response_model=TokenResponse)
async def register(
    body: RegisterRequest, container: ContainerDep, limiter: LimiterDep, meta: MetaDep
) -> TokenResponse:
    """Create an account and log it in. Limited per IP and per email address."""
    await limiter.check_account(f"register:{body.email}")
    await limiter.count_account_attempt(f"register:{body.email}")
    pair = await container.auth.register(
        email=body.email,
        password=body.password,
        username=body.username,
        first_name=body.first_name,
        last_name=body.last_name,
        meta=meta,
    )
    return token_response(pair)


@router.post("/login", response_model=TokenResponse)
async def login(
    body: LoginRequest, container: ContainerDep, limiter: LimiterDep, meta: MetaDep
) -> TokenResponse:
    """Log in by username or email (and `totp_code` when 2FA is on). Failed attempts are limited
    per IP and per account."""
    account_key = f"login:{body.login}"
    await limiter.check_account(account_key)
    try:
        pair = await container.auth.login(
            login=body.login, password=body.password, totp_code=body.totp_code, meta=meta
        )
    except InvalidCredentials:
        await limiter.count_account_attempt(account_key)
        raise
    return token_response(pair)


@router.post("/refresh", response_model=TokenResponse)
async def refresh(body: RefreshRequest, container: ContainerDep, meta: MetaDep) -> TokenResponse:
    """Exchange a refresh token for a new pair. Each refresh token works once; presenting a used
    one revokes the whole session."""
    return token_response(await container.auth.refresh(refresh_token=body.refresh_token, meta=meta))


@router.post("/logout", response_model=MessageResponse)
async def logout(principal: PrincipalDep, container: ContainerDep, meta: MetaDep) -> MessageResponse:
    """End this session: its access and refresh tokens stop working."""
    await container.auth.logout(principal, meta=meta)
    return MessageResponse(message="Logged out.")


@router.get("/me", response_model=UserOut)
async def me(request: Request) -> Response:
    """The authenticated user."""
    # ``current_principal`` called, not declared: the same check without a dependency to solve.
    principal = await current_principal(request)
    return Response(user_json(principal.user), media_type="application/json")


@router.post("/2fa/setup", response_model=TwoFactorSetupResponse)
async def two_factor_setup(
    body: TwoFactorSetupRequest, principal: SessionDep, container: ContainerDep, meta: MetaDep
) -> TwoFactorSetupResponse:
    """Start TOTP setup: returns the secret and an otpauth:// URI for an authenticator app."""
    setup = await container.two_factor.setup(principal.user, password=body.password, meta=meta)
    return TwoFactorSetupResponse(secret=setup.secret, otpauth_uri=setup.otpauth_uri)


@router.post("/2fa/enable", response_model=TwoFactorStatus)
async def two_factor_enable(
    body: TwoFactorCodeRequest, principal: SessionDep, container: ContainerDep, meta: MetaDep
) -> TwoFactorStatus:
    await container.two_factor.enable(principal.user, code=body.code, meta=meta)
    return TwoFactorStatus(enabled=True)


@router.post("/2fa/disable", response_model=TwoFactorStatus)
async def two_factor_disable(
    body: TwoFactorDisableRequest, principal: SessionDep, container: ContainerDep, meta: MetaDep
) -> TwoFactorStatus:
    await container.two_factor.disable(principal.user, code=body.code, password=body.password, meta=meta)
    return TwoFactorStatus(enabled=False)


@router.get("/api-keys", response_model=Page[ApiKeyOut])
async def list_api_keys(principal: SessionDep, container: ContainerDep, page: PageDep) -> Page[ApiKeyOut]:
    keys, total = await container.api_keys.list(principal.user, limit=page.limit, offset=page.offset)
    return Page(items=[api_key_out(key) for key in keys], total=total, limit=page.limit, offset=page.offset)


@router.post("/api-keys", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated)
async def create_api_key(
    body: ApiKeyCreateRequest, principal: SessionDep, container: ContainerDep, meta: MetaDep
) -> ApiKeyCreated:
    """Create an API key with scopes `read` and/or `trade`. The key is in this response only."""
    created = await container.api_keys.create(
        principal.user,
        name=body.name,
        scopes=frozenset(Scope(scope) for scope in body.scopes),
        expires_at=body.expires_at,
        meta=meta,
    )
    return ApiKeyCreated(**api_key_out(created.key).model_dump(), key=created.secret)


@router.get("/api-keys/{key_id}", response_model=ApiKeyOut)
async def get_api_key(key_id: int, principal: SessionDep, container: ContainerDep) -> ApiKeyOut:
    return api_key_out(await container.api_keys.get(principal.user, key_id))


@router.delete("/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_api_key(
    key_id: int, principal: SessionDep, container: ContainerDep, meta: MetaDep
) -> Response:
    await container.api_keys.revoke(principal.user, key_id, meta=meta)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
