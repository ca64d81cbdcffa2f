"""``tailor consent export|verify``: the consent ledger for an auditor, and its chain checked.

``export`` writes a tenant's ledger (or one period of it) as the JSON document
``tailor.consent.ledger_export`` describes. ``verify`` recomputes every chain, in the database
or in an export file, and with ``--against`` an earlier export's heads must all still be there:
exit 0 when all is whole, 1 with the problems listed (at most ``SHOWN``) when not.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tailor.cli.processes import migrated_database
from tailor.config import Settings
from tailor.consent.ledger import ChainCheck
from tailor.consent.ledger_export import Export, NotAnExport, export_document, read_export
from tailor.db import Database
from tailor.errors import NotFound
from tailor.models import utcnow
from tailor.store.consent import ledger_count, ledger_pages
from tailor.store.tenants import tenant_exists

SHOWN = 20


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    consent = sub.add_parser("consent", help="the consent ledger: export it, verify its chain")
    consent_sub = consent.add_subparsers(dest="consent_command", required=True)
    export = consent_sub.add_parser("export", help="a tenant's ledger (or a period) as JSON")
    export.add_argument("--tenant", required=True)
    export.add_argument("--since", type=_moment, help="from this UTC date or time (inclusive)")
    export.add_argument("--until", type=_moment, help="to this UTC date or time (exclusive)")
    export.add_argument("--output", type=Path, help="the file to write (default: stdout)")
    verify = consent_sub.add_parser("verify", help="recompute the ledger's hash chains")
    verify.add_argument("--tenant", help="one tenant's chains (default: every tenant's)")
    verify.add_argument("--file", type=Path, help="check this export instead of the database")
    verify.add_argument(
        "--against", type=Path, help="an earlier export whose heads must all still be there"
    )


def _moment(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a date or time: use 2026-11-01 or 2026-11-01T09:30"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Exit code 0, or 1 with one line on stderr naming what to fix (or what is broken)."""
    try:
        return asyncio.run(_run(args, settings))
    except (NotAnExport, NotFound) as exc:
        print(f"tailor: {exc}", file=sys.stderr)  # noqa: T201
        return 1


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    against = getattr(args, "against", None)
    earlier = read_export(against) if against is not None else None
    if args.consent_command == "verify" and args.file is not None:
        export = read_export(args.file)
        # The file's own heads too: rows cut from its end show there.
        check = ChainCheck(anchored=export.since is None, expected=export.heads)
        for row in export.rows:
            check.add(row)
        return _report(check, f"{args.file}", earlier)
    db = await migrated_database(settings.resolved_database_url)
    try:
        if args.tenant is not None:
            async with db.read_session() as session:
                if not await tenant_exists(session=session, tenant_id=args.tenant):
                    raise NotFound("tenant", args.tenant)
        if args.consent_command == "export":
            return await _export(args, db)
        return await _verify(args, db, earlier)
    finally:
        await db.dispose()


async def _export(args: argparse.Namespace, db: Database) -> int:
    out = args.output.open("w", encoding="utf-8") if args.output else sys.stdout
    rows = 0
    try:
        async with db.read() as conn:
            pages = ledger_pages(conn, tenant_id=args.tenant, since=args.since, until=args.until)

            async def counted() -> AsyncIterator[list[dict[str, Any]]]:
                nonlocal rows
                async for page in pages:
                    rows += len(page)
                    yield page

            async for text in export_document(
                counted(),
                tenant_id=args.tenant, since=args.since, until=args.until,
                exported_at=utcnow(),
            ):  # fmt: skip
                out.write(text)
    finally:
        if args.output:
            out.close()
    if args.output:
        Console(stderr=True).print(f"{rows:,} rows of {args.tenant}'s ledger in {args.output}")
    return 0


async def _verify(args: argparse.Namespace, db: Database, earlier: Export | None) -> int:
    check = ChainCheck(anchored=True, expected=earlier.heads if earlier else {})
    async with db.read() as conn:
        total = await ledger_count(conn, tenant_id=args.tenant)
        with Progress(
            TextColumn("Checking the consent ledger"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=Console(stderr=True), transient=True,
        ) as progress:  # fmt: skip
            task = progress.add_task("verify", total=total)
            async for page in ledger_pages(conn, tenant_id=args.tenant):
                for row in page:
                    check.add(row)
                progress.advance(task, len(page))
    return _report(check, "the consent ledger", earlier)


def _report(check: ChainCheck, what: str, earlier: Export | None) -> int:
    problems = check.finish()
    console = Console(stderr=True)
    against = " and the earlier export's heads" if earlier else ""
    if not problems:
        console.print(
            f"{what}: {check.rows:,} rows of {check.contacts:,} contacts checked{against}; "
            "every chain is whole"
        )
        return 0
    for problem in problems[:SHOWN]:
        console.print(f"  {problem}", highlight=False)
    if len(problems) > SHOWN:
        console.print(f"  … and {len(problems) - SHOWN:,} more", highlight=False)
    print(  # noqa: T201
        f"tailor: {what} fails its check: {len(problems):,} problems in {check.rows:,} rows "
        f"(first: {problems[0]})",
        file=sys.stderr,
    )
    return 1
