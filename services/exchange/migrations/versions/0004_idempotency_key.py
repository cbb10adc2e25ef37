"""Idempotency-Key of POST /requests

Revision ID: 0004
Revises: 0003

A client that lost the answer to POST /requests (a timeout, a restart on the way) sends it again
with the same Idempotency-Key and gets the draft the first call wrote: the key is kept per
requesting user, unique, and empty for drafts written without one.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("idempotency_key", sa.String(length=100), nullable=True))
        batch_op.create_index("uq_requests_idempotency", ["requester_user_id", "idempotency_key"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_index("uq_requests_idempotency")
        batch_op.drop_column("idempotency_key")
