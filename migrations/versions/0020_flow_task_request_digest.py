"""flow tasks keep the digest of the request that created them: a key reused for another request is refused

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('flow_task', sa.Column('request_digest', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('flow_task', schema=None) as batch_op:
        batch_op.drop_column('request_digest')
