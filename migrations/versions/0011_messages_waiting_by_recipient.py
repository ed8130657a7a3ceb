"""direct delivery: the messages still waiting for their delivery task, found by recipient

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08 01:00:00
"""
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_messages_status_to_sandbox', 'messages', ['status', 'to_sandbox'])


def downgrade() -> None:
    op.drop_index('ix_messages_status_to_sandbox', table_name='messages')
