"""subscriptions.revision: bumped on every update, so the gate can check the standing it keeps

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 19:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('subscriptions') as batch_op:
        batch_op.add_column(sa.Column('revision', sa.BigInteger(), server_default=sa.text('1'), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('subscriptions') as batch_op:
        batch_op.drop_column('revision')
