"""The consent ledger as an auditor checks it: each contact's rows a hash chain, exported per
tenant and period, verified by ``tailor consent verify`` in the database or in an export file.

Tampering is done as someone with database access would: the append-only triggers dropped or
bypassed, then a row edited, deleted, or a chain cut and rewritten. Each is caught and named.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from alembic import command
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import col

from api.main import create_app
from tailor.cli.main import main as tailor_main
from tailor.consent.ledger import GENESIS, ChainCheck, LedgerEntry, chain, row_hash
from tailor.consent.ledger_export import read_export
from tailor.db import Database, alembic_config
from tailor.demo.seed import seed_demo
from tailor.models import ConsentRecord, ConsentStatus, utcnow
from tailor.store.consent import (
    append_to_ledger,
    record_consent,
    revoke_consent,
    suppress_addresses,
)
from tailor.store.esp_events import LedgerChange, append_consent_changes
from tests.conftest import POSTGRES_ADMIN_URL, _admin, key_headers, other_tenant_headers
from tests.test_contacts import app_settings


def _entry(contact_id: int, status: str = "granted", **kw: object) -> LedgerEntry:
    fields: dict[str, object] = {
        "tenant_id": "demo", "contact_id": contact_id, "status": status, "source": "api",
        "method": "form", "wording_version": "v1", "recorded_by": "key:1",
        "recorded_at": utcnow(),
    }  # fmt: skip
    return LedgerEntry(**(fields | kw))  # type: ignore[arg-type]


def _check(rows: list[dict[str, object]], **kw: object) -> list[str]:
    check = ChainCheck(**kw)  # type: ignore[arg-type]
    for row in rows:
        check.add(row)
    return [str(p) for p in check.finish()]


def test_a_chain_links_each_row_to_the_one_before_and_any_change_shows() -> None:
    rows = chain([_entry(1), _entry(2), _entry(1, "revoked"), _entry(1, "granted")], {})
    rows.sort(key=lambda r: (r["contact_id"], r["seq"]))
    assert [(r["contact_id"], r["seq"]) for r in rows] == [(1, 1), (1, 2), (1, 3), (2, 1)]
    assert rows[0]["prev_hash"] == GENESIS and rows[1]["prev_hash"] == rows[0]["row_hash"]
    assert _check(rows) == []

    edited = [dict(r) for r in rows]
    edited[1]["status"] = "granted"  # a revocation turned into consent
    assert _check(edited) == ["contact 1, row 2: its content does not match its hash (edited)"]

    rehashed = [dict(r) for r in edited]
    rehashed[1]["row_hash"] = row_hash(rehashed[1])  # ... and its hash made to fit
    assert _check(rehashed) == ["contact 1, row 3: does not follow row 2 (inserted or edited)"]

    assert _check(rows[:1] + rows[2:]) == ["contact 1, row 3: row 2 is missing"]
    assert _check(rows[1:]) == ["contact 1, row 2: the rows before it are missing"]
    assert _check(rows[1:], anchored=False) == []  # a period's export starts mid-chain
    assert _check([rows[1], rows[0], *rows[2:]]) == [
        "contact 1, row 2: the rows before it are missing",
        "contact 1, row 1: out of order after row 2",
    ]


def test_an_earlier_exports_heads_show_a_cut_or_rewritten_chain() -> None:
    rows = chain([_entry(1), _entry(1, "revoked"), _entry(2)], {})
    heads = ChainCheck()
    for row in rows:
        heads.add(row)
    assert _check(rows, expected=heads.heads) == []

    # The newest row of contact 1 removed: the chain alone is whole.
    cut = [r for r in rows if not (r["contact_id"] == 1 and r["seq"] == 2)]
    assert _check(cut) == []
    assert _check(cut, expected=heads.heads) == [
        "contact 1, row 2: was in the earlier export and is gone"
    ]
    # Contact 1's chain rewritten from its first row with fresh hashes: whole, but not the same.
    rewritten = chain([_entry(1, source="forged"), _entry(1, "granted"), _entry(2)], {})
    assert _check(rewritten) == []
    assert "differs from the earlier export (rewritten)" in " ".join(
        _check(rewritten, expected=heads.heads)
    )


def test_the_hash_is_documented_plain_sha256_over_canonical_json() -> None:
    """An auditor recomputes it without Tailor, from docs/compliance.md's description."""
    import hashlib

    (row,) = chain([_entry(5, source="signup-form", recorded_by="kéy")], {})
    names = ("tenant_id", "contact_id", "seq", "channel", "status", "source", "method",
             "wording_version", "recorded_by", "prev_hash")  # fmt: skip
    form = {k: row[k] for k in names}
    form["recorded_at"] = row["recorded_at"].isoformat(timespec="microseconds")
    form["v"] = 1
    canonical = json.dumps(form, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(canonical.encode()).hexdigest() == row["row_hash"]
    assert "hashed" in Path("docs/compliance.md").read_text()


async def _ledger(db: Database) -> list[dict[str, object]]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(ConsentRecord).order_by(col(ConsentRecord.contact_id), col(ConsentRecord.seq))
        )
        return [dict(r) for r in rows.mappings()]


async def _every_writer(db: Database) -> list[int]:
    """Rows appended the ways Tailor appends them: imports (the seed), the API's change and
    revocation, a provider's refusal, and an ESP's unsubscribe event. Returns the contacts."""
    await seed_demo(db, contacts=6)
    async with db.read() as conn:
        contacts = sorted(
            (await conn.execute(text("SELECT id FROM contact ORDER BY id"))).scalars()
        )
    async with db.session() as session:
        for contact in contacts[:3]:
            await record_consent(
                session=session, tenant_id="demo", contact_id=contact,
                status=ConsentStatus.GRANTED, source="api", method="form",
                wording_version="v2", recorded_by="key:abc",
            )  # fmt: skip
        await revoke_consent(
            session=session, tenant_id="demo", contact_id=contacts[0], source="api",
            method="api", wording_version="-", recorded_by="key:abc",
        )  # fmt: skip
    async with db.write() as conn:
        await suppress_addresses(
            conn, tenant_id="demo", contact_ids=contacts[1:3], source="sendgrid:bounce"
        )
        await append_consent_changes(
            conn,
            changes=[
                LedgerChange(
                    tenant_id="demo",
                    contact_id=contacts[3],
                    status=ConsentStatus.REVOKED,
                    source="sendgrid:unsubscribe",
                    method="esp-event",
                    recorded_by="system:webhooks",
                )
            ],  # fmt: skip
        )
    return contacts


def _cli(*argv: str) -> int:
    with pytest.raises(SystemExit) as stopped:
        tailor_main(list(argv))
    return int(stopped.value.code or 0)


async def _in_thread(*argv: str) -> int:
    """The CLI runs its own event loop: a thread of its own, as a shell would."""
    return await asyncio.to_thread(_cli, *argv)


async def _tamper(db: Database, *statements: str) -> None:
    """As someone with database access: past the append-only triggers."""
    async with db.write() as conn:
        if db.sqlite:
            await conn.exec_driver_sql("DROP TRIGGER IF EXISTS consent_record_no_update")
            await conn.exec_driver_sql("DROP TRIGGER IF EXISTS consent_record_no_delete")
        else:
            await conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        for statement in statements:
            await conn.exec_driver_sql(statement)


async def test_every_writer_extends_the_chain_and_verify_catches_tampering(
    db: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TAILOR_DATABASE_URL", db.url)
    contacts = await _every_writer(db)
    rows = await _ledger(db)
    by_contact = {c: [r for r in rows if r["contact_id"] == c] for c in contacts}
    for found in by_contact.values():
        assert [r["seq"] for r in found] == list(range(1, len(found) + 1))
    assert by_contact[contacts[0]][-1]["status"] == "revoked"
    assert by_contact[contacts[1]][-1]["status"] == "suppressed"
    assert by_contact[contacts[3]][-1]["status"] == "revoked"
    assert _check(rows) == []

    assert await _in_thread("consent", "verify") == 0
    assert "every chain is whole" in capsys.readouterr().err
    earlier = tmp_path / "earlier.json"
    assert await _in_thread("consent", "export", "--tenant", "demo", "--output", str(earlier)) == 0
    assert len(read_export(earlier).rows) == len(rows)
    assert await _in_thread("consent", "verify", "--file", str(earlier)) == 0

    # The database refuses an edit as it stands.
    with pytest.raises(DBAPIError, match="append-only"):
        async with db.write() as conn:
            await conn.exec_driver_sql("UPDATE consent_record SET status = 'granted'")

    # A revocation turned back into consent.
    revoked = by_contact[contacts[0]][-1]
    await _tamper(db, f"UPDATE consent_record SET status = 'granted' WHERE id = {revoked['id']}")
    capsys.readouterr()
    assert await _in_thread("consent", "verify") == 1
    err = capsys.readouterr().err
    assert f"contact {contacts[0]}, row {revoked['seq']}: its content does not match" in err
    assert err.strip().splitlines()[-1].startswith("tailor: the consent ledger fails its check")

    # Put back; then the newest row of a contact deleted: whole alone, caught against the export.
    await _tamper(db, f"UPDATE consent_record SET status = 'revoked' WHERE id = {revoked['id']}")
    assert await _in_thread("consent", "verify") == 0
    suppressed = by_contact[contacts[1]][-1]
    await _tamper(db, f"DELETE FROM consent_record WHERE id = {suppressed['id']}")
    assert await _in_thread("consent", "verify") == 0
    capsys.readouterr()
    assert await _in_thread("consent", "verify", "--against", str(earlier)) == 1
    assert (
        f"contact {contacts[1]}, row {suppressed['seq']}: was in the earlier export and is gone"
        in capsys.readouterr().err
    )

    # A row deleted mid-chain.
    first = by_contact[contacts[0]][0]
    await _tamper(db, f"DELETE FROM consent_record WHERE id = {first['id']}")
    capsys.readouterr()
    assert await _in_thread("consent", "verify", "--tenant", "demo") == 1
    missing = f"contact {contacts[0]}, row 2: the rows before it are missing"
    assert missing in capsys.readouterr().err


async def test_an_export_file_that_was_edited_or_cut_fails_its_check(
    db: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TAILOR_DATABASE_URL", db.url)
    await _every_writer(db)
    saved = tmp_path / "ledger.json"
    assert await _in_thread("consent", "export", "--tenant", "demo", "--output", str(saved)) == 0
    data = json.loads(saved.read_text())

    edited = tmp_path / "edited.json"
    data["rows"][0]["wording_version"] = "a wording never shown"
    edited.write_text(json.dumps(data))
    capsys.readouterr()
    assert await _in_thread("consent", "verify", "--file", str(edited)) == 1
    assert "does not match its hash" in capsys.readouterr().err

    cut = tmp_path / "cut.json"
    data = json.loads(saved.read_text())
    data["rows"] = data["rows"][:-1]
    cut.write_text(json.dumps(data))
    assert await _in_thread("consent", "verify", "--file", str(cut)) == 1
    assert "was in the earlier export and is gone" in capsys.readouterr().err

    not_one = tmp_path / "other.json"
    not_one.write_text('{"hello": 1}')
    assert await _in_thread("consent", "verify", "--file", str(not_one)) == 1
    assert capsys.readouterr().err.strip() == (
        f"tailor: {not_one}: not a consent-ledger export (its format is not "
        "'tailor-consent-ledger')"
    )
    assert await _in_thread("consent", "export", "--tenant", "nobody") == 1
    assert "nobody" in capsys.readouterr().err


@pytest.mark.postgres
async def test_concurrent_writers_never_fork_a_chain(postgres_url: str) -> None:
    """Forty writers at once append to one contact's chain (and to a neighbour's): every row
    gets its own place, each linked to the one before."""
    from tests.conftest import empty_postgres

    await empty_postgres(postgres_url)
    db = Database(postgres_url)
    try:
        await seed_demo(db, contacts=2)
        async with db.read() as conn:
            a, b = sorted((await conn.execute(text("SELECT id FROM contact"))).scalars())

        async def write(i: int) -> None:
            async with db.write() as conn:
                await append_to_ledger(
                    conn, [_entry(a, "revoked" if i % 2 else "granted"), _entry(b)][: 1 + i % 2]
                )

        await asyncio.gather(*(write(i) for i in range(40)))
        rows = await _ledger(db)
        assert [r["seq"] for r in rows if r["contact_id"] == a] == list(range(1, 42))
        assert _check(rows) == []
    finally:
        await db.dispose()


async def test_the_api_exports_a_tenants_period_and_nothing_of_another(db: Database) -> None:
    await _every_writer(db)
    admin = await key_headers(db, "demo", "admin")
    acme = await other_tenant_headers(db, "acme")
    later = utcnow()
    async with db.write() as conn:
        await append_to_ledger(conn, [_entry(1, "revoked", recorded_at=later)])
    app = create_app(app_settings(db))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor") as http:
            whole = await http.get("/v1/consent/ledger", headers=admin)
            assert whole.status_code == 200
            assert "attachment" in whole.headers["content-disposition"]
            exported = whole.json()
            assert exported["tenant_id"] == "demo"
            assert _check(exported["rows"], expected={
                int(c): h for c, h in read_heads(exported).items()}) == []  # fmt: skip
            assert len(exported["rows"]) == len(await _ledger(db))

            since = (later - timedelta(microseconds=1)).isoformat()
            period = await http.get("/v1/consent/ledger", params={"since": since}, headers=admin)
            assert [(r["contact_id"], r["status"]) for r in period.json()["rows"]] == [
                (1, "revoked")
            ]
            assert _check(period.json()["rows"], anchored=False) == []

            other = (await http.get("/v1/consent/ledger", headers=acme)).json()
            assert other["tenant_id"] == "acme" and other["rows"] == [] and other["heads"] == {}
            backwards = await http.get(
                "/v1/consent/ledger", params={"since": since, "until": since}, headers=admin
            )
            assert backwards.status_code == 422
            assert "since must be before until" in backwards.text
            marketer = await key_headers(db, "demo", "marketer")
            assert (await http.get("/v1/consent/ledger", headers=marketer)).status_code == 403


def read_heads(exported: dict[str, object]) -> dict[str, object]:
    from tailor.consent.ledger import Head

    heads = exported["heads"]
    assert isinstance(heads, dict)
    return {c: Head(h["seq"], h["row_hash"]) for c, h in heads.items()}


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_the_migration_chains_the_rows_written_before_it(
    backend: str, tmp_path: Path
) -> None:
    """A store at 0013 with a ledger, upgraded: its rows chained in the order written."""
    name = f"tailor_old_{uuid.uuid4().hex[:10]}"
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    else:
        await _admin(f'CREATE DATABASE "{name}"')
        base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
        url = f"{base.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    await asyncio.to_thread(command.upgrade, alembic_config(url), "0013")
    db = Database(url)
    try:
        async with db.write() as conn:
            await conn.exec_driver_sql(
                "INSERT INTO tenant (id, name, from_email, from_name, postal_address, website, "
                "created_at) VALUES ('demo', 'Demo', 'a@b.example', 'Demo', '1 St', '', "
                "'2026-01-01 00:00:00')"
            )
            for n in (1, 2):
                await conn.exec_driver_sql(
                    "INSERT INTO contact (tenant_id, email, timezone, locale, device, "
                    "engagement_score, purchase_frequency, preferred_categories, cart_items, "
                    f"browse_items, created_at, updated_at) VALUES ('demo', 'p{n}@x.example', "
                    "'UTC', 'en', 'desktop', 50, 0, '[]', '[]', '[]', '2026-01-01 00:00:00', "
                    "'2026-01-01 00:00:00')"
                )
            for contact, status in ((2, "granted"), (1, "granted"), (2, "revoked")):
                await conn.exec_driver_sql(
                    "INSERT INTO consent_record (tenant_id, contact_id, channel, status, source, "
                    "method, wording_version, recorded_by, recorded_at) VALUES "
                    f"('demo', {contact}, 'email', '{status}', 'api', 'form', 'v1', 'key', "
                    "'2026-01-02 03:04:05.123456')"
                )
        await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
        rows = await _ledger(db)
        assert [(r["contact_id"], r["seq"], r["status"]) for r in rows] == [
            (1, 1, "granted"), (2, 1, "granted"), (2, 2, "revoked")
        ]  # fmt: skip
        assert _check(rows) == []
    finally:
        await db.dispose()
        if backend == "postgres":
            await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if backend == "postgres":
            await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
