"""drop the sandbox's tables: the sandbox keeps its own database

Revision ID: 4c1e7d2a9f30
Revises: a75c2b7e5b7d
Create Date: 2026-12-02 06:00:00.000000

Databases migrated before the sandbox had a database of its own hold its four tables (empty in
production, where the sandbox never runs). They are dropped when present.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '4c1e7d2a9f30'
down_revision = 'a75c2b7e5b7d'
branch_labels = None
depends_on = None

# Children before parents (sandbox_cancels references sandbox_payments).
SANDBOX_TABLES = (
    'sandbox_cancels',
    'sandbox_webhooks',
    'sandbox_idempotency_keys',
    'sandbox_payments',
)


def upgrade():
    present = set(sa.inspect(op.get_bind()).get_table_names())
    for table in SANDBOX_TABLES:
        if table in present:
            op.drop_table(table)


def downgrade():
    # Nothing to restore: the sandbox creates its tables in its own database.
    pass
