"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-24 21:19:51.923919
"""
import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('messages',
    sa.Column('message_id', sa.String(length=128), nullable=False),
    sa.Column('from_sandbox', sa.String(length=128), nullable=False),
    sa.Column('to_sandbox', sa.String(length=128), nullable=False),
    sa.Column('from_agent', sa.String(length=128), nullable=False),
    sa.Column('to_agent', sa.String(length=128), nullable=False),
    sa.Column('message_type', sa.String(length=16), nullable=False),
    sa.Column('content', sa.JSON(), nullable=False),
    sa.Column('timestamp', sa.Float(), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('requires_response', sa.Boolean(), nullable=False),
    sa.Column('correlation_id', sa.String(length=128), nullable=True),
    sa.Column('ttl', sa.Integer(), nullable=True),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('routed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('message_id', name=op.f('pk_messages'))
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_messages_correlation_id'), ['correlation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_from_sandbox'), ['from_sandbox'], unique=False)
        batch_op.create_index('ix_messages_status_created_at', ['status', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_to_sandbox'), ['to_sandbox'], unique=False)

    op.create_table('sandboxes',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('workspace', sa.String(length=128), nullable=False),
    sa.Column('agents', sa.JSON(), nullable=False),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('head_seq', sa.BigInteger(), nullable=False),
    sa.Column('last_heartbeat', sa.DateTime(timezone=True), nullable=True),
    sa.Column('registered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('unregistered_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sandboxes'))
    )
    with op.batch_alter_table('sandboxes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sandboxes_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_sandboxes_workspace'), ['workspace'], unique=False)

    op.create_table('dead_letters',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('message_id', sa.String(length=128), nullable=False),
    sa.Column('sandbox_id', sa.String(length=128), nullable=True),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['messages.message_id'], name=op.f('fk_dead_letters_message_id_messages')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dead_letters')),
    sa.UniqueConstraint('message_id', 'sandbox_id', 'reason', name=op.f('uq_dead_letters_message_id_sandbox_id_reason'))
    )
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dead_letters_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_dead_letters_message_id'), ['message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_dead_letters_reason'), ['reason'], unique=False)
        batch_op.create_index(batch_op.f('ix_dead_letters_sandbox_id'), ['sandbox_id'], unique=False)

    op.create_table('mailbox_entries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('sandbox_id', sa.String(length=128), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('message_id', sa.String(length=128), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('acked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['message_id'], ['messages.message_id'],
                            name=op.f('fk_mailbox_entries_message_id_messages')),
    sa.ForeignKeyConstraint(['sandbox_id'], ['sandboxes.id'], name=op.f('fk_mailbox_entries_sandbox_id_sandboxes')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mailbox_entries')),
    sa.UniqueConstraint('message_id', 'sandbox_id', name=op.f('uq_mailbox_entries_message_id_sandbox_id')),
    sa.UniqueConstraint('sandbox_id', 'seq', name=op.f('uq_mailbox_entries_sandbox_id_seq'))
    )
    with op.batch_alter_table('mailbox_entries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mailbox_entries_message_id'), ['message_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('mailbox_entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mailbox_entries_message_id'))

    op.drop_table('mailbox_entries')
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dead_letters_sandbox_id'))
        batch_op.drop_index(batch_op.f('ix_dead_letters_reason'))
        batch_op.drop_index(batch_op.f('ix_dead_letters_message_id'))
        batch_op.drop_index(batch_op.f('ix_dead_letters_created_at'))

    op.drop_table('dead_letters')
    with op.batch_alter_table('sandboxes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sandboxes_workspace'))
        batch_op.drop_index(batch_op.f('ix_sandboxes_status'))

    op.drop_table('sandboxes')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_messages_to_sandbox'))
        batch_op.drop_index('ix_messages_status_created_at')
        batch_op.drop_index(batch_op.f('ix_messages_from_sandbox'))
        batch_op.drop_index(batch_op.f('ix_messages_correlation_id'))

    op.drop_table('messages')
