"""consent ledger: each contact's rows as a hash chain (seq, prev_hash, row_hash)

Existing rows are chained in the order they were written (by id), contact by contact.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 12:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tailor.consent.ledger import GENESIS, row_hash

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 5000


def upgrade() -> None:
    with op.batch_alter_table('consent_record', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seq', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('prev_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('row_hash', sa.String(length=64), nullable=True))
    _chain_existing_rows()
    with op.batch_alter_table('consent_record', schema=None) as batch_op:
        batch_op.alter_column('seq', existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column('prev_hash', existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column('row_hash', existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint('uq_consent_contact_seq', ['contact_id', 'seq'])
    # After the batch above (SQLite's batch mode copies the table, and its triggers with it would
    # be lost): a later migration that batch-alters this table must create these again.
    _make_ledger_append_only()


# Append-only in the database itself, as the audit log is; the chain shows what gets past this
# (someone who can drop a trigger).
_SQLITE_TRIGGERS = (
    "CREATE TRIGGER consent_record_no_update BEFORE UPDATE ON consent_record "
    "BEGIN SELECT RAISE(ABORT, 'consent_record is append-only'); END",
    "CREATE TRIGGER consent_record_no_delete BEFORE DELETE ON consent_record "
    "BEGIN SELECT RAISE(ABORT, 'consent_record is append-only'); END",
)
_POSTGRES_FUNCTION = (
    "CREATE FUNCTION consent_record_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN RAISE EXCEPTION 'consent_record is append-only'; END $$"
)
_POSTGRES_TRIGGER = (
    "CREATE TRIGGER consent_record_append_only BEFORE UPDATE OR DELETE OR TRUNCATE "
    "ON consent_record FOR EACH STATEMENT EXECUTE FUNCTION consent_record_append_only()"
)


def _make_ledger_append_only() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        for statement in _SQLITE_TRIGGERS:
            op.execute(statement)
    else:
        op.execute(_POSTGRES_FUNCTION)
        op.execute(_POSTGRES_TRIGGER)


def _chain_existing_rows() -> None:
    from tailor.models.base import UTCDateTime

    bind = op.get_bind()
    record = sa.table(
        'consent_record', sa.column('id', sa.Integer()), sa.column('tenant_id', sa.String()),
        sa.column('contact_id', sa.Integer()), sa.column('channel', sa.String()),
        sa.column('status', sa.String()), sa.column('source', sa.String()),
        sa.column('method', sa.String()), sa.column('wording_version', sa.String()),
        sa.column('recorded_by', sa.String()), sa.column('recorded_at', UTCDateTime()),
        sa.column('seq', sa.Integer()), sa.column('prev_hash', sa.String()),
        sa.column('row_hash', sa.String()),
    )  # fmt: skip
    update = (
        record.update()
        .where(record.c.id == sa.bindparam('row_id'))
        .values(seq=sa.bindparam('new_seq'), prev_hash=sa.bindparam('new_prev'),
                row_hash=sa.bindparam('new_hash'))
    )  # fmt: skip
    after = -1
    while True:  # a window of contacts at a time: a ledger may not fit in memory
        contacts = bind.execute(
            sa.select(record.c.contact_id).distinct().where(record.c.contact_id > after)
            .order_by(record.c.contact_id).limit(_BATCH)
        ).scalars().all()  # fmt: skip
        if not contacts:
            return
        after = contacts[-1]
        rows = bind.execute(
            sa.select(record).where(record.c.contact_id.in_(contacts))
            .order_by(record.c.contact_id, record.c.id)
        ).mappings().all()  # fmt: skip
        updates: list[dict[str, object]] = []
        contact, seq, prev = None, 0, GENESIS
        for row in rows:
            if row['contact_id'] != contact:
                contact, seq, prev = row['contact_id'], 0, GENESIS
            seq += 1
            chained = {**row, 'seq': seq, 'prev_hash': prev}
            updates.append({'row_id': row['id'], 'new_seq': seq, 'new_prev': prev,
                            'new_hash': row_hash(chained)})  # fmt: skip
            prev = str(updates[-1]['new_hash'])
        bind.execute(update, updates)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('DROP TRIGGER consent_record_no_update')
        op.execute('DROP TRIGGER consent_record_no_delete')
    else:
        op.execute('DROP TRIGGER consent_record_append_only ON consent_record')
        op.execute('DROP FUNCTION consent_record_append_only()')
    with op.batch_alter_table('consent_record', schema=None) as batch_op:
        batch_op.drop_constraint('uq_consent_contact_seq', type_='unique')
        batch_op.drop_column('row_hash')
        batch_op.drop_column('prev_hash')
        batch_op.drop_column('seq')
