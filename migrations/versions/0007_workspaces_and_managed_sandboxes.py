"""workspaces as a resource of their own, managed sandboxes (desired and observed container state, lease), and
where each sandbox's latest socket connected

Every workspace name in use (by sandboxes, registrar keys and policies) becomes a workspace row; so does "default".

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 09:00:00
"""
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    workspaces = op.create_table('workspaces',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_workspaces'))
    )
    with op.batch_alter_table('sandboxes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('connected_node', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('connected_since', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('connected_address', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('managed', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('desired_state', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('state', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('state_reason', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('state_changed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('container_id', sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column('container_created_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('spec', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('lease_owner', sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_activity_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_sandboxes_state'), ['state'], unique=False)

    bind = op.get_bind()
    names = {"default"}
    for query in ("SELECT DISTINCT workspace FROM sandboxes",
                  "SELECT DISTINCT workspace FROM api_keys WHERE workspace IS NOT NULL",
                  "SELECT DISTINCT from_workspace FROM policies", "SELECT DISTINCT to_workspace FROM policies"):
        names.update(row[0] for row in bind.execute(sa.text(query)) if row[0] and row[0] != "*")
    now = datetime.now(UTC)
    op.bulk_insert(workspaces, [{'id': name, 'name': name, 'description': '', 'settings': {}, 'created_at': now,
                                 'updated_at': now} for name in sorted(names)])


def downgrade() -> None:
    with op.batch_alter_table('sandboxes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sandboxes_state'))
        for column in ('last_activity_at', 'lease_expires_at', 'lease_owner', 'spec', 'container_created_at',
                       'container_id',
                       'state_changed_at', 'state_reason', 'state', 'desired_state', 'managed',
                       'connected_address', 'connected_since', 'connected_node'):
            batch_op.drop_column(column)
    op.drop_table('workspaces')
