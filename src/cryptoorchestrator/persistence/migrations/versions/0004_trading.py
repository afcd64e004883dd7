"""trading core: accounts, orders, fills, ledger, balances, positions, equity snapshots

Revision ID: 0004_trading
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_trading"
down_revision = "0003"
branch_labels = None
depends_on = None

# Exact decimals: NUMERIC(38, 18) on PostgreSQL, the canonical decimal string on SQLite (whose
# NUMERIC affinity would round to 15 significant digits). The ORM type is ``tables.Money``.
MONEY = sa.Numeric(precision=38, scale=18).with_variant(sa.String(length=64), "sqlite")


def upgrade() -> None:
    op.create_table(
        "trading_accounts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("exchange", sa.String(length=64), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("credentials_encrypted", sa.Text(), nullable=True),
        sa.Column("testnet", sa.Boolean(), nullable=False),
        sa.Column("can_withdraw", sa.Boolean(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_trading_accounts_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trading_accounts")),
        sa.UniqueConstraint("user_id", "name", name="uq_trading_accounts_user_id_name"),
    )
    with op.batch_alter_table("trading_accounts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_trading_accounts_user_id"), ["user_id"], unique=False)
        batch_op.create_index(
            "uq_trading_accounts_one_paper",
            ["user_id"],
            unique=True,
            sqlite_where=sa.text("kind = 'paper'"),
            postgresql_where=sa.text("kind = 'paper'"),
        )

    op.create_table(
        "balances",
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("asset", sa.String(length=32), nullable=False),
        sa.Column("free", MONEY, nullable=False),
        sa.Column("locked", MONEY, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["trading_accounts.id"],
            name=op.f("fk_balances_account_id_trading_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "asset", name=op.f("pk_balances")),
    )
    op.create_table(
        "equity_snapshots",
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("equity", MONEY, nullable=False),
        sa.Column("currency", sa.String(length=32), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["trading_accounts.id"],
            name=op.f("fk_equity_snapshots_account_id_trading_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "day", name=op.f("pk_equity_snapshots")),
    )
    op.create_table(
        "ledger_entries",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("asset", sa.String(length=32), nullable=False),
        sa.Column("free_delta", MONEY, nullable=False),
        sa.Column("locked_delta", MONEY, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.String(length=128), nullable=True),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["trading_accounts.id"],
            name=op.f("fk_ledger_entries_account_id_trading_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
    )
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ledger_entries_account_asset_id", ["account_id", "asset", "id"], unique=False
        )

    op.create_table(
        "orders",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("client_order_id", sa.String(length=64), nullable=False),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("quantity", MONEY, nullable=False),
        sa.Column("price", MONEY, nullable=True),
        sa.Column("stop_price", MONEY, nullable=True),
        sa.Column("time_in_force", sa.String(length=8), nullable=False),
        sa.Column("reduce_only", sa.Boolean(), nullable=False),
        sa.Column("stop_loss", MONEY, nullable=True),
        sa.Column("take_profit", MONEY, nullable=True),
        sa.Column("bot_id", sa.String(length=64), nullable=True),
        sa.Column("parent_id", sa.String(length=36), nullable=True),
        sa.Column("oco_group", sa.String(length=64), nullable=True),
        sa.Column("exchange_order_id", sa.String(length=128), nullable=True),
        sa.Column("filled_quantity", MONEY, nullable=False),
        sa.Column("average_price", MONEY, nullable=True),
        sa.Column("fees", sa.JSON(), nullable=False),
        sa.Column("trade_ids", sa.JSON(), nullable=False),
        sa.Column("triggered", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("locked_asset", sa.String(length=32), nullable=True),
        sa.Column("locked_amount", MONEY, nullable=False),
        sa.Column("fingerprint", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["trading_accounts.id"],
            name=op.f("fk_orders_account_id_trading_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_orders_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("account_id", "client_order_id", name="uq_orders_account_id_client_order_id"),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index("ix_orders_account_status", ["account_id", "status"], unique=False)
        batch_op.create_index(batch_op.f("ix_orders_bot_id"), ["bot_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_orders_oco_group"), ["oco_group"], unique=False)
        batch_op.create_index(batch_op.f("ix_orders_status"), ["status"], unique=False)
        batch_op.create_index("ix_orders_user_created", ["user_id", "created_at"], unique=False)

    op.create_table(
        "positions",
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("quantity", MONEY, nullable=False),
        sa.Column("entry_price", MONEY, nullable=True),
        sa.Column("realized_pnl", MONEY, nullable=False),
        sa.Column("fees_paid", MONEY, nullable=False),
        sa.Column("leverage", MONEY, nullable=False),
        sa.Column("margin", MONEY, nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["trading_accounts.id"],
            name=op.f("fk_positions_account_id_trading_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "symbol", name=op.f("pk_positions")),
    )
    op.create_table(
        "fills",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("order_id", sa.String(length=36), nullable=False),
        sa.Column("trade_id", sa.String(length=128), nullable=False),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("price", MONEY, nullable=False),
        sa.Column("quantity", MONEY, nullable=False),
        sa.Column("fee", MONEY, nullable=False),
        sa.Column("fee_asset", sa.String(length=32), nullable=False),
        sa.Column("liquidity", sa.String(length=8), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("realized_pnl", MONEY, nullable=True),
        sa.Column("bot_id", sa.String(length=64), nullable=True),
        sa.Column("strategy", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["trading_accounts.id"],
            name=op.f("fk_fills_account_id_trading_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_fills_order_id_orders"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_fills_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fills")),
        sa.UniqueConstraint("order_id", "trade_id", name="uq_fills_order_id_trade_id"),
    )
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.create_index("ix_fills_account_symbol", ["account_id", "symbol"], unique=False)
        batch_op.create_index("ix_fills_user_timestamp", ["user_id", "timestamp"], unique=False)

    _install_ledger_triggers()


# The ledger is append-only: the database refuses UPDATE on its entries, and DELETE while the
# account exists. Deleting the account (or its user) cascades to the entries: the history goes
# with the account. A paper account's reset is recorded with new entries, never by deleting.
_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION ledger_entries_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND NOT EXISTS (SELECT 1 FROM trading_accounts WHERE id = OLD.account_id) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'ledger_entries is append-only';
END;
$$ LANGUAGE plpgsql
"""
_SQLITE_RAISE = "BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only'); END"
_SQLITE_NO_DELETE = """
CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries
WHEN EXISTS (SELECT 1 FROM trading_accounts WHERE id = OLD.account_id)
BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only'); END
"""


def _install_ledger_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER ledger_entries_no_{action.lower()} BEFORE {action} ON ledger_entries "
                "FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only()"
            )
    else:
        op.execute(f"CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries {_SQLITE_RAISE}")
        op.execute(_SQLITE_NO_DELETE)


def _drop_ledger_triggers() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for action in ("update", "delete"):
        op.execute(
            f"DROP TRIGGER IF EXISTS ledger_entries_no_{action}"
            + (" ON ledger_entries" if postgresql else "")
        )
    if postgresql:
        op.execute("DROP FUNCTION IF EXISTS ledger_entries_append_only()")


def downgrade() -> None:
    _drop_ledger_triggers()

    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.drop_index("ix_fills_user_timestamp")
        batch_op.drop_index("ix_fills_account_symbol")

    op.drop_table("fills")
    op.drop_table("positions")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_user_created")
        batch_op.drop_index(batch_op.f("ix_orders_status"))
        batch_op.drop_index(batch_op.f("ix_orders_oco_group"))
        batch_op.drop_index(batch_op.f("ix_orders_bot_id"))
        batch_op.drop_index("ix_orders_account_status")

    op.drop_table("orders")
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_entries_account_asset_id")

    op.drop_table("ledger_entries")
    op.drop_table("equity_snapshots")
    op.drop_table("balances")
    with op.batch_alter_table("trading_accounts", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_trading_accounts_one_paper",
            sqlite_where=sa.text("kind = 'paper'"),
            postgresql_where=sa.text("kind = 'paper'"),
        )
        batch_op.drop_index(batch_op.f("ix_trading_accounts_user_id"))

    op.drop_table("trading_accounts")
