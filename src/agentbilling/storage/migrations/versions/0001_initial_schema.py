"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27 05:02:30.187047
"""

import sqlalchemy as sa
from alembic import op

import agentbilling.storage.types

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('idempotency_keys',
    sa.Column('principal', sa.String(length=300), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('principal', 'key', name=op.f('pk_idempotency_keys'))
    )
    op.create_table('sessions',
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('id', sa.String(length=200), nullable=False),
    sa.Column('agent_id', sa.String(length=200), nullable=False),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('answered_only', sa.Boolean(), nullable=False),
    sa.Column('started_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_activity_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('answered_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ended_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('billable_sessions', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_sessions'))
    )
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.create_index('ix_sessions_tenant_started', ['tenant_id', 'started_at', 'id'], unique=False)

    op.create_table('tenants',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('billing_email', sa.String(length=320), nullable=False),
    sa.Column('created_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tenants'))
    )
    op.create_table('test_clock',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('now', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_test_clock'))
    )
    op.create_table('usage_counters',
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('period', sa.String(length=32), nullable=False),
    sa.Column('billable_sessions', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id', 'period', name=op.f('pk_usage_counters'))
    )
    op.create_table('api_keys',
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_api_keys_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_api_keys_key_hash'))
    )
    op.create_table('subscriptions',
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('plan_id', sa.String(length=64), nullable=True),
    sa.Column('terms', sa.JSON(), nullable=True),
    sa.Column('anchor_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('trial_started_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('trial_ends_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('trial_sessions', sa.Integer(), nullable=False),
    sa.Column('custom_limit', sa.BigInteger(), nullable=True),
    sa.Column('updated_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_subscriptions_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_subscriptions'))
    )
    op.create_table('users',
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('id', sa.String(length=200), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('auth_nonce', sa.String(length=32), nullable=False),
    sa.Column('created_at', agentbilling.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_users_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_users'))
    )


def downgrade() -> None:
    op.drop_table('users')
    op.drop_table('subscriptions')
    op.drop_table('api_keys')
    op.drop_table('usage_counters')
    op.drop_table('test_clock')
    op.drop_table('tenants')
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_sessions_tenant_started')

    op.drop_table('sessions')
    op.drop_table('idempotency_keys')
