"""What the bot runtime writes about a bot: its events and the fields the runner owns.

The runner owns ``status``, ``error``, ``started_at``, ``stopped_at``, ``last_candle_at`` and
``state``, and every event of kind signal/order/fill/protection/reconcile/error
(``docs/design/bots.md``). Each write is its own short transaction, committed at once, so that
what a bot did is on record even if the process dies right after. ``state`` is merged, never
replaced: the keys the bots service writes (``close_positions``) survive a runner's update.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from cryptoorchestrator.core.clock import Clock
from cryptoorchestrator.domain.bots import Bot, BotEvent
from cryptoorchestrator.services.ports import UnitOfWorkFactory

#: Longest event message kept (the rest is cut).
MESSAGE_LIMIT = 500


def json_safe(value: Any) -> Any:
    """Decimals as strings, datetimes as ISO text, enums as their value, recursively."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(item) for item in value]
    return value


class BotJournal:
    """Events and runner-owned fields of bots, written through the unit of work."""

    def __init__(self, uow_factory: UnitOfWorkFactory, *, clock: Clock) -> None:
        self._uow = uow_factory
        self._clock = clock

    async def event(self, bot: Bot, kind: str, message: str, data: Mapping[str, Any] | None = None) -> None:
        """Record one event of ``bot`` (kind from ``BOT_EVENT_KINDS``)."""
        record = BotEvent(
            id=None,
            bot_id=bot.id,
            user_id=bot.user_id,
            kind=kind,
            message=message[:MESSAGE_LIMIT],
            data=json_safe(dict(data or {})),
            timestamp=self._clock.now(),
        )
        async with self._uow() as uow:
            await uow.bot_events.add(record)
            await uow.commit()

    async def load(self, bot_id: str) -> Bot | None:
        async with self._uow() as uow:
            return await uow.bots.get(bot_id)

    async def update(self, bot_id: str, *, state: Mapping[str, Any] | None = None, **fields: Any) -> Bot:
        """Write runner-owned ``fields``; ``state`` keys are merged into the stored state."""
        async with self._uow() as uow:
            if state is not None:
                current = await uow.bots.get(bot_id)
                merged = dict(current.state) if current is not None else {}
                merged.update(json_safe(dict(state)))
                fields["state"] = merged
            bot = await uow.bots.update(bot_id, now=self._clock.now(), **fields)
            await uow.commit()
        return bot
