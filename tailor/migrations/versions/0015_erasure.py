"""erasure: erasures asked for and done, erased addresses as salted hashes, contact.erased_at

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 12:30:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tailor.models.base import UTCDateTime

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'erasure',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('tenant_id', sa.String(length=64), nullable=False),
        sa.Column('contact_id', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('requested_by', sa.String(length=200), nullable=False),
        sa.Column('requested_at', UTCDateTime(), nullable=False),
        sa.Column('completed_at', UTCDateTime(), nullable=True),
        sa.Column('counts', sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(['contact_id'], ['contact.id']),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenant.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('tenant_id', 'contact_id', name='uq_erasure_contact'),
    )
    op.create_index(op.f('ix_erasure_tenant_id'), 'erasure', ['tenant_id'], unique=False)
    op.create_table(
        'erased_address',
        sa.Column('tenant_id', sa.String(length=64), nullable=False),
        sa.Column('address_hash', sa.String(length=64), nullable=False),
        sa.Column('erased_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenant.id']),
        sa.PrimaryKeyConstraint('tenant_id', 'address_hash'),
    )
    op.create_table(
        'erasure_salt',
        sa.Column('tenant_id', sa.String(length=64), nullable=False),
        sa.Column('salt', sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenant.id']),
        sa.PrimaryKeyConstraint('tenant_id'),
    )
    with op.batch_alter_table('contact', schema=None) as batch_op:
        batch_op.add_column(sa.Column('erased_at', UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('contact', schema=None) as batch_op:
        batch_op.drop_column('erased_at')
    op.drop_table('erasure_salt')
    op.drop_table('erased_address')
    op.drop_index(op.f('ix_erasure_tenant_id'), table_name='erasure')
    op.drop_table('erasure')
