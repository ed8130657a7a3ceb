"""conversation traces: each message's trace id, parent message and hop count

Messages stored before this revision have no trace (trace_id null, hops 0).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 14:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('trace_id', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('parent_id', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('hops', sa.Integer(), nullable=False, server_default='0'))
        batch_op.create_index(batch_op.f('ix_messages_trace_id'), ['trace_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_messages_trace_id'))
        batch_op.drop_column('hops')
        batch_op.drop_column('parent_id')
        batch_op.drop_column('trace_id')
