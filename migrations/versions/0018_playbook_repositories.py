"""playbook repositories: git and vault credentials, repositories and their revisions, step output

Revision ID: 0018
Revises: 0016
Create Date: 2026-12-02 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('credential',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('description', sa.String(length=4096), nullable=False),
    sa.Column('username', sa.String(length=255), nullable=True),
    sa.Column('private_key', sa.Text(), nullable=True),
    sa.Column('token', sa.Text(), nullable=True),
    sa.Column('password', sa.Text(), nullable=True),
    sa.Column('vault_id', sa.String(length=128), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('project_id', 'name')
    )
    with op.batch_alter_table('credential', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_credential_project_id'), ['project_id'], unique=False)

    op.create_table('repository',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('source_type', sa.String(length=16), nullable=False),
    sa.Column('url', sa.Text(), nullable=True),
    sa.Column('branch', sa.String(length=255), nullable=True),
    sa.Column('credential_id', sa.Integer(), nullable=True),
    sa.Column('archive_sha256', sa.String(length=64), nullable=True),
    sa.Column('archive_size', sa.BigInteger(), nullable=True),
    sa.Column('archive_uploaded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('archive_uploaded_by', sa.String(length=64), nullable=True),
    sa.Column('sync_on_launch', sa.Boolean(), nullable=False),
    sa.Column('sync_cache_seconds', sa.Integer(), nullable=False),
    sa.Column('current_revision_id', sa.Integer(), nullable=True),
    sa.Column('last_sync_job_id', sa.Integer(), nullable=True),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['credential_id'], ['credential.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['last_sync_job_id'], ['job_instance.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('project_id', 'name')
    )
    with op.batch_alter_table('repository', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_repository_credential_id'), ['credential_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_repository_project_id'), ['project_id'], unique=False)

    op.create_table('repository_revision',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('repository_id', sa.Integer(), nullable=False),
    sa.Column('revision', sa.String(length=64), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('synced_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('synced_by', sa.String(length=64), nullable=False),
    sa.Column('job_instance_id', sa.Integer(), nullable=True),
    sa.Column('log', sa.Text(), nullable=False),
    sa.Column('discovery', sa.JSON(), nullable=False),
    sa.Column('requirements', sa.JSON(), nullable=False),
    sa.Column('file_count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['job_instance_id'], ['job_instance.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['repository_id'], ['repository.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('repository_id', 'revision')
    )
    with op.batch_alter_table('repository_revision', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_repository_revision_repository_id'), ['repository_id'], unique=False)

    # In place: recreating step_instance on SQLite would delete its slices and results through their cascades.
    op.add_column('step_instance', sa.Column('output', sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table('step_instance', schema=None) as batch_op:
        batch_op.drop_column('output')

    with op.batch_alter_table('repository_revision', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_repository_revision_repository_id'))
    op.drop_table('repository_revision')
    with op.batch_alter_table('repository', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_repository_project_id'))
        batch_op.drop_index(batch_op.f('ix_repository_credential_id'))
    op.drop_table('repository')

    with op.batch_alter_table('credential', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_credential_project_id'))
    op.drop_table('credential')
