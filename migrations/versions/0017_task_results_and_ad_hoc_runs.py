"""per-task results: role, changed and diff; ad-hoc runs

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade():
    # Added in place: task_result has no foreign key pointing at it, and a batch would copy the table.
    op.add_column('task_result', sa.Column('role', sa.String(length=255), nullable=True))
    op.add_column(
        'task_result', sa.Column('changed', sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column('task_result', sa.Column('diff', sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table('task_result', schema=None) as batch_op:
        batch_op.drop_column('diff')
        batch_op.drop_column('changed')
        batch_op.drop_column('role')
