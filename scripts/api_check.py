"""Fuzz the HTTP API against its own OpenAPI document with schemathesis (CI runs this).

    python scripts/api_check.py                 # every operation, 25 examples each
    python scripts/api_check.py --max-examples 5 --seed 1
    python scripts/api_check.py --database-url postgresql+asyncpg://.../empty_db

It migrates a fresh SQLite store in a temporary folder, seeds the demo tenant, issues an admin
key and a platform key, serves the app on a free loopback port with Temporal *not* running
(routes that need it answer 503, which the document says), and runs schemathesis against
``/openapi.json``, each operation with a key that may call it (see RUNS). A check that fails
(a 5xx, a status, content type, header or body the document does not promise) makes the exit
status non-zero. Nothing is sent: campaigns never start without Temporal, and the SMTP and LLM
settings point nowhere.

Extra arguments go to ``schemathesis run`` as they are.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.main import create_app  # noqa: E402
from tailor.accounts.keys import issue_key  # noqa: E402
from tailor.config import Settings  # noqa: E402
from tailor.db import Database, migrate  # noqa: E402
from tailor.demo.seed import seed_demo  # noqa: E402
from tailor.models import Role  # noqa: E402

# 503 is what routes that need Temporal answer here (documented); any other 5xx is a failure.
CONFIG = """
[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx", "503"]
"""
#: The runs, in order: (what, whose key, which operations). Onboarding takes a platform key;
#: revoking goes last, since the fuzzer finds the admin key's id (GET /v1/keys) and revokes it.
_REVOKE = "^/v1/keys/[^/]+/revoke$"
RUNS = (
    ("tenant routes", Role.ADMIN, ["--exclude-path-regex", f"^/v1/platform/|{_REVOKE}"]),
    ("platform routes", Role.PLATFORM, ["--include-path-regex", "^/v1/platform/"]),
    ("key revocation", Role.ADMIN, ["--include-path-regex", _REVOKE]),
)
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _prepare(url: str) -> dict[Role, str]:
    """A migrated store with the demo tenant; returns the secrets of a new admin key of it and
    of a new platform key."""
    await migrate(url)
    db = Database(url)
    secrets: dict[Role, str] = {}
    try:
        seeded = await seed_demo(db, contacts=20)
        async with db.session() as session:
            for role, tenant_id in ((Role.ADMIN, seeded.tenant_id), (Role.PLATFORM, None)):
                issued = await issue_key(
                    session=session, tenant_id=tenant_id, role=role, name="api check",
                    created_by="scripts/api_check.py",
                )  # fmt: skip
                secrets[role] = issued.secret
    finally:
        await db.dispose()
    return secrets


def _serve(settings: Settings) -> tuple[uvicorn.Server, threading.Thread, int]:
    port = _free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise SystemExit("the API did not start")
        time.sleep(0.05)
    return server, thread, port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-examples", type=int, default=25, help="per operation")
    parser.add_argument("--seed", type=int, default=13, help="schemathesis' random seed")
    parser.add_argument(
        "--database-url", help="an empty database to use instead of a fresh SQLite file"
    )
    args, extra = parser.parse_known_args()

    with tempfile.TemporaryDirectory(prefix="tailor-api-check-") as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{tmp}/api-check.db"
        secrets = asyncio.run(_prepare(url))
        settings = Settings(
            home=Path(tmp),
            database_url=url,
            # Nothing listens there: routes that need Temporal answer 503, and nothing sends.
            temporal_address=f"127.0.0.1:{_free_port()}",
            smtp_host="127.0.0.1",
            smtp_port=_free_port(),
            redis_url=None,
            api_rate_per_min=1_000_000,  # the fuzzer is one fast client; limits are tested apart
            openai_api_key=None,
            anthropic_api_key=None,
        )
        server, thread, port = _serve(settings)
        config = Path(tmp, "schemathesis.toml")
        config.write_text(CONFIG)
        failed = []
        try:
            for what, role, selection in RUNS:
                command = [
                    str(Path(sys.executable).with_name("schemathesis")),
                    "--config-file", str(config),
                    "--no-color",
                    "run",
                    f"http://127.0.0.1:{port}/openapi.json",
                    *selection,
                    "--checks", ",".join(CHECKS),
                    "--max-examples", str(args.max_examples),
                    "--seed", str(args.seed),
                    "--header", f"Authorization: Bearer {secrets[role]}",
                    "--generation-with-security-parameters", "false",
                    "--generation-database", "none",
                    "--phases", "examples,coverage,fuzzing",
                    "--workers", "1",
                    *extra,
                ]  # fmt: skip
                print(f"api check: {what} ({role.value} key), seed {args.seed}", flush=True)
                if subprocess.run(command, cwd=tmp, check=False).returncode != 0:
                    failed.append(what)
        finally:
            server.should_exit = True
            thread.join(timeout=30)
    verdict = f"FAILED ({', '.join(failed)})" if failed else "passed"
    print(f"api check: {verdict}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
