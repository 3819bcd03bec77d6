"""subscriptions through the provider: invoices, events, demo requests, sandbox

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 22:40:17.422940
"""

import sqlalchemy as sa
from alembic import op

import agentbilling.storage.types

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('invoices',
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('provider_subscription', sa.String(length=200), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('total', sa.BigInteger(), nullable=False),
    sa.Column('lines', sa.JSON(), nullable=False),
    sa.Column('period_start', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('period_end', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('paid_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('next_attempt_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('first_failed_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_invoices'))
    )
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.create_index('ix_invoices_next_attempt_at', ['next_attempt_at'], unique=False)
        batch_op.create_index('ix_invoices_tenant_created', ['tenant_id', 'created_at', 'id'], unique=False)

    op.create_table('provider_commands',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('target', sa.String(length=200), nullable=True),
    sa.Column('created_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('done_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_provider_commands'))
    )
    with op.batch_alter_table('provider_commands', schema=None) as batch_op:
        batch_op.create_index('ix_provider_commands_pending', ['done_at', 'id'], unique=False)

    op.create_table('provider_events',
    sa.Column('provider', sa.String(length=16), nullable=False),
    sa.Column('event_id', sa.String(length=200), nullable=False),
    sa.Column('type', sa.String(length=100), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=True),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('received_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('provider', 'event_id', name=op.f('pk_provider_events'))
    )
    op.create_table('sandbox_charges',
    sa.Column('invoice_id', sa.String(length=64), nullable=False),
    sa.Column('attempt', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('succeeded', sa.Boolean(), nullable=False),
    sa.Column('created_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('invoice_id', 'attempt', name=op.f('pk_sandbox_charges'))
    )
    op.create_table('sandbox_checkouts',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('plan_id', sa.String(length=64), nullable=False),
    sa.Column('plan_name', sa.String(length=200), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('completed_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('subscription_id', sa.String(length=40), nullable=True),
    sa.Column('return_url', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sandbox_checkouts'))
    )
    op.create_table('sandbox_customers',
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('customer_id', sa.String(length=40), nullable=False),
    sa.Column('card_number', sa.String(length=19), nullable=True),
    sa.Column('subscription_id', sa.String(length=40), nullable=True),
    sa.Column('plan_id', sa.String(length=64), nullable=True),
    sa.Column('subscribed_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancel_requested_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_sandbox_customers')),
    sa.UniqueConstraint('customer_id', name=op.f('uq_sandbox_customers_customer_id'))
    )
    op.create_table('sandbox_voids',
    sa.Column('invoice_id', sa.String(length=64), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('voided_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('invoice_id', name=op.f('pk_sandbox_voids'))
    )
    op.create_table('sandbox_events',
    sa.Column('seq', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('type', sa.String(length=100), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_sandbox_events')),
    sa.UniqueConstraint('id', name=op.f('uq_sandbox_events_id'))
    )
    with op.batch_alter_table('sandbox_events', schema=None) as batch_op:
        batch_op.create_index('ix_sandbox_events_undelivered', ['delivered_at', 'seq'], unique=False)

    op.create_table('demo_requests',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('plan_id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=200), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('created_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_demo_requests_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_demo_requests'))
    )
    with op.batch_alter_table('demo_requests', schema=None) as batch_op:
        batch_op.create_index('ix_demo_requests_created', ['created_at', 'id'], unique=False)

    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pending_plan_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('pending_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('cancel_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('payment_failed_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('grace_ends_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('ended_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('offline', sa.Boolean(), server_default=sa.text('(false)'), nullable=False))
        batch_op.add_column(sa.Column('provider', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('provider_customer', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('provider_subscription', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('billed_until', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('credit', sa.BigInteger(), server_default=sa.text('0'), nullable=False))
        batch_op.add_column(sa.Column('previous_plan_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('plan_changed_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.drop_column('plan_changed_at')
        batch_op.drop_column('previous_plan_id')
        batch_op.drop_column('credit')
        batch_op.drop_column('billed_until')
        batch_op.drop_column('provider_subscription')
        batch_op.drop_column('provider_customer')
        batch_op.drop_column('provider')
        batch_op.drop_column('offline')
        batch_op.drop_column('ended_at')
        batch_op.drop_column('grace_ends_at')
        batch_op.drop_column('payment_failed_at')
        batch_op.drop_column('cancel_at')
        batch_op.drop_column('pending_at')
        batch_op.drop_column('pending_plan_id')

    with op.batch_alter_table('demo_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_demo_requests_created')

    op.drop_table('demo_requests')
    with op.batch_alter_table('sandbox_events', schema=None) as batch_op:
        batch_op.drop_index('ix_sandbox_events_undelivered')

    op.drop_table('sandbox_events')
    op.drop_table('sandbox_voids')
    op.drop_table('sandbox_customers')
    op.drop_table('sandbox_checkouts')
    op.drop_table('sandbox_charges')
    op.drop_table('provider_events')
    with op.batch_alter_table('provider_commands', schema=None) as batch_op:
        batch_op.drop_index('ix_provider_commands_pending')

    op.drop_table('provider_commands')
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.drop_index('ix_invoices_tenant_created')
        batch_op.drop_index('ix_invoices_next_attempt_at')

    op.drop_table('invoices')
