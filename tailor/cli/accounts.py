"""``tailor tenant create`` and ``tailor key create|list|revoke``: onboarding from a shell.

Secrets are printed once, on stdout, and nowhere else (not in logs)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from tailor.accounts.keys import issue_key, reissue_key
from tailor.accounts.onboarding import TenantExists, TenantSpec, onboard_tenant, parse_sender
from tailor.cli.processes import migrated_database
from tailor.config import Settings
from tailor.db import Database
from tailor.errors import InvalidInput, NotFound
from tailor.models import Role, utcnow
from tailor.store.api_keys import keys_of, revoke_key
from tailor.store.tenants import tenant_exists

CLI_ACTOR = "cli"


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tenant = sub.add_parser("tenant", help="onboard a shop")
    tenant_sub = tenant.add_subparsers(dest="tenant_command", required=True)
    create = tenant_sub.add_parser("create", help="a new tenant and its first admin key")
    create.add_argument("id", help="tenant id: lowercase letters, digits, dashes")
    create.add_argument("--name", help="the shop's name (default: the id)")
    create.add_argument("--postal-address", required=True, help="printed in every email")
    create.add_argument("--sender", required=True, help="'Name <email@domain>'")
    create.add_argument("--website", default="", help="https://... for calls to action")
    create.add_argument("--timezone", default="UTC", help="IANA zone, e.g. Europe/Amsterdam")
    create.add_argument("--json", action="store_true", help="print JSON")

    key = sub.add_parser("key", help="API keys")
    key_sub = key.add_subparsers(dest="key_command", required=True)
    new = key_sub.add_parser("create", help="a new key (printed once)")
    new.add_argument("--tenant", help="the tenant (omit with --role platform)")
    new.add_argument("--role", required=True, choices=[r.value for r in Role])
    new.add_argument("--name", required=True)
    new.add_argument("--json", action="store_true", help="print JSON")
    listed = key_sub.add_parser("list", help="a tenant's keys, without secrets")
    listed.add_argument("--tenant", help="the tenant (omit for platform keys)")
    revoke = key_sub.add_parser("revoke", help="stop a key working")
    revoke.add_argument("key_id")
    revoke.add_argument("--tenant", help="the key's tenant (omit for platform keys)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Exit code 0, or 1 with one line on stderr naming what to fix."""
    try:
        return asyncio.run(_run(args, settings))
    except (InvalidInput, NotFound, TenantExists, ValueError) as exc:
        print(f"tailor: {_one_line(exc)}", file=sys.stderr)  # noqa: T201
        return 1


def _one_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "input"
        return f"--{field.replace('_', '-')}: {first['msg']}"
    if isinstance(exc, TenantExists):
        return f"tenant {exc} exists; choose another id"
    return str(exc)


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    db = await migrated_database(settings.resolved_database_url)
    try:
        if args.command == "tenant":
            return await _create_tenant(args, db)
        if args.key_command == "create":
            return await _create_key(args, db)
        if args.key_command == "list":
            return await _list_keys(args, db)
        return await _revoke(args, db)
    finally:
        await db.dispose()


async def _create_tenant(args: argparse.Namespace, db: Database) -> int:
    from_name, from_email = parse_sender(args.sender)
    spec = TenantSpec(
        id=args.id, name=args.name or args.id, postal_address=args.postal_address,
        from_name=from_name or args.name or args.id, from_email=from_email,
        website=args.website, timezone=args.timezone,
    )  # fmt: skip
    async with db.session() as session:
        onboarded = await onboard_tenant(session=session, spec=spec, created_by=CLI_ACTOR)
    key = onboarded.admin_key
    if args.json:
        print(json.dumps({"tenant": spec.id, "key_id": key.key.id, "secret": key.secret}))  # noqa: T201
        return 0
    Console(stderr=True).print(
        f"Tenant [bold]{spec.id}[/bold] created. Its admin key is below, shown once: store it "
        "now (Tailor keeps only a hash)."
    )
    print(key.secret)  # noqa: T201  (stdout: the one copy)
    return 0


async def _create_key(args: argparse.Namespace, db: Database) -> int:
    role = Role(args.role)
    tenant_id = None if role is Role.PLATFORM else args.tenant
    if role is not Role.PLATFORM and not args.tenant:
        raise InvalidInput("tenant", f"--tenant is required for a {role.value} key")
    async with db.session() as session:
        if tenant_id is not None and not await tenant_exists(session=session, tenant_id=tenant_id):
            raise NotFound("tenant", tenant_id)
        issued = await issue_key(
            session=session, tenant_id=tenant_id, role=role, name=args.name, created_by=CLI_ACTOR
        )
    if args.json:
        print(json.dumps({"key_id": issued.key.id, "role": role.value, "secret": issued.secret}))  # noqa: T201
    else:
        print(issued.secret)  # noqa: T201
    return 0


async def _list_keys(args: argparse.Namespace, db: Database) -> int:
    async with db.read_session() as session:
        keys = await keys_of(session=session, tenant_id=args.tenant)
    table = Table("id", "name", "role", "prefix", "created", "last used", "revoked")
    for k in keys:
        table.add_row(
            k.id, k.name, k.role, k.prefix, f"{k.created_at:%Y-%m-%d %H:%M}",
            f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "never",
            f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "",
        )  # fmt: skip
    Console().print(table)
    return 0


async def _revoke(args: argparse.Namespace, db: Database) -> int:
    async with db.session() as session:
        key = await revoke_key(
            session=session, tenant_id=args.tenant, key_id=args.key_id, now=utcnow()
        )
    Console(stderr=True).print(f"Key {key.id} ({key.name}) revoked.")
    return 0


async def tool_key(db: Database, *, tenant_id: str, role: Role, name: str) -> str:
    """The secret of a fresh key for a command that calls the API (``tailor demo``, the trigger
    bench); the key the same command made on its last run stops working."""
    async with db.session() as session:
        issued = await reissue_key(
            session=session, tenant_id=tenant_id, role=role, name=name, created_by=CLI_ACTOR
        )
    return issued.secret
