"""notices: the reminders and warnings of R14, once per tenant and key, with their email's delivery

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 03:00:00
"""

import sqlalchemy as sa
from alembic import op

from agentbilling.storage.types import UTCDateTime

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'notices',
        sa.Column('tenant_id', sa.String(length=64), nullable=False),
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('type', sa.String(length=40), nullable=False),
        sa.Column('key', sa.String(length=200), nullable=False),
        sa.Column('title', sa.String(length=300), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('email_to', sa.String(length=320), nullable=True),
        sa.Column('email_status', sa.String(length=16), nullable=False),
        sa.Column('email_attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
        sa.Column('email_next_at', UTCDateTime(timezone=True), nullable=True),
        sa.Column('email_claimed_until', UTCDateTime(timezone=True), nullable=True),
        sa.Column('email_sent_at', UTCDateTime(timezone=True), nullable=True),
        sa.Column('email_error', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_notices')),
    )
    op.create_index('uq_notices_tenant_key', 'notices', ['tenant_id', 'key'], unique=True)
    op.create_index('ix_notices_tenant_created', 'notices', ['tenant_id', 'created_at', 'id'], unique=False)
    op.create_index('ix_notices_email_due', 'notices', ['email_status', 'email_next_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_notices_email_due', table_name='notices')
    op.drop_index('ix_notices_tenant_created', table_name='notices')
    op.drop_index('uq_notices_tenant_key', table_name='notices')
    op.drop_table('notices')
