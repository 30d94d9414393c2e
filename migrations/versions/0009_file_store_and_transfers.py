"""file store and transfers

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-21 11:49:34.600567

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('stored_file',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('storage_name', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('sha1', sa.String(length=40), nullable=False),
    sa.Column('uploaded_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('storage_name')
    )
    with op.batch_alter_table('stored_file', schema=None) as batch_op:
        batch_op.create_index('ix_stored_file_project_created', ['project_id', 'created_at'], unique=False)

    op.create_table('file_result',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_instance_id', sa.Integer(), nullable=False),
    sa.Column('step_instance_id', sa.Integer(), nullable=False),
    sa.Column('host_result_id', sa.Integer(), nullable=False),
    sa.Column('host_name', sa.String(length=255), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('source', sa.String(length=255), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('checksum_verified', sa.Boolean(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['host_result_id'], ['host_result.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_instance_id'], ['job_instance.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['step_instance_id'], ['step_instance.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('host_result_id', 'seq')
    )
    with op.batch_alter_table('file_result', schema=None) as batch_op:
        batch_op.create_index('ix_file_result_job', ['job_instance_id'], unique=False)
        batch_op.create_index('ix_file_result_step_host', ['step_instance_id', 'host_name'], unique=False)

    with op.batch_alter_table('step_instance', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True))

    # Steps launched before went on the queue with their job instance.
    op.execute(
        'UPDATE step_instance SET dispatched_at = '
        '(SELECT dispatched_at FROM job_instance WHERE job_instance.id = step_instance.job_instance_id)'
    )


def downgrade():
    with op.batch_alter_table('step_instance', schema=None) as batch_op:
        batch_op.drop_column('dispatched_at')

    with op.batch_alter_table('file_result', schema=None) as batch_op:
        batch_op.drop_index('ix_file_result_step_host')
        batch_op.drop_index('ix_file_result_job')

    op.drop_table('file_result')
    with op.batch_alter_table('stored_file', schema=None) as batch_op:
        batch_op.drop_index('ix_stored_file_project_created')

    op.drop_table('stored_file')
