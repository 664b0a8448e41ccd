"""webhook lanes: the worker claims events about the shop's own payments first

Revision ID: adf4e27f6f55
Revises: 4c1e7d2a9f30
Create Date: 2026-12-02 06:40:45.037300

`lane` orders the worker's claim (0: an order of ours and its own payment, 1: an order of ours,
2: nothing of ours). Events stored before lanes existed get lane 1. The partial index serves the
claim; the index on payment_key lets one Toss lookup settle every pending event of a payment.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'adf4e27f6f55'
down_revision = '4c1e7d2a9f30'
branch_labels = None
depends_on = None

DUE = sa.text("status IN ('PENDING', 'PROCESSING')")


def upgrade():
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lane', sa.SmallInteger(), server_default=sa.text('1'), nullable=False))
        batch_op.create_check_constraint(op.f('ck_webhook_events_lane_known'), 'lane BETWEEN 0 AND 2')
        batch_op.create_index('ix_webhook_events_due_lane', ['lane', 'id'], unique=False, sqlite_where=DUE, postgresql_where=DUE)
        batch_op.create_index(batch_op.f('ix_webhook_events_payment_key'), ['payment_key'], unique=False)


def downgrade():
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_events_payment_key'))
        batch_op.drop_index('ix_webhook_events_due_lane', sqlite_where=DUE, postgresql_where=DUE)
        batch_op.drop_constraint(op.f('ck_webhook_events_lane_known'), type_='check')
        batch_op.drop_column('lane')
