"""the gate's order with its writers, and what several processes share

usage_counters.checked_revision, cleared by a trigger on every change to a subscription or an API
key's revocation (PostgreSQL), so that an admission that waited for the counter row sees the change
on the row it locked; an index to expire idempotency keys by age; tenant_leases (webhooks of a
tenant applied one at a time across processes, on SQLite).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 15:30:00
"""

import sqlalchemy as sa
from alembic import op

from agentbilling.storage.types import UTCDateTime

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# Every writer of what admission depends on (the limit, the plan, the subscription's state and
# period: any UPDATE of `subscriptions`; a key's revocation) takes the tenant's counter rows in its
# own transaction and clears their `checked_revision`: it commits only after the admissions that
# hold or wait ahead of it for a row, and an admission waiting behind it finds the row cleared
# (README, "Why the gate never over-admits"). A trigger, so that no writer, present or future, can
# leave it out. SQLite needs none: its write lock, taken at BEGIN IMMEDIATE, orders everything.
PG_UP = [
    """CREATE OR REPLACE FUNCTION agentbilling_gate_fence() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE usage_counters SET checked_revision = NULL WHERE tenant_id = NEW.tenant_id;
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER subscriptions_gate_fence AFTER UPDATE ON subscriptions"
    " FOR EACH ROW EXECUTE FUNCTION agentbilling_gate_fence()",
    "CREATE TRIGGER api_keys_gate_fence AFTER UPDATE OF revoked_at ON api_keys"
    " FOR EACH ROW EXECUTE FUNCTION agentbilling_gate_fence()",
]
PG_DOWN = [
    "DROP TRIGGER IF EXISTS api_keys_gate_fence ON api_keys",
    "DROP TRIGGER IF EXISTS subscriptions_gate_fence ON subscriptions",
    "DROP FUNCTION IF EXISTS agentbilling_gate_fence()",
]


def upgrade() -> None:
    with op.batch_alter_table('usage_counters') as batch_op:
        batch_op.add_column(sa.Column('checked_revision', sa.BigInteger(), nullable=True))
    if op.get_bind().dialect.name == 'postgresql':
        for statement in PG_UP:
            op.execute(statement)
    op.create_index('ix_idempotency_keys_created_at', 'idempotency_keys', ['created_at'])
    op.create_table(
        'tenant_leases',
        sa.Column('tenant_id', sa.String(length=64), nullable=False),
        sa.Column('holder', sa.String(length=32), nullable=False),
        sa.Column('expires_at', UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_tenant_leases')),
    )


def downgrade() -> None:
    op.drop_table('tenant_leases')
    op.drop_index('ix_idempotency_keys_created_at', table_name='idempotency_keys')
    if op.get_bind().dialect.name == 'postgresql':
        for statement in PG_DOWN:
            op.execute(statement)
    with op.batch_alter_table('usage_counters') as batch_op:
        batch_op.drop_column('checked_revision')
