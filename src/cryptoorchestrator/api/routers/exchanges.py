"""/exchanges: the exchanges an account can be connected to, their status, and the user's
exchange accounts (credentials go in encrypted at rest and never come out)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

from cryptoorchestrator.api.deps import ContainerDep, PageDep, PrincipalDep, json_response
from cryptoorchestrator.core.errors import ExchangeNotSupported, NotFound
from cryptoorchestrator.schemas.common import ERROR_RESPONSES
from cryptoorchestrator.schemas.exchanges import (
    AccountWarningOut,
    ExchangeAccountCreate,
    ExchangeAccountOut,
    ExchangeAccountsPage,
    ExchangeOut,
    ExchangesPage,
    ExchangeStatusOut,
)
from cryptoorchestrator.services.exchange_accounts import (
    ConnectRequest,
    Credentials,
    ExchangeAccountView,
    ExchangeStatus,
)

router = APIRouter(prefix="/exchanges", tags=["exchanges"], responses=ERROR_RESPONSES)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Repeat the request with the same key to get the same account, never a second one.",
    ),
]


def account_out(view: ExchangeAccountView) -> ExchangeAccountOut:
    account = view.account
    return ExchangeAccountOut(
        id=account.id,
        account_id=account.id,
        name=account.name,
        kind=account.kind,
        mode="paper" if account.kind == "paper" else "live",
        exchange=account.exchange,
        testnet=account.testnet,
        status="active" if account.active else "disabled",
        verified=view.verified,
        verified_at=view.verified_at,
        can_withdraw=account.can_withdraw,
        key_hint=view.key_hint,
        has_passphrase=view.has_passphrase,
        balances_synced_at=view.balances_synced_at,
        warnings=[AccountWarningOut(code=w.code, message=w.message) for w in view.warnings],
        created_at=account.created_at,
        updated_at=account.updated_at,
    )


def status_out(result: ExchangeStatus) -> ExchangeStatusOut:
    error = None
    if result.error_code is not None:
        error = {"code": result.error_code, "message": result.error_message or ""}
    return ExchangeStatusOut(
        exchange=result.exchange,
        reachable=result.reachable,
        status=result.status,
        latency_ms=result.latency_ms,
        server_time=result.server_time,
        markets=result.markets,
        checked_at=result.checked_at,
        error=error,
    )


@router.get("", response_model=ExchangesPage)
async def list_exchanges(
    principal: PrincipalDep,
    container: ContainerDep,
    connected: Annotated[
        bool | None, Query(description="Only those you have (or lack) an account on.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Page size (default 500: all of them).")] = 500,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> object:
    """Supported exchanges (ccxt's list, `paper` first), each with `connected` and your account ids."""
    entries = await container.exchange_accounts.exchanges(principal.user.id)
    if connected is not None:
        entries = [entry for entry in entries if entry.connected is connected]
    chosen = entries[offset : offset + limit]
    items = [
        ExchangeOut(id=e.id, name=e.id, kind=e.kind, connected=e.connected, account_ids=list(e.account_ids))
        for e in chosen
    ]
    return json_response(ExchangesPage(items=items, total=len(entries), limit=limit, offset=offset))


@router.get("/accounts", response_model=ExchangeAccountsPage)
async def list_accounts(principal: PrincipalDep, container: ContainerDep, page: PageDep) -> object:
    """Your trading accounts: the paper account first, then exchange accounts. No credentials."""
    views = await container.exchange_accounts.list(principal.user.id)
    chosen = views[page.offset : page.offset + page.limit]
    return json_response(
        ExchangeAccountsPage(
            items=[account_out(v) for v in chosen], total=len(views), limit=page.limit, offset=page.offset
        )
    )


@router.post("/accounts", status_code=status.HTTP_201_CREATED, response_model=ExchangeAccountOut)
async def connect_account(
    body: ExchangeAccountCreate,
    principal: PrincipalDep,
    container: ContainerDep,
    idempotency_key: IdempotencyKey = None,
) -> object:
    """Connect an exchange account. The credentials are checked against the exchange first:
    refused, 400 `EXCHANGE_AUTH_FAILED` and nothing is stored; exchange unreachable, stored with
    `verified: false` and a warning. They are stored encrypted and never returned. `warnings`
    says when the key can withdraw funds (use a trade-only key). A repeated `Idempotency-Key`
    answers the same account; with another body, 409 `CONFLICT`; a taken name, 409 `CONFLICT`."""
    request = ConnectRequest(
        exchange=body.exchange,
        credentials=Credentials(
            api_key=body.api_key.get_secret_value(),
            secret=body.secret.get_secret_value(),
            password=body.password.get_secret_value() if body.password else None,
        ),
        name=body.name,
        testnet=body.testnet,
        idempotency_key=idempotency_key,
    )
    view = await container.exchange_accounts.connect(principal.user.id, request)
    response = json_response(account_out(view), status.HTTP_201_CREATED)
    if view.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@router.get("/accounts/{account_id}", response_model=ExchangeAccountOut)
async def get_account(account_id: str, principal: PrincipalDep, container: ContainerDep) -> object:
    """One of your accounts (`paper` names the paper account)."""
    return json_response(account_out(await container.exchange_accounts.get(principal.user.id, account_id)))


@router.delete("/accounts/{account_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_account(account_id: str, principal: PrincipalDep, container: ContainerDep) -> Response:
    """Disconnect an exchange account: its credentials are erased, its history (orders, trades)
    kept. 409 `CONFLICT` while it has open orders; the paper account cannot be deleted."""
    await container.exchange_accounts.delete(principal.user.id, account_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{name}/status", response_model=ExchangeStatusOut)
async def exchange_status(name: str, principal: PrincipalDep, container: ContainerDep) -> object:
    """Whether the exchange answers its public API: latency, server time, number of markets.
    404 `EXCHANGE_NOT_SUPPORTED` for a name ccxt does not know."""
    try:
        result = await container.exchange_accounts.status(name)
    except ExchangeNotSupported as error:
        # A path naming no exchange is a missing resource.
        raise NotFound(error.message, details=error.details, code=error.code) from None
    return json_response(status_out(result))
