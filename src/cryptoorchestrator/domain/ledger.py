"""The ledger: balances per account and asset, where every change is an entry (stdlib only).

Rules implemented by :class:`Ledger` (``tests/unit/domain/test_ledger.py`` checks them on random
operation sequences):

1. Every change of a balance is a :class:`LedgerEntry`. Each asset's ``free`` and ``locked`` are
   always their starting values plus the sums of their entries' deltas. A fresh ledger
   (:meth:`Ledger.fresh`) starts from zero and books its opening balances as ``reset`` or
   ``deposit`` entries; a ledger rebuilt from stored balances starts from them, and the sums
   cover the entries made since it was loaded. :meth:`Ledger.take_entries` hands the new
   entries to the service, which stores them in the same transaction as the balances.
2. Money is ``Decimal``: a float, an int, NaN or an infinity is refused (``ValidationFailed``),
   never converted. The ledger adds and subtracts in a 60-digit context (:data:`EXACT`), so its
   sums are exact (Decimal's default 28 digits would round ``10 + 1/60`` and leave dust in a
   lock that is taken and released in parts) and do not depend on the order of the entries.
3. An operation is all or nothing: it is planned as a list of entries, the resulting balances
   are checked, and only then applied. A failing operation (``InsufficientBalance``) changes
   nothing.
4. ``locked`` is never negative. ``free`` is never negative unless the account was built with
   ``allow_negative`` (never for spot accounts); withdrawals and locks need free funds on every
   account, they never borrow.
5. An order pays from its own lock first: the caller passes how much of the lock the order
   still holds (``order_locked``) and gets back what remains of it (a market buy locked with a
   slippage buffer keeps the rest, which the caller unlocks when the order is done). A cost
   above the remaining lock is taken from free; short of both, ``InsufficientBalance``.
6. Spot fills: a buy pays ``price * quantity`` of the quote and credits the quantity of the
   base; a sell pays the quantity of the base and credits the proceeds (kind ``trade``).
7. Fees are separate ``fee`` entries in the asset they are charged in. A fee in the order's lock
   asset is paid as in rule 5 (a lock sized to include the fee can pay it); any other fee (base
   on a buy, quote on a sell, a third asset such as BNB) is debited from free.
8. Swap fills (linear perpetuals margined in ``instrument.margin_asset``): the position change
   (:func:`~cryptoorchestrator.domain.positions.apply_fill`) moves margin between free and
   locked (kind ``margin``): opening locks ``notional / leverage`` (from the order's lock first,
   rule 5), reducing releases it in proportion; realised P&L is credited to (or, a loss, debited
   from) free as ``realized_pnl``.
9. An exit sells at most what is free, rounded down to the step (:func:`sellable`): fees in the
   base asset leave dust that must not make the exit fail.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Context, Decimal, DivisionByZero, InvalidOperation, Overflow, localcontext
from typing import NoReturn

from cryptoorchestrator.core.errors import CryptoOrchestratorError, InsufficientBalance, ValidationFailed
from cryptoorchestrator.domain import positions as position_rules
from cryptoorchestrator.domain.instruments import Instrument
from cryptoorchestrator.domain.orders import Fill
from cryptoorchestrator.domain.positions import Position

_ZERO = Decimal(0)

EXACT = Context(prec=60, traps=[InvalidOperation, DivisionByZero, Overflow])
"""The context of the ledger's own arithmetic (rule 2): wide enough that adding amounts of up to
28 significant digits from 10**15 down to 10**-30 is exact."""


@dataclass(frozen=True, slots=True)
class AssetBalance:
    """One asset of one account. ``total == free + locked``."""

    asset: str
    free: Decimal = Decimal(0)
    locked: Decimal = Decimal(0)

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One change of one asset's balance. ``kind`` is one of :data:`ENTRY_KINDS`;
    ``reference`` names what caused it (an order id, a trade id, ``reset``...)."""

    account_id: str
    asset: str
    free_delta: Decimal
    locked_delta: Decimal
    kind: str
    reference: str | None
    timestamp: datetime


ENTRY_KINDS = frozenset(
    {"deposit", "withdrawal", "lock", "unlock", "trade", "fee", "realized_pnl", "margin", "reset"}
)


@dataclass(frozen=True, slots=True)
class Settlement:
    """What :meth:`Ledger.settle_fill` did: the position after the fill, the P&L the fill
    realised (quote asset, fees excluded), what remains of the order's lock (rule 5) and the
    entries it booked."""

    position: Position
    realized_pnl: Decimal
    order_locked: Decimal
    entries: tuple[LedgerEntry, ...]


class Ledger:
    """The balances of one account, changed only through entries (rules 1-8 of the module).

    Mutable and in memory: a service loads it from the stored balances, applies operations,
    then stores :meth:`balances` and :meth:`take_entries` in one transaction. ``allow_negative``
    lets ``free`` go below zero through fills, fees and P&L (margin accounts); it stays false
    for spot accounts (rule 4).
    """

    def __init__(
        self,
        account_id: str,
        balances: Mapping[str, AssetBalance] | None = None,
        *,
        allow_negative: bool = False,
    ) -> None:
        """Rebuild the ledger from stored ``balances`` (keyed by asset); they are its starting
        point (rule 1). Raises ``ValidationFailed`` for a key that is not the balance's asset
        or a non-Decimal amount, and the invariant error of :meth:`check_invariants` for a
        negative stored balance the account does not allow."""
        self.account_id = account_id
        self.allow_negative = allow_negative
        loaded: dict[str, AssetBalance] = {}
        for asset, balance in (balances or {}).items():
            if asset != balance.asset:
                raise ValidationFailed(
                    f"The balance stored under {asset} is of {balance.asset}.", details={"asset": asset}
                )
            _decimal(balance.free, "free")
            _decimal(balance.locked, "locked")
            loaded[asset] = balance
        self._start: dict[str, AssetBalance] = dict(loaded)
        self._balances: dict[str, AssetBalance] = dict(loaded)
        self._entries: list[LedgerEntry] = []
        self.check_invariants()

    @classmethod
    def fresh(
        cls,
        account_id: str,
        balances: Mapping[str, AssetBalance | Decimal],
        *,
        timestamp: datetime,
        kind: str = "reset",
        reference: str | None = None,
        allow_negative: bool = False,
    ) -> Ledger:
        """A new account's ledger: it starts from zero and books each opening balance as an
        entry of ``kind`` (``reset`` or ``deposit``), so the balances are the sums of the
        entries from the very start (rule 1). A plain Decimal is a free amount."""
        if kind not in ("reset", "deposit"):
            raise ValidationFailed("Opening balances are booked as reset or deposit.", details={"kind": kind})
        ledger = cls(account_id, allow_negative=allow_negative)
        entries: list[LedgerEntry] = []
        for asset, value in balances.items():
            opening = value if isinstance(value, AssetBalance) else AssetBalance(asset, free=value)
            if opening.asset != asset:
                raise ValidationFailed(
                    f"The balance given for {asset} is of {opening.asset}.", details={"asset": asset}
                )
            free = _amount(opening.free, "free")
            locked = _amount(opening.locked, "locked")
            ledger._add(entries, asset, free, locked, kind, reference, timestamp)
        ledger._commit(entries, strict=True)
        return ledger

    # --- reading ---------------------------------------------------------------------------

    def balance(self, asset: str) -> AssetBalance:
        """The balance of ``asset``; zero when the account never held it."""
        return self._balances.get(asset) or AssetBalance(asset)

    def balances(self) -> dict[str, AssetBalance]:
        """A snapshot of every balance the ledger knows (a new dict; later changes do not show)."""
        return dict(self._balances)

    def total(self, asset: str) -> Decimal:
        """``free + locked`` of ``asset``, added exactly (rule 2)."""
        with localcontext(EXACT):
            return self.balance(asset).total

    @property
    def entries(self) -> tuple[LedgerEntry, ...]:
        """The entries booked since the ledger was built or last taken (rule 1)."""
        return tuple(self._entries)

    def take_entries(self) -> list[LedgerEntry]:
        """Return the new entries and forget them, for the service to store with the balances
        (rule 1). The invariants are checked first: a broken ledger is never stored."""
        self.check_invariants()
        taken, self._entries = self._entries, []
        self._start = dict(self._balances)
        return taken

    # --- plain movements -------------------------------------------------------------------

    def deposit(
        self, asset: str, amount: Decimal, *, timestamp: datetime, reference: str | None = None
    ) -> None:
        """Credit ``amount`` to free (kind ``deposit``). Zero books nothing."""
        self._single(asset, _amount(amount, "amount"), _ZERO, "deposit", reference, timestamp)

    def withdraw(
        self, asset: str, amount: Decimal, *, timestamp: datetime, reference: str | None = None
    ) -> None:
        """Debit ``amount`` from free (kind ``withdrawal``); ``InsufficientBalance`` when free is
        short, on every account (rule 4)."""
        self._single(asset, -_amount(amount, "amount"), _ZERO, "withdrawal", reference, timestamp)

    def lock(self, asset: str, amount: Decimal, *, timestamp: datetime, reference: str | None = None) -> None:
        """Move ``amount`` from free to locked (kind ``lock``), for an order being placed.

        Raises ``InsufficientBalance`` with ``details={"asset", "required", "available"}``
        (decimal strings) when free is below ``amount`` (rules 3-4)."""
        value = _amount(amount, "amount")
        self._single(asset, -value, value, "lock", reference, timestamp)

    def unlock(
        self, asset: str, amount: Decimal, *, timestamp: datetime, reference: str | None = None
    ) -> Decimal:
        """Move ``amount`` from locked back to free (kind ``unlock``), never more than is
        locked: returns the amount released (what an order's cancel gives back)."""
        value = min(_amount(amount, "amount"), self.balance(asset).locked)
        self._single(asset, value, -value, "unlock", reference, timestamp)
        return value

    def reset(
        self, balances: Mapping[str, Decimal], *, timestamp: datetime, reference: str | None = None
    ) -> None:
        """Set the account to ``balances`` (all free) and every other asset to zero, through
        ``reset`` entries (a paper account's reset). Open orders must be cancelled first: their
        locks are zeroed here."""
        entries: list[LedgerEntry] = []
        targets = {asset: _amount(value, "amount") for asset, value in balances.items()}
        with localcontext(EXACT):  # rule 2
            for asset in sorted(set(self._balances) | set(targets)):
                current = self.balance(asset)
                target = targets.get(asset, _ZERO)
                self._add(
                    entries, asset, target - current.free, -current.locked, "reset", reference, timestamp
                )
            self._commit(entries, strict=True)

    # --- trading ---------------------------------------------------------------------------

    def settle_fill(
        self,
        fill: Fill,
        *,
        instrument: Instrument,
        position: Position | None = None,
        leverage: Decimal | None = None,
        order_locked: Decimal = _ZERO,
        reference: str | None = None,
        timestamp: datetime | None = None,
    ) -> Settlement:
        """Book one fill (rules 5-8): the trade, the fee and, on swaps, the margin and the
        realised P&L; the position moves by :func:`~cryptoorchestrator.domain.positions.apply_fill`.

        ``position`` is the position before the fill (``None`` for the first fill of the
        symbol); ``leverage`` defaults to the position's (1 for a new one). ``order_locked`` is
        how much of the order's lock is still held for it; the returned
        :class:`Settlement` says how much remains. ``reference`` and ``timestamp`` default to
        the fill's trade id and time. Raises ``InsufficientBalance`` (nothing changed) when the
        remaining lock and free cannot pay, ``OrderRejected`` when the position refuses the
        fill (a spot sell beyond the holding).
        """
        for name in ("price", "quantity", "fee"):
            _decimal(getattr(fill, name), name)
        remaining = _amount(order_locked, "order_locked")
        if leverage is None:
            leverage = position.leverage if position is not None else Decimal(1)
        _decimal(leverage, "leverage")
        after, realized = position_rules.apply_fill(
            position, fill, instrument=instrument, leverage=leverage, account_id=self.account_id
        )
        plan = _Plan(
            self,
            lock_asset=_lock_asset(fill, instrument),
            order_locked=remaining,
            reference=fill.trade_id if reference is None else reference,
            timestamp=fill.timestamp if timestamp is None else timestamp,
        )
        with localcontext(EXACT):  # rule 2
            if instrument.is_spot:
                _plan_spot_trade(plan, fill, instrument)
            else:
                before_margin = _ZERO if position is None else position.margin
                plan.move_margin(instrument.margin_asset, after.margin - before_margin)
                plan.credit(instrument.margin_asset, realized, "realized_pnl")
            plan.pay(fill.fee_asset, fill.fee, "fee")  # rule 7
            self._commit(plan.entries, strict=False)
        return Settlement(after, realized, plan.order_locked, tuple(plan.entries))

    def set_leverage(
        self,
        position: Position,
        leverage: Decimal,
        *,
        instrument: Instrument,
        timestamp: datetime,
        reference: str | None = None,
    ) -> Position:
        """Change a swap position's leverage and move the margin difference between free and
        locked (kind ``margin``). Raises ``OrderRejected`` for a leverage outside
        ``1..max_leverage`` or a spot position, ``InsufficientBalance`` when free cannot pay a
        bigger margin (nothing changed)."""
        after = position_rules.with_leverage(position, _decimal(leverage, "leverage"), instrument=instrument)
        plan = _Plan(self, lock_asset=None, order_locked=_ZERO, reference=reference, timestamp=timestamp)
        with localcontext(EXACT):  # rule 2
            plan.move_margin(instrument.margin_asset, after.margin - position.margin)
            self._commit(plan.entries, strict=True)
        return after

    # --- invariants ------------------------------------------------------------------------

    def check_invariants(self) -> None:
        """Rules 1, 2 and 4: every balance equals its starting value plus the sums of its
        entries, amounts are Decimal, ``locked`` is never negative and ``free`` only where
        allowed. Raises ``CryptoOrchestratorError`` (code ``LEDGER_INVARIANT_BROKEN``): a
        broken ledger is a bug to report, not the user's fault."""
        sums = self._sums()
        for asset in set(sums) | set(self._balances):
            balance = self.balance(asset)
            if not (isinstance(balance.free, Decimal) and isinstance(balance.locked, Decimal)):
                _broken(f"The balance of {asset} is not held as Decimal.", asset)
            if sums.get(asset, (_ZERO, _ZERO)) != (balance.free, balance.locked):
                _broken(f"The balance of {asset} is not the sum of its entries.", asset)
            if balance.locked < 0 or (balance.free < 0 and not self.allow_negative):
                _broken(f"The balance of {asset} is negative: {balance}.", asset)

    # --- internals -------------------------------------------------------------------------

    def _sums(self) -> dict[str, tuple[Decimal, Decimal]]:
        """Each asset's (free, locked) recomputed from the starting balances and the entries."""
        sums = {asset: (balance.free, balance.locked) for asset, balance in self._start.items()}
        with localcontext(EXACT):  # rule 2: exact, so the order of the entries cannot matter
            for entry in self._entries:
                if entry.kind not in ENTRY_KINDS or entry.account_id != self.account_id:
                    _broken(f"The entry {entry} does not belong in this ledger.", entry.asset)
                free, locked = sums.get(entry.asset, (_ZERO, _ZERO))
                sums[entry.asset] = (free + entry.free_delta, locked + entry.locked_delta)
        return sums

    def _add(
        self,
        entries: list[LedgerEntry],
        asset: str,
        free_delta: Decimal,
        locked_delta: Decimal,
        kind: str,
        reference: str | None,
        timestamp: datetime,
    ) -> None:
        if free_delta == 0 and locked_delta == 0:
            return  # nothing moved: no entry (a zero fee, an unlock of nothing)
        # "+ 0" turns a negative zero (from negating 0) into a plain zero before it is stored.
        entries.append(
            LedgerEntry(self.account_id, asset, free_delta + 0, locked_delta + 0, kind, reference, timestamp)
        )

    def _single(
        self,
        asset: str,
        free_delta: Decimal,
        locked_delta: Decimal,
        kind: str,
        reference: str | None,
        timestamp: datetime,
    ) -> None:
        entries: list[LedgerEntry] = []
        self._add(entries, asset, free_delta, locked_delta, kind, reference, timestamp)
        self._commit(entries, strict=True)

    def _commit(self, entries: Iterable[LedgerEntry], *, strict: bool) -> None:
        """Rule 3: compute every touched balance, refuse the lot if one breaks rule 4, then apply.
        ``strict`` refuses a negative free even on an ``allow_negative`` account (rule 4)."""
        planned = list(entries)
        after: dict[str, AssetBalance] = {}
        with localcontext(EXACT):  # rule 2
            for entry in planned:
                current = after.get(entry.asset) or self.balance(entry.asset)
                after[entry.asset] = AssetBalance(
                    entry.asset, current.free + entry.free_delta, current.locked + entry.locked_delta
                )
        for asset, balance in after.items():
            self._refuse_negative(self.balance(asset), balance, strict=strict)
        self._balances.update(after)
        self._entries.extend(planned)

    def _refuse_negative(self, before: AssetBalance, after: AssetBalance, *, strict: bool) -> None:
        asset = before.asset
        if after.locked < 0:
            required, available = before.locked - after.locked, before.locked
            raise InsufficientBalance(
                f"Only {_text(available)} {asset} is locked; {_text(required)} would be taken from it.",
                details={
                    "asset": asset,
                    "required": _text(required),
                    "available": _text(available),
                    "balance": "locked",
                },
            )
        if after.free < 0 and (strict or not self.allow_negative) and after.free < before.free:
            # What the operation takes from free against what free holds (rules 4-5).
            required, available = before.free - after.free, before.free
            raise InsufficientBalance(
                f"Not enough free {asset}: {_text(required)} needed, {_text(available)} available.",
                details={"asset": asset, "required": _text(required), "available": _text(available)},
            )


class _Plan:
    """The entries of one operation being planned, paying from the order's lock first (rule 5)."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        lock_asset: str | None,
        order_locked: Decimal,
        reference: str | None,
        timestamp: datetime,
    ) -> None:
        self._ledger = ledger
        self._lock_asset = lock_asset
        self.order_locked = order_locked
        self._reference = reference
        self._timestamp = timestamp
        self.entries: list[LedgerEntry] = []

    def _from_lock(self, asset: str, amount: Decimal) -> Decimal:
        """How much of ``amount`` the order's remaining lock covers (rule 5); consumes it."""
        if asset != self._lock_asset or amount <= 0:
            return _ZERO
        covered = min(amount, self.order_locked)
        self.order_locked -= covered
        return covered

    def add(self, asset: str, free_delta: Decimal, locked_delta: Decimal, kind: str) -> None:
        self._ledger._add(
            self.entries, asset, free_delta, locked_delta, kind, self._reference, self._timestamp
        )

    def pay(self, asset: str, amount: Decimal, kind: str) -> None:
        """Debit ``amount``: the order's lock first, the rest from free (rules 5 and 7)."""
        covered = self._from_lock(asset, amount)
        self.add(asset, -(amount - covered), -covered, kind)

    def credit(self, asset: str, amount: Decimal, kind: str) -> None:
        self.add(asset, amount, _ZERO, kind)

    def move_margin(self, asset: str, delta: Decimal) -> None:
        """Rule 8: lock ``delta`` more margin (the order's lock, already locked, covers it first)
        or release ``-delta`` of it."""
        if delta > 0:
            from_free = delta - self._from_lock(asset, delta)
            self.add(asset, -from_free, from_free, "margin")
        else:
            self.add(asset, -delta, delta, "margin")


def _plan_spot_trade(plan: _Plan, fill: Fill, instrument: Instrument) -> None:
    """Rule 6."""
    if fill.side.sign > 0:
        plan.pay(instrument.quote, fill.notional, "trade")
        plan.credit(instrument.base, fill.quantity, "trade")
    else:
        plan.pay(instrument.base, fill.quantity, "trade")
        plan.credit(instrument.quote, fill.notional, "trade")


def _lock_asset(fill: Fill, instrument: Instrument) -> str:
    """What an order of this side locks: the quote for a spot buy, the base for a spot sell,
    the margin asset on swaps."""
    if not instrument.is_spot:
        return instrument.margin_asset
    return instrument.quote if fill.side.sign > 0 else instrument.base


def sellable(ledger: Ledger, instrument: Instrument, wanted: Decimal) -> Decimal:
    """Rule 9: how much an exit may sell: ``min(wanted, free base)`` rounded down to the step
    (instrument rule 1). It never asks for more than is free, so the base-asset fees of the
    entry, which leave the holding a little short of the quantity bought, cannot fail it."""
    free = ledger.balance(instrument.base).free
    return instrument.round_quantity(max(_ZERO, min(_amount(wanted, "wanted"), free)))


# --- values -----------------------------------------------------------------------------------


def _decimal(value: object, name: str) -> Decimal:
    """Rule 2: a finite Decimal, or ``ValidationFailed``."""
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValidationFailed(
            f"{name} must be a finite Decimal, not {value!r}.", details={"field": name, "value": repr(value)}
        )
    return value


def _amount(value: object, name: str) -> Decimal:
    """A finite Decimal that is not negative, or ``ValidationFailed``."""
    amount = _decimal(value, name)
    if amount < 0:
        raise ValidationFailed(f"{name} must not be negative: {amount}.", details={"field": name})
    return amount


def _text(value: Decimal) -> str:
    """A decimal string without an exponent (``100``, not ``1E+2``)."""
    return format(value, "f")


def _broken(message: str, asset: str) -> NoReturn:
    raise CryptoOrchestratorError(message, details={"asset": asset}, code="LEDGER_INVARIANT_BROKEN")
