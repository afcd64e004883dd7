"""Trading accounts: every user's paper account (created on first use with the configured
starting balances, and reset on request) and the lookup the order service uses to find the
account an order goes to. Exchange accounts with credentials are managed in
``services/exchange_accounts.py``."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from cryptoorchestrator.core.clock import Clock
from cryptoorchestrator.core.errors import Conflict, NotFound
from cryptoorchestrator.core.ids import new_uuid
from cryptoorchestrator.domain.accounts import TradingAccount
from cryptoorchestrator.domain.ledger import Ledger
from cryptoorchestrator.services.ports import UnitOfWork, UnitOfWorkFactory

PAPER = "paper"
PAPER_CACHE_SECONDS = 5.0


class AccountService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        *,
        clock: Clock,
        paper_exchange: str,
        starting_balances: Mapping[str, Decimal],
    ) -> None:
        self._uow = uow_factory
        self._clock = clock
        self.paper_exchange = paper_exchange
        self.starting_balances = dict(starting_balances)
        self._creating: dict[int, asyncio.Lock] = {}
        self._paper: dict[int, tuple[float, TradingAccount]] = {}

    def forget(self, account: TradingAccount) -> None:
        """Drop a cached account after its settings changed (leverage, reset)."""
        self._paper.pop(account.user_id, None)

    async def paper_account(self, user_id: int) -> TradingAccount:
        """The user's paper account, created with the starting balances on first use. Cached
        for a few seconds: every order asks for it."""
        now = self._clock.timestamp()
        cached = self._paper.get(user_id)
        if cached is not None and now - cached[0] < PAPER_CACHE_SECONDS:
            return cached[1]
        async with self._uow() as uow:
            account = await uow.accounts.paper_for_user(user_id)
        if account is not None:
            self._paper[user_id] = (now, account)
            return account
        lock = self._creating.setdefault(user_id, asyncio.Lock())
        async with lock, self._uow() as uow:
            account = await uow.accounts.paper_for_user(user_id)
            if account is not None:
                return account
            account = await self._create_paper(uow, user_id)
            await uow.commit()
        self._creating.pop(user_id, None)
        return account

    async def _create_paper(self, uow: UnitOfWork, user_id: int) -> TradingAccount:
        now = self._clock.now()
        account = TradingAccount(
            id=new_uuid(),
            user_id=user_id,
            kind=PAPER,
            name=PAPER,
            exchange=self.paper_exchange,
            created_at=now,
            updated_at=now,
            settings={
                "starting_balances": {asset: str(amount) for asset, amount in self.starting_balances.items()}
            },
        )
        account = await uow.accounts.add(account)
        ledger = Ledger(account.id, {})
        for asset, amount in self.starting_balances.items():
            if amount > 0:
                ledger.deposit(asset, amount, reference="opening", timestamp=now)
        await uow.ledger.record(account.id, ledger.take_entries(), ledger.balances(), now=now)
        return account

    async def resolve(self, user_id: int, account_id: str | None) -> TradingAccount:
        """The account an order or query is for: the paper account when none is named (or the
        name ``paper`` is given); another user's account id answers 404 like a missing one."""
        if account_id is None or account_id == PAPER:
            return await self.paper_account(user_id)
        async with self._uow() as uow:
            account = await uow.accounts.get_for_user(account_id, user_id)
        if account is None or not account.active:
            raise NotFound("Account not found.", details={"account_id": account_id})
        return account

    async def list(self, user_id: int) -> list[TradingAccount]:
        await self.paper_account(user_id)
        async with self._uow() as uow:
            accounts, _ = await uow.accounts.list_for_user(user_id, limit=500, offset=0)
        return accounts

    async def create_exchange_account(
        self,
        user_id: int,
        *,
        name: str,
        exchange: str,
        credentials_encrypted: str | None,
        testnet: bool = False,
        can_withdraw: bool | None = None,
        settings: dict[str, Any] | None = None,
    ) -> TradingAccount:
        """Store an exchange account; the credentials arrive already encrypted (SecretBox)."""
        now = self._clock.now()
        async with self._uow() as uow:
            existing, _ = await uow.accounts.list_for_user(user_id, limit=500, offset=0)
            if any(account.name == name for account in existing):
                raise Conflict(f"An account named {name!r} already exists.", details={"name": name})
            account = await uow.accounts.add(
                TradingAccount(
                    id=new_uuid(),
                    user_id=user_id,
                    kind="exchange",
                    name=name,
                    exchange=exchange,
                    created_at=now,
                    updated_at=now,
                    settings=settings or {},
                    credentials_encrypted=credentials_encrypted,
                    testnet=testnet,
                    can_withdraw=can_withdraw,
                )
            )
            await uow.commit()
        return account

    def starting_balances_of(self, account: TradingAccount) -> dict[str, Decimal]:
        raw = account.settings.get("starting_balances") or {}
        return {str(asset): Decimal(str(amount)) for asset, amount in raw.items()}
