"""timed jobs and their runs

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('timed_job',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('target', sa.JSON(), nullable=False),
    sa.Column('variables', sa.JSON(), nullable=False),
    sa.Column('secret_values', sa.Text(), nullable=True),
    sa.Column('schedule', sa.JSON(), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('start_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('end_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('disabled_reason', sa.Text(), nullable=True),
    sa.Column('overlap', sa.String(length=8), nullable=False),
    sa.Column('misfire_grace', sa.Integer(), nullable=False),
    sa.Column('notify_after_failures', sa.Integer(), nullable=True),
    sa.Column('schedule_since', sa.DateTime(timezone=True), nullable=False),
    sa.Column('trigger_secret_hash', sa.String(length=64), nullable=True),
    sa.Column('run_as_id', sa.Integer(), nullable=True),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_as_id'], ['app_user.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('project_id', 'name'),
    sa.UniqueConstraint('trigger_secret_hash')
    )
    with op.batch_alter_table('timed_job', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_timed_job_project_id'), ['project_id'], unique=False)

    op.create_table('timed_job_run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('timed_job_id', sa.Integer(), nullable=False),
    sa.Column('origin', sa.String(length=16), nullable=False),
    sa.Column('scheduled_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('fired_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('launched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('run_key', sa.String(length=255), nullable=True),
    sa.Column('triggered_by', sa.String(length=64), nullable=False),
    sa.Column('job_instance_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['job_instance_id'], ['job_instance.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['timed_job_id'], ['timed_job.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('timed_job_id', 'origin', 'scheduled_at', name='uq_timed_job_run_fire'),
    sa.UniqueConstraint('timed_job_id', 'run_key', name='uq_timed_job_run_key')
    )
    with op.batch_alter_table('timed_job_run', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_timed_job_run_job_instance_id'), ['job_instance_id'], unique=False)
        batch_op.create_index('ix_timed_job_run_job_scheduled', ['timed_job_id', 'scheduled_at'], unique=False)
        batch_op.create_index('ix_timed_job_run_status', ['status'], unique=False)

    with op.batch_alter_table('job_instance', schema=None) as batch_op:
        batch_op.add_column(sa.Column('timed_job_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_job_instance_timed_job_id'), ['timed_job_id'], unique=False)
        batch_op.create_foreign_key(
            'fk_job_instance_timed_job_id_timed_job', 'timed_job', ['timed_job_id'], ['id'], ondelete='SET NULL'
        )



def downgrade():
    with op.batch_alter_table('job_instance', schema=None) as batch_op:
        batch_op.drop_constraint('fk_job_instance_timed_job_id_timed_job', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_job_instance_timed_job_id'))
        batch_op.drop_column('timed_job_id')

    with op.batch_alter_table('timed_job_run', schema=None) as batch_op:
        batch_op.drop_index('ix_timed_job_run_status')
        batch_op.drop_index('ix_timed_job_run_job_scheduled')
        batch_op.drop_index(batch_op.f('ix_timed_job_run_job_instance_id'))

    op.drop_table('timed_job_run')
    with op.batch_alter_table('timed_job', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_timed_job_project_id'))

    op.drop_table('timed_job')
