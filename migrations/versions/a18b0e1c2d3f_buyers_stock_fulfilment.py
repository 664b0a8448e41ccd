"""buyers, stock and fulfilment

Revision ID: a18b0e1c2d3f
Revises: 89952bd40dec
Create Date: 2026-12-02 07:35:56.667419

Orders gain the buyer (name, e-mail, phone digits), the delivery address, whether the order holds
stock (`stock_reserved`) and the delivery step with its carrier and tracking number. Products
gain `stock`, never below zero; a refund records whether the operator asked to restock.

Old rows stay valid: their buyer fields are empty (new orders require them in the service), they
hold no stock (so releasing them returns nothing), their delivery step is NONE, and existing
products start sold out until their stock is set (`flask seed` refills the demo catalog).

Columns are added and dropped in place, never by recreating a table: on SQLite, recreating
`orders` or `products` would run the ON DELETE actions of `order_lines` (cascade, set null)
and lose the lines. SQLite takes each CHECK with its column, so it can drop the column again.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a18b0e1c2d3f'
down_revision = '89952bd40dec'
branch_labels = None
depends_on = None

FULFILMENT_CHECK = "fulfilment IN ('NONE','PREPARING','SHIPPED','DELIVERED')"
STOCK_CHECK = "stock >= 0"


def _sqlite() -> bool:
    return op.get_bind().dialect.name == 'sqlite'


def upgrade():
    for name, length in (
        ('buyer_name', 50),
        ('buyer_email', 254),
        ('buyer_phone', 15),
        ('postcode', 10),
        ('address', 200),
        ('address_detail', 200),
    ):
        op.add_column('orders', sa.Column(name, sa.String(length=length), nullable=True))
    op.add_column('orders', sa.Column('stock_reserved', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column('orders', sa.Column('carrier', sa.String(length=40), nullable=True))
    op.add_column('refunds', sa.Column('restock', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column('orders', sa.Column('tracking_number', sa.String(length=40), nullable=True))
    if _sqlite():
        op.execute(
            "ALTER TABLE orders ADD COLUMN fulfilment VARCHAR(16) DEFAULT 'NONE' NOT NULL"
            f" CONSTRAINT ck_orders_fulfilment_known CHECK ({FULFILMENT_CHECK})"
        )
        op.execute(
            "ALTER TABLE products ADD COLUMN stock INTEGER DEFAULT 0 NOT NULL"
            f" CONSTRAINT ck_products_stock_not_negative CHECK ({STOCK_CHECK})"
        )
    else:
        op.add_column('orders', sa.Column('fulfilment', sa.String(length=16), server_default='NONE', nullable=False))
        op.create_check_constraint(op.f('ck_orders_fulfilment_known'), 'orders', FULFILMENT_CHECK)
        op.add_column('products', sa.Column('stock', sa.Integer(), server_default=sa.text('0'), nullable=False))
        op.create_check_constraint(op.f('ck_products_stock_not_negative'), 'products', STOCK_CHECK)


def downgrade():
    # Dropping a column drops its CHECK with it (PostgreSQL, and SQLite's column constraints).
    op.drop_column('products', 'stock')
    op.drop_column('refunds', 'restock')
    for name in (
        'fulfilment',
        'tracking_number',
        'carrier',
        'stock_reserved',
        'address_detail',
        'address',
        'postcode',
        'buyer_phone',
        'buyer_email',
        'buyer_name',
    ):
        op.drop_column('orders', name)
