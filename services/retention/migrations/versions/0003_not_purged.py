"""Why the exchange confirmed a purge order without deleting anything

Revision ID: 0003
Revises: 0002

An order may reach the exchange after the requester reopened the request (rule P2): the exchange
keeps the data and confirms the order as not purged, with a short code (``request_open`` or
``not_due``). The item is settled, so the order is no longer sent again for it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("purge_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("not_purged", sa.String(length=30), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("purge_items", schema=None) as batch_op:
        batch_op.drop_column("not_purged")
