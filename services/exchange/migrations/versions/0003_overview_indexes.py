"""Indexes for the sent and received overviews, newest first

Revision ID: 0003
Revises: 0002

An authority's overview is ordered by ``created_at DESC, id DESC`` and shows one page; with these
indexes PostgreSQL reads the page's rows backwards from the index and stops, instead of fetching
and sorting every request the authority ever sent or received (the largest of a million: 75 ms
to 7 ms, see bench/findings/exchange.md).
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.create_index(
            "ix_requests_requesting_created", ["requesting_authority_id", "created_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_requests_responding_created", ["responding_authority_id", "created_at", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_index("ix_requests_responding_created")
        batch_op.drop_index("ix_requests_requesting_created")
