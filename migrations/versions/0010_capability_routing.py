"""capability routing: when each sandbox was last chosen for a message to "any" agent with a skill

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 18:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sandboxes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_routed_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sandboxes', schema=None) as batch_op:
        batch_op.drop_column('last_routed_at')
