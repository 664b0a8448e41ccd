"""sandbox tables (no longer created here)

Revision ID: 9b5db40fd684
Revises: ad6ba741427a
Create Date: 2026-11-22 01:29:14.433175

The offline Toss sandbox once kept its tables in the shop's database. It now has a database of
its own and creates its tables itself, so this revision creates nothing;
4c1e7d2a9f30_drop_sandbox_tables removes them from databases that got them here.
"""


# revision identifiers, used by Alembic.
revision = '9b5db40fd684'
down_revision = 'ad6ba741427a'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
