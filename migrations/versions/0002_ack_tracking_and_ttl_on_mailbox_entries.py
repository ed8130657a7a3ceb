"""ack tracking and ttl on mailbox entries

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 22:04:34.572543
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('mailbox_entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('requires_ack', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_mailbox_entries_state_expires_at', ['state', 'expires_at'], unique=False)
        batch_op.create_index('ix_mailbox_entries_state_next_attempt_at', ['state', 'next_attempt_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('mailbox_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_mailbox_entries_state_next_attempt_at')
        batch_op.drop_index('ix_mailbox_entries_state_expires_at')
        batch_op.drop_column('expires_at')
        batch_op.drop_column('next_attempt_at')
        batch_op.drop_column('requires_ack')

