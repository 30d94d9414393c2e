"""partial indexes of the job instances that hold a place in their project's limit and of those held back

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-01 20:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None

HOLDING_PLACE = "dispatched_at IS NOT NULL AND status IN ('running', 'stopping', 'waiting')"
HELD = "dispatched_at IS NULL AND status = 'waiting'"


def upgrade():
    op.create_index(
        'ix_job_instance_project_holding_place', 'job_instance', ['project_id'],
        sqlite_where=sa.text(HOLDING_PLACE), postgresql_where=sa.text(HOLDING_PLACE),
    )
    op.create_index(
        'ix_job_instance_project_held', 'job_instance', ['project_id', 'id'],
        sqlite_where=sa.text(HELD), postgresql_where=sa.text(HELD),
    )


def downgrade():
    op.drop_index('ix_job_instance_project_held', table_name='job_instance')
    op.drop_index('ix_job_instance_project_holding_place', table_name='job_instance')
