"""Request dependencies: the container, the authenticated principal, roles, scopes, pagination."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import structlog
from fastapi import Depends, Query, Request, Response
from pydantic import BaseModel

from cryptoorchestrator.api.ratelimit import RateLimiter, client_ip
from cryptoorchestrator.bootstrap import Container
from cryptoorchestrator.core.errors import AdminRequired, AuthenticationFailed, PermissionDenied
from cryptoorchestrator.domain.identity import Principal, RequestMeta, Scope

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


# Dependencies are ``async def`` on purpose: FastAPI runs plain ``def`` ones in a thread pool.
async def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


async def get_limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.limiter
    return limiter


async def request_meta(request: Request) -> RequestMeta:
    trusted = set(request.app.state.container.settings.trusted_proxies)
    return RequestMeta(
        ip=client_ip(request.scope, trusted),
        user_agent=request.headers.get("user-agent"),
        request_id=getattr(request.state, "request_id", None),
    )


async def current_principal(request: Request) -> Principal:
    """The caller: a Bearer access token or an ``X-API-Key``. API keys act within their scopes:
    ``read`` for GET, ``trade`` for anything that changes state.

    Bearer tokens were checked once by the request-context middleware (``api/middleware.py``),
    which left the principal (or the failure) in ``scope["state"]``; this reads it. API keys (a
    database lookup) are checked here, only on routes that need a caller. Headers are read
    directly; the OpenAPI security schemes are declared in ``api/app.py``."""
    state = request.scope.get("state")
    if state is not None:
        principal: Principal | None = state.get("principal")
        if principal is not None:
            return principal
        error: Exception | None = state.get("auth_error")
        if error is not None:
            raise error
    return await _authenticate(request)


async def _authenticate(request: Request) -> Principal:
    """The headers, checked here: API keys, and Bearer tokens when no middleware checked them."""
    container: Container = request.app.state.container
    authorization = request.headers.get("authorization")
    api_key = request.headers.get("x-api-key")
    if authorization and authorization[:7].lower() == "bearer " and authorization[7:].strip():
        principal = await container.auth.authenticate_token(authorization[7:].strip())
    elif api_key:
        principal = await container.auth.authenticate_api_key(api_key)
        needed = Scope.READ if request.method in _READ_METHODS else Scope.TRADE
        if needed not in principal.scopes:
            raise PermissionDenied(
                f"This API key lacks the '{needed.value}' scope.", details={"required_scope": needed.value}
            )
    else:
        raise AuthenticationFailed("Authentication is required: send a Bearer token or an X-API-Key.")
    state = request.scope.setdefault("state", {})
    state["principal"] = principal
    state["user_id"] = principal.user.id
    structlog.contextvars.bind_contextvars(user_id=principal.user.id)
    return principal


async def session_principal(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    """Account security (API keys, 2FA, password) needs a logged-in session, never an API key."""
    if principal.via_api_key:
        raise PermissionDenied("This action needs a login session; API keys cannot do it.")
    return principal


async def admin_principal(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if not principal.user.is_admin:
        raise AdminRequired()
    return principal


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    """Serialise a response model once, straight to bytes. Hot routes return this so FastAPI does
    not validate the model a second time against ``response_model`` (which stays for the docs)."""
    return Response(model.__pydantic_serializer__.to_json(model), status_code, media_type="application/json")


@dataclass(frozen=True, slots=True)
class Pagination:
    limit: int
    offset: int


async def pagination(
    limit: Annotated[int, Query(ge=1, le=500, description="Page size (default 50, at most 500).")] = 50,
    offset: Annotated[int, Query(ge=0, description="Items to skip.")] = 0,
) -> Pagination:
    return Pagination(limit=limit, offset=offset)


ContainerDep = Annotated[Container, Depends(get_container)]
PrincipalDep = Annotated[Principal, Depends(current_principal)]
SessionDep = Annotated[Principal, Depends(session_principal)]
AdminDep = Annotated[Principal, Depends(admin_principal)]
MetaDep = Annotated[RequestMeta, Depends(request_meta)]
PageDep = Annotated[Pagination, Depends(pagination)]
LimiterDep = Annotated[RateLimiter, Depends(get_limiter)]
