"""node states are guarded by their task's version: every transition writes the task row

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('flow_node_state', schema=None) as batch_op:
        batch_op.drop_column('version')


def downgrade():
    with op.batch_alter_table('flow_node_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('version', sa.Integer(), nullable=False, server_default='1'))
