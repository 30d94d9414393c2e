"""execution history

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-21 11:27:45.467772

"""
import hashlib

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

# blake2b-128 of the empty output, as app.models.job.EMPTY_OUTPUT_DIGEST.
EMPTY_OUTPUT_DIGEST = hashlib.blake2b(b"", digest_size=16).hexdigest()


def upgrade():
    with op.batch_alter_table('host_result', schema=None) as batch_op:
        batch_op.add_column(sa.Column(
            'output_digest', sa.String(length=32), nullable=False, server_default=EMPTY_OUTPUT_DIGEST
        ))
        batch_op.create_index('ix_host_result_address', ['address'], unique=False)
        batch_op.create_index('ix_host_result_host_name', ['host_name'], unique=False)

    # Results recorded before: their digest is computed here, in batches.
    connection = op.get_bind()
    results = sa.table('host_result', sa.column('id', sa.Integer), sa.column('stdout', sa.Text),
                       sa.column('output_digest', sa.String))
    last_id = 0
    while True:
        rows = connection.execute(
            sa.select(results.c.id, results.c.stdout)
            .where(results.c.id > last_id, results.c.stdout != '')
            .order_by(results.c.id).limit(1000)
        ).all()
        if not rows:
            break
        connection.execute(
            results.update().where(results.c.id == sa.bindparam('rid')).values(output_digest=sa.bindparam('digest')),
            [{'rid': id, 'digest': hashlib.blake2b(stdout.encode(), digest_size=16).hexdigest()}
             for id, stdout in rows],
        )
        last_id = rows[-1][0]

    with op.batch_alter_table('job_instance', schema=None) as batch_op:
        batch_op.add_column(sa.Column('launch_type', sa.String(length=16), nullable=False, server_default='api'))
        batch_op.add_column(sa.Column('relaunch_of_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('request', sa.JSON(), nullable=False, server_default='{}'))
        batch_op.create_index('ix_job_instance_project_launcher_created', ['project_id', 'launched_by', 'created_at'], unique=False)
        batch_op.create_index('ix_job_instance_project_status_created', ['project_id', 'status', 'created_at'], unique=False)
        batch_op.create_index('ix_job_instance_project_type_created', ['project_id', 'launch_type', 'created_at'], unique=False)
        batch_op.create_foreign_key(
            'fk_job_instance_relaunch_of_id', 'job_instance', ['relaunch_of_id'], ['id'], ondelete='SET NULL'
        )
    trigram_index_on_names()


def trigram_index_on_names():
    """On PostgreSQL, a search by part of a job name uses a trigram index when pg_trgm can be had."""
    connection = op.get_bind()
    if connection.dialect.name != 'postgresql':
        return
    try:
        with connection.begin_nested():
            connection.exec_driver_sql('CREATE EXTENSION IF NOT EXISTS pg_trgm')
    except sa.exc.DBAPIError:
        return  # without it, such a search reads the project's whole history
    op.create_index(
        'ix_job_instance_name_trgm', 'job_instance', ['name'],
        postgresql_using='gin', postgresql_ops={'name': 'gin_trgm_ops'},
    )


def downgrade():
    op.execute('DROP INDEX IF EXISTS ix_job_instance_name_trgm')
    with op.batch_alter_table('job_instance', schema=None) as batch_op:
        batch_op.drop_constraint('fk_job_instance_relaunch_of_id', type_='foreignkey')
        batch_op.drop_index('ix_job_instance_project_type_created')
        batch_op.drop_index('ix_job_instance_project_status_created')
        batch_op.drop_index('ix_job_instance_project_launcher_created')
        batch_op.drop_column('request')
        batch_op.drop_column('relaunch_of_id')
        batch_op.drop_column('launch_type')

    with op.batch_alter_table('host_result', schema=None) as batch_op:
        batch_op.drop_index('ix_host_result_host_name')
        batch_op.drop_index('ix_host_result_address')
        batch_op.drop_column('output_digest')
