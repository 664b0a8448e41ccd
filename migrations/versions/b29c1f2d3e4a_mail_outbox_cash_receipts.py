"""mail outbox and cash receipts

Revision ID: b29c1f2d3e4a
Revises: a18b0e1c2d3f
Create Date: 2026-12-02 08:10:00.000000

`mail_outbox` holds every e-mail to a buyer from the transaction that caused it until the worker
has sent it (unique dedupe key: each event mails at most once). `cash_receipts` holds an order's
cash receipt (현금영수증), at most one per order (unique order_pk).
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "b29c1f2d3e4a"
down_revision = "a18b0e1c2d3f"
branch_labels = None
depends_on = None

MAIL_STATUS = "status IN ('PENDING','SENDING','SENT','KEPT','FAILED')"
RECEIPT_STATUS = "status IN ('PENDING','ISSUED','CANCELED','FAILED')"


def upgrade():
    op.create_table(
        "mail_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_pk", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("to_address", sa.String(length=254), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(MAIL_STATUS, name=op.f("ck_mail_outbox_status_known")),
        sa.ForeignKeyConstraint(
            ["order_pk"],
            ["orders.id"],
            name=op.f("fk_mail_outbox_order_pk_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_outbox")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_mail_outbox_dedupe_key")),
    )
    with op.batch_alter_table("mail_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_mail_outbox_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_mail_outbox_order_pk"), ["order_pk"], unique=False)

    op.create_table(
        "cash_receipts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_pk", sa.Integer(), nullable=False),
        sa.Column("origin", sa.String(length=8), nullable=False),
        sa.Column("receipt_type", sa.String(length=8), nullable=False),
        sa.Column("receipt_key", sa.String(length=200), nullable=True),
        sa.Column("issue_number", sa.String(length=20), nullable=True),
        sa.Column("receipt_url", sa.String(length=500), nullable=True),
        sa.Column("issue_status", sa.String(length=16), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("tax_free_amount", sa.BigInteger(), nullable=False),
        sa.Column("canceled_amount", sa.BigInteger(), nullable=False),
        sa.Column("identity_number", sa.String(length=30), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("issue_key", sa.String(length=100), nullable=True),
        sa.Column("cancel_key", sa.String(length=100), nullable=True),
        sa.Column("pending_cancel_amount", sa.BigInteger(), nullable=True),
        sa.Column("failure_code", sa.String(length=64), nullable=True),
        sa.Column("failure_message", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(RECEIPT_STATUS, name=op.f("ck_cash_receipts_status_known")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_cash_receipts_amount_positive")),
        sa.CheckConstraint(
            "canceled_amount BETWEEN 0 AND amount",
            name=op.f("ck_cash_receipts_canceled_within_amount"),
        ),
        sa.CheckConstraint(
            "pending_cancel_amount > 0", name=op.f("ck_cash_receipts_pending_cancel_positive")
        ),
        sa.ForeignKeyConstraint(
            ["order_pk"], ["orders.id"], name=op.f("fk_cash_receipts_order_pk_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cash_receipts")),
        sa.UniqueConstraint("order_pk", name=op.f("uq_cash_receipts_order_pk")),
        sa.UniqueConstraint("receipt_key", name=op.f("uq_cash_receipts_receipt_key")),
    )


def downgrade():
    op.drop_table("cash_receipts")
    with op.batch_alter_table("mail_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mail_outbox_order_pk"))
        batch_op.drop_index("ix_mail_outbox_due")
    op.drop_table("mail_outbox")
