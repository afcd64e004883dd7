"""The SQLAlchemy unit of work: one AsyncSession, the repositories over it, commit or roll back."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cryptoorchestrator.core.errors import Conflict
from cryptoorchestrator.persistence import bot_repositories as bot_repos
from cryptoorchestrator.persistence import repositories as repos
from cryptoorchestrator.persistence import trading_repositories as trading
from cryptoorchestrator.persistence.tables import ENCRYPTED_COLUMNS


class SqlUnitOfWork:
    def __init__(self, factory: async_sessionmaker[Any]) -> None:
        self._factory = factory
        self._session: AsyncSession | None = None

    async def __aenter__(self) -> Self:
        self._session = self._factory()
        self.users = repos.SqlUserRepository(self._session)
        self.sessions = repos.SqlSessionRepository(self._session)
        self.api_keys = repos.SqlApiKeyRepository(self._session)
        self.audit = repos.SqlAuditRepository(self._session)
        self.jobs = repos.SqlJobRepository(self._session)
        self.strategies = repos.SqlStrategyRepository(self._session)
        self.backtests = repos.SqlBacktestRepository(self._session)
        self.secrets = EncryptedColumns(self._session)
        self.accounts = trading.SqlTradingAccountRepository(self._session)
        self.orders = trading.SqlOrderRepository(self._session)
        self.fills = trading.SqlFillRepository(self._session)
        self.ledger = trading.SqlLedgerRepository(self._session)
        self.positions = trading.SqlPositionRepository(self._session)
        self.equity = trading.SqlEquityRepository(self._session)
        self.bots = bot_repos.SqlBotRepository(self._session)
        self.bot_events = bot_repos.SqlBotEventRepository(self._session)
        self.bot_leases = bot_repos.SqlBotLeaseRepository(self._session)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._session is not None
        try:
            # close() rolls back what was not committed (nothing after a commit) and releases the
            # connection: a rollback() first would add nothing but another pass through the session.
            await self._session.close()
        finally:
            self._session = None
        if isinstance(exc, IntegrityError):
            # A unique or foreign-key constraint caught a race the service's checks could not see.
            raise Conflict("The request conflicts with data stored meanwhile; retry it.") from exc

    async def commit(self) -> None:
        assert self._session is not None
        try:
            await self._session.commit()
        except IntegrityError as exc:
            await self._session.rollback()
            raise Conflict("The request conflicts with data stored meanwhile; retry it.") from exc

    async def rollback(self) -> None:
        assert self._session is not None
        await self._session.rollback()


class EncryptedColumns:
    """Every encrypted column of the schema, for key rotation."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def all(self) -> list[tuple[str, Any, str, str]]:
        """(table, primary key, column, ciphertext) for every stored secret."""
        found: list[tuple[str, Any, str, str]] = []
        for model, pk, column in ENCRYPTED_COLUMNS:
            pk_col, col = getattr(model, pk), getattr(model, column)
            rows = (await self._session.execute(select(pk_col, col).where(col.is_not(None)))).all()
            found.extend((model.__tablename__, row[0], column, row[1]) for row in rows)
        return found

    async def replace(self, table: str, key: Any, column: str, ciphertext: str) -> None:
        for model, pk, col in ENCRYPTED_COLUMNS:
            if model.__tablename__ == table and col == column:
                await self._session.execute(
                    update(model).where(getattr(model, pk) == key).values({column: ciphertext})
                )
                return
        raise KeyError(f"{table}.{column} is not an encrypted column")


def unit_of_work_factory(factory: async_sessionmaker[Any]) -> Any:
    def make() -> SqlUnitOfWork:
        return SqlUnitOfWork(factory)

    return make
