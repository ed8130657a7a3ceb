"""topics: a message's topic, sandboxes' durable subscriptions, and policy rules that name topics

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 14:20:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('subscriptions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('sandbox_id', sa.String(length=128), nullable=False),
    sa.Column('pattern', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['sandbox_id'], ['sandboxes.id'], name=op.f('fk_subscriptions_sandbox_id_sandboxes')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscriptions')),
    sa.UniqueConstraint('sandbox_id', 'pattern', name=op.f('uq_subscriptions_sandbox_id_pattern'))
    )
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subscriptions_sandbox_id'), ['sandbox_id'], unique=False)
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('topic', sa.String(length=255), nullable=True))
    with op.batch_alter_table('policies', schema=None) as batch_op:
        batch_op.add_column(sa.Column('topics', sa.JSON(), nullable=False, server_default='[]'))


def downgrade() -> None:
    with op.batch_alter_table('policies', schema=None) as batch_op:
        batch_op.drop_column('topics')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('topic')
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subscriptions_sandbox_id'))
    op.drop_table('subscriptions')
