"""web sessions: login links' single-use codes and the Billing tab's server-side sessions

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 15:30:00
"""

import sqlalchemy as sa
from alembic import op

from agentbilling.storage.types import UTCDateTime

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'login_codes',
        sa.Column('tenant_id', sa.String(length=64), nullable=False),
        sa.Column('code_hash', sa.String(length=64), nullable=False),
        sa.Column('user_id', sa.String(length=200), nullable=False),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('expires_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('used_at', UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_login_codes_tenant_id_tenants'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('tenant_id', 'code_hash', name=op.f('pk_login_codes')),
    )
    op.create_table(
        'web_sessions',
        sa.Column('tenant_id', sa.String(length=64), nullable=False),
        sa.Column('id_hash', sa.String(length=64), nullable=False),
        sa.Column('user_id', sa.String(length=200), nullable=False),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('last_seen_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('expires_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('revoked_at', UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_web_sessions_tenant_id_tenants'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('tenant_id', 'id_hash', name=op.f('pk_web_sessions')),
    )
    op.create_index('ix_web_sessions_user', 'web_sessions', ['tenant_id', 'user_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_web_sessions_user', table_name='web_sessions')
    op.drop_table('web_sessions')
    op.drop_table('login_codes')
