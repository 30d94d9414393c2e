"""timed jobs start flow tasks

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 10:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade():
    # Inline references add the columns in place: recreating flow_task on SQLite (as a batch would, with
    # foreign keys on) deletes every node state and attempt through their cascades.
    op.add_column(
        'flow_task',
        sa.Column('timed_job_id', sa.Integer(), sa.ForeignKey('timed_job.id', ondelete='SET NULL'), nullable=True),
        inline_references=True,
    )
    op.create_index(op.f('ix_flow_task_timed_job_id'), 'flow_task', ['timed_job_id'], unique=False)
    op.add_column(
        'timed_job_run',
        sa.Column('flow_task_id', sa.Integer(), sa.ForeignKey('flow_task.id', ondelete='SET NULL'), nullable=True),
        inline_references=True,
    )


def downgrade():
    with op.batch_alter_table('timed_job_run', schema=None) as batch_op:
        batch_op.drop_column('flow_task_id')

    op.drop_index(op.f('ix_flow_task_timed_job_id'), table_name='flow_task')
    with op.batch_alter_table('flow_task', schema=None) as batch_op:
        batch_op.drop_column('timed_job_id')
