"""journey run: the event that started it (for the trigger path's event-to-send latency)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 05:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('journey_run', schema=None) as batch_op:
        batch_op.add_column(sa.Column('trigger_event_id', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('journey_run', schema=None) as batch_op:
        batch_op.drop_column('trigger_event_id')
