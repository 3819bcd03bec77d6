"""the ledger: segments of paid periods, credit per currency, upgrades paid before they run

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 16:00:00
"""

import sqlalchemy as sa
from alembic import op

from agentbilling.storage.types import UTCDateTime

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'segments',
        sa.Column('tenant_id', sa.String(length=64), nullable=False),
        sa.Column('start_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('period_start', UTCDateTime(timezone=True), nullable=False),
        sa.Column('period_end', UTCDateTime(timezone=True), nullable=False),
        sa.Column('plan_id', sa.String(length=64), nullable=False),
        sa.Column('units_at_start', sa.BigInteger(), nullable=False),
        sa.Column('end_at', UTCDateTime(timezone=True), nullable=True),
        sa.Column('units', sa.BigInteger(), nullable=True),
        sa.Column('closed_by', sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint('tenant_id', 'start_at', name=op.f('pk_segments')),
    )
    op.create_index('ix_segments_tenant_period', 'segments', ['tenant_id', 'period_start'], unique=False)
    op.create_table(
        'credit_balances',
        sa.Column('tenant_id', sa.String(length=64), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('amount', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('tenant_id', 'currency', name=op.f('pk_credit_balances')),
    )
    # The one credit a tenant had was in the currency of its invoices.
    op.execute(
        "INSERT INTO credit_balances (tenant_id, currency, amount) "
        "SELECT s.tenant_id, (SELECT i.currency FROM invoices i WHERE i.tenant_id = s.tenant_id "
        "ORDER BY i.created_at DESC LIMIT 1), s.credit FROM subscriptions s WHERE s.credit > 0 "
        "AND EXISTS (SELECT 1 FROM invoices i WHERE i.tenant_id = s.tenant_id)"
    )
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.drop_column('credit')
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        # An upgrade's invoice: the change it makes once paid (R8), and the counter when asked.
        batch_op.add_column(sa.Column('change_plan_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('change_at', UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('change_counter', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.drop_column('change_counter')
        batch_op.drop_column('change_at')
        batch_op.drop_column('change_plan_id')
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('credit', sa.BigInteger(), server_default=sa.text('0'), nullable=False))
    op.execute(
        "UPDATE subscriptions SET credit = COALESCE((SELECT SUM(c.amount) FROM credit_balances c "
        "WHERE c.tenant_id = subscriptions.tenant_id), 0)"
    )
    op.drop_table('credit_balances')
    op.drop_index('ix_segments_tenant_period', table_name='segments')
    op.drop_table('segments')
