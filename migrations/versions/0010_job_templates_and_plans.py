"""job templates and plans, step operations, rolling execution

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-21 14:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('job_template',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('variables', sa.JSON(), nullable=False),
    sa.Column('secret_defaults', sa.Text(), nullable=True),
    sa.Column('steps', sa.JSON(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('project_id', 'name')
    )
    with op.batch_alter_table('job_template', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_template_project_id'), ['project_id'], unique=False)

    op.create_table('job_plan',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('template_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('steps', sa.JSON(), nullable=False),
    sa.Column('variables', sa.JSON(), nullable=False),
    sa.Column('template_versions', sa.JSON(), nullable=False),
    sa.Column('enabled_steps', sa.JSON(), nullable=False),
    sa.Column('values', sa.JSON(), nullable=False),
    sa.Column('secret_values', sa.Text(), nullable=True),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['template_id'], ['job_template.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('project_id', 'name')
    )
    with op.batch_alter_table('job_plan', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_plan_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_job_plan_template_id'), ['template_id'], unique=False)

    with op.batch_alter_table('job_instance', schema=None) as batch_op:
        batch_op.add_column(sa.Column('template_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('plan_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('variables', sa.JSON(), server_default='{}', nullable=False))
        batch_op.add_column(sa.Column('secret_variables', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('callback_url', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('idempotency_key', sa.String(length=255), nullable=True))
        batch_op.create_index(batch_op.f('ix_job_instance_template_id'), ['template_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_job_instance_plan_id'), ['plan_id'], unique=False)
        batch_op.create_unique_constraint(
            'uq_job_instance_project_id_idempotency_key', ['project_id', 'idempotency_key']
        )
        batch_op.create_foreign_key(
            'fk_job_instance_template_id_job_template', 'job_template', ['template_id'], ['id'],
            ondelete='SET NULL',
        )
        batch_op.create_foreign_key(
            'fk_job_instance_plan_id_job_plan', 'job_plan', ['plan_id'], ['id'], ondelete='SET NULL'
        )

    with op.batch_alter_table('step_instance', schema=None) as batch_op:
        batch_op.add_column(sa.Column('template_step', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('on_failure', sa.String(length=16), server_default='stop', nullable=False))
        batch_op.add_column(sa.Column('batches', sa.JSON(), server_default='[]', nullable=False))
        batch_op.add_column(sa.Column('rolling_mode', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('current_batch', sa.Integer(), server_default='0', nullable=False))

    with op.batch_alter_table('step_slice', schema=None) as batch_op:
        batch_op.add_column(sa.Column('batch', sa.Integer(), server_default='1', nullable=False))
        batch_op.add_column(sa.Column('queued_at', sa.DateTime(timezone=True), nullable=True))

    # Slices launched before went on the queue with their step; fetch steps of a transfer went on.
    op.execute(
        'UPDATE step_slice SET queued_at = '
        '(SELECT dispatched_at FROM step_instance WHERE step_instance.id = step_slice.step_instance_id)'
    )
    op.execute("UPDATE step_instance SET on_failure = 'continue' WHERE kind = 'file_fetch'")
    op.execute('UPDATE step_instance SET current_batch = 1 WHERE dispatched_at IS NOT NULL')

    op.create_table('job_operation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_instance_id', sa.Integer(), nullable=False),
    sa.Column('step_instance_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_instance_id'], ['job_instance.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['step_instance_id'], ['step_instance.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('job_operation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_operation_job_instance_id'), ['job_instance_id'], unique=False)

    op.create_table('namespace_value',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_instance_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('host_name', sa.String(length=255), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('step_instance_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['job_instance_id'], ['job_instance.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['step_instance_id'], ['step_instance.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job_instance_id', 'name', 'host_name')
    )


def downgrade():
    op.drop_table('namespace_value')
    with op.batch_alter_table('job_operation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_operation_job_instance_id'))
    op.drop_table('job_operation')

    with op.batch_alter_table('step_slice', schema=None) as batch_op:
        batch_op.drop_column('queued_at')
        batch_op.drop_column('batch')

    with op.batch_alter_table('step_instance', schema=None) as batch_op:
        batch_op.drop_column('current_batch')
        batch_op.drop_column('rolling_mode')
        batch_op.drop_column('batches')
        batch_op.drop_column('on_failure')
        batch_op.drop_column('template_step')

    with op.batch_alter_table('job_instance', schema=None) as batch_op:
        batch_op.drop_constraint('fk_job_instance_plan_id_job_plan', type_='foreignkey')
        batch_op.drop_constraint('fk_job_instance_template_id_job_template', type_='foreignkey')
        batch_op.drop_constraint('uq_job_instance_project_id_idempotency_key', type_='unique')
        batch_op.drop_index(batch_op.f('ix_job_instance_plan_id'))
        batch_op.drop_index(batch_op.f('ix_job_instance_template_id'))
        batch_op.drop_column('idempotency_key')
        batch_op.drop_column('callback_url')
        batch_op.drop_column('secret_variables')
        batch_op.drop_column('variables')
        batch_op.drop_column('plan_id')
        batch_op.drop_column('template_id')

    with op.batch_alter_table('job_plan', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_plan_template_id'))
        batch_op.drop_index(batch_op.f('ix_job_plan_project_id'))
    op.drop_table('job_plan')
    with op.batch_alter_table('job_template', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_template_project_id'))
    op.drop_table('job_template')
