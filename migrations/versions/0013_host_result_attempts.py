"""host results keep every attempt: attempt number and latest flag

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 09:00:00.000000

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# 0001 left the constraint unnamed: SQLite reflects it without a name, PostgreSQL named it itself.
UNNAMED = {"uq": "uq_%(table_name)s_%(column_0_N_name)s"}


def old_unique_name():
    if op.get_bind().dialect.name == "postgresql":
        return "host_result_step_instance_id_host_name_key"
    return "uq_host_result_step_instance_id_host_name"


def upgrade():
    name = old_unique_name()
    with op.batch_alter_table("host_result", schema=None, naming_convention=UNNAMED) as batch_op:
        batch_op.add_column(sa.Column("attempt", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("latest", sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.drop_constraint(name, type_="unique")
        batch_op.create_unique_constraint(
            "uq_host_result_step_host_attempt", ["step_instance_id", "host_name", "attempt"]
        )


def downgrade():
    op.execute(sa.text("DELETE FROM host_result WHERE NOT latest"))
    with op.batch_alter_table("host_result", schema=None) as batch_op:
        batch_op.drop_constraint("uq_host_result_step_host_attempt", type_="unique")
        batch_op.create_unique_constraint(old_unique_name(), ["step_instance_id", "host_name"])
        batch_op.drop_column("latest")
        batch_op.drop_column("attempt")
