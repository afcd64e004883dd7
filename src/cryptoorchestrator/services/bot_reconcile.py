"""Reconciling a live bot with its exchange before it trades again (after a start, a restart or
a move to another runner). Nothing is resent on a guess; what cannot be explained stops the bot.

Policy, in order (each step cited where it is implemented):

C1 *Open orders at the exchange.* An open order tagged with the bot's client-id prefix that the
   database does not know (a restored backup, another installation on the same key) is
   cancelled and recorded: the bot cannot know what it was for, and an unknown order must not
   trade on its behalf. Open orders with other ids (the user's own) are left alone.
C2 *The bot's open orders in the database* that the exchange does not list as open, or lists
   with more filled than was booked, are looked up by client order id and what happened is
   booked (filled, partly filled, cancelled, expired); ``pending`` and ``unknown`` ones are
   resolved by lookup (``OrderService.resolve_unknown``; sent again under the *same* id only when
   the exchange has never seen them).
C3 *Recent fills* (the last :data:`LOOKBACK`) are fetched per symbol and those of the account's
   orders booked through ``OrderService.apply``; a trade is booked once (its trade id). The
   window is bounded so that a bot down for days does not page through its whole history: older
   fills of the orders it knows are found by C2's lookups, which search from each order's
   creation.
C4 *Balances.* After C1-C3 every asset's ledger total is compared with the exchange's. A
   difference within dust (:func:`is_dust`) is ignored. A spot position of the bot that the
   exchange no longer holds (its base total below the position) cannot be explained: the bot
   does not resume (status ``error``). Any other difference (deposits, withdrawals, the user's
   own trades) is booked on the free balance as a ``deposit``/``withdrawal`` entry with reference
   ``bot-reconcile`` (locks of open orders stay as they are, so the balances remain the sums of
   their entries); a withdrawal larger than what is free cannot be explained either.
C5 *Unreachable exchange* (or any venue error during C1-C4): the bot does not resume.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from cryptoorchestrator.core.errors import CryptoOrchestratorError
from cryptoorchestrator.domain.ledger import Ledger
from cryptoorchestrator.domain.orders import Filled, Order, OrderStatus
from cryptoorchestrator.services.bot_orders import BotOrders, bot_prefix
from cryptoorchestrator.services.execution import LiveExecution, OrderEvents, fill_from_trade

#: How far before the bot's last candle C3 searches for fills.
LOOKBACK = timedelta(hours=1)
DUST_ABSOLUTE = Decimal("0.00000001")
DUST_RELATIVE = Decimal("0.000001")
REFERENCE = "bot-reconcile"


class ReconcileFailed(CryptoOrchestratorError):
    """The bot cannot be reconciled with its exchange (C4, C5): it must not resume."""

    code = "BOT_RECONCILE_FAILED"
    http_status = 503


def is_dust(ours: Decimal, theirs: Decimal) -> bool:
    """C4: a difference within 1e-8 or a millionth of the larger amount."""
    return abs(ours - theirs) <= max(DUST_ABSOLUTE, DUST_RELATIVE * max(abs(ours), abs(theirs)))


@dataclass
class Reconciliation:
    """What reconciling did (recorded as ``reconcile`` events)."""

    cancelled_unknown: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    fills_booked: int = 0
    adjusted: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cancelled_unknown": self.cancelled_unknown,
            "resolved": self.resolved,
            "fills_booked": self.fills_booked,
            "adjusted": self.adjusted,
        }


async def reconcile(orders: BotOrders, *, now: datetime) -> Reconciliation:
    """C1-C5 for a live bot; raises :class:`ReconcileFailed` when it must not resume."""
    execution = await orders.execution_for(orders.account)
    if not isinstance(execution, LiveExecution):
        return Reconciliation()
    report = Reconciliation()
    try:
        for symbol in orders.bot.symbols:
            instrument = await orders.instrument(symbol)
            await _open_orders(orders, execution, instrument.symbol, report)
            await _recent_fills(orders, execution, instrument.symbol, now, report)
        await _balances(orders, execution, now, report)
    except ReconcileFailed:
        raise
    except CryptoOrchestratorError as error:  # C5
        raise ReconcileFailed(
            f"The exchange could not be reconciled: {error.message}", details={"cause": error.code}
        ) from error
    return report


async def _open_orders(
    orders: BotOrders, execution: LiveExecution, symbol: str, report: Reconciliation
) -> None:
    venue = execution.venue
    at_exchange = await venue.fetch_open_orders(symbol)
    ours = await orders.open_orders(symbol)
    known_ids = {order.exchange_order_id for order in ours if order.exchange_order_id}
    prefix = bot_prefix(orders.bot.id)
    for answer in at_exchange:  # C1
        client_id = answer.client_order_id or ""
        if not client_id.startswith(prefix) or answer.id in known_ids:
            continue
        async with orders.uow_factory() as uow:
            stored = await uow.orders.get_by_client_id(orders.account.id, client_id)
        if stored is None:
            await venue.cancel_order(answer.id, symbol)
            report.cancelled_unknown.append(client_id)
    open_at_exchange = {answer.id: answer for answer in at_exchange}
    for order in ours:  # C2
        listed = open_at_exchange.get(order.exchange_order_id or "")
        if order.status in (OrderStatus.PENDING, OrderStatus.UNKNOWN):
            await orders.orders.resolve_unknown(orders.account, order)
        elif listed is None or listed.filled > order.filled_quantity:
            events = await execution.lookup(order)  # fills searched from the order's creation
            if events:
                await orders.orders.apply(orders.account, events)
        else:
            continue
        report.resolved.append(order.client_order_id)


async def _recent_fills(
    orders: BotOrders, execution: LiveExecution, symbol: str, now: datetime, report: Reconciliation
) -> None:
    """C3."""
    start = now - LOOKBACK
    trades = await execution.venue.fetch_my_trades(symbol, since_ms=int(start.timestamp() * 1000))
    if not trades:
        return
    async with orders.uow_factory() as uow:
        listed, _ = await uow.orders.list_for_user(
            orders.bot.user_id, account_id=orders.account.id, symbol=symbol, limit=500, offset=0
        )
    by_exchange_id: dict[str, Order] = {o.exchange_order_id: o for o in listed if o.exchange_order_id}
    events: OrderEvents = []
    for trade in trades:
        order = by_exchange_id.get(trade.order_id or "")
        if order is None or trade.id in order.trade_ids:
            continue
        events.append((order.id, Filled(fill_from_trade(order, trade, fallback=now))))
    if events:
        await orders.orders.apply(orders.account, events)
        report.fills_booked += len(events)


async def _balances(
    orders: BotOrders, execution: LiveExecution, now: datetime, report: Reconciliation
) -> None:
    """C4."""
    reported = await execution.balances()
    account = orders.account
    async with orders.uow_factory() as uow:
        ledger_balances = await uow.ledger.balances(account.id)
    for symbol in orders.bot.symbols:
        instrument = await orders.instrument(symbol)
        position = await orders.position(symbol)
        held = reported.get(instrument.base)
        if instrument.is_spot and position is not None and position.quantity > 0:
            total = held.total if held is not None else Decimal(0)
            if total < position.quantity and not is_dust(total, position.quantity):
                raise ReconcileFailed(
                    f"The exchange holds {total} {instrument.base} but the bot's {symbol} position is "
                    f"{position.quantity}: it cannot tell what happened.",
                    details={"symbol": symbol, "exchange": str(total), "position": str(position.quantity)},
                )
    differences = {}
    for asset in sorted(set(ledger_balances) | set(reported)):
        ours = ledger_balances[asset].total if asset in ledger_balances else Decimal(0)
        theirs = reported[asset].total if asset in reported else Decimal(0)
        if not is_dust(ours, theirs):
            differences[asset] = theirs - ours
    if not differences:
        return
    async with orders.orders.account_lock(account.id), orders.uow_factory() as uow:
        ledger = Ledger(account.id, await uow.ledger.balances_for_update(account.id))
        for asset, difference in differences.items():
            if difference > 0:
                ledger.deposit(asset, difference, timestamp=now, reference=REFERENCE)
            elif -difference > ledger.balance(asset).free:
                raise ReconcileFailed(
                    f"The exchange holds {-difference} {asset} less than the ledger, more than is free.",
                    details={"asset": asset, "difference": str(difference)},
                )
            else:
                ledger.withdraw(asset, -difference, timestamp=now, reference=REFERENCE)
        await uow.ledger.record(account.id, ledger.take_entries(), ledger.balances(), now=now)
        await uow.commit()
    report.adjusted = {asset: str(value) for asset, value in differences.items()}
