"""The local stack: Temporal dev server, SMTP capture server, worker and API as child processes."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from tailor.cli.processes import (
    ProcessGroup,
    StartupError,
    port_in_use,
    port_owner,
    temporal_binary,
    wait_for_port,
)
from tailor.config import Settings
from workflows.search_attributes import SEARCH_ATTRIBUTES

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Ports:
    temporal: int = 7233
    ui: int = 8233
    api: int = 8000
    smtp: int = 2525

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Ports:
        """From the --temporal-port, --ui-port, --api-port and --smtp-port flags."""
        return cls(args.temporal_port, args.ui_port, args.api_port, args.smtp_port)


class LocalStack:
    def __init__(
        self,
        home: Path,
        ports: Ports,
        *,
        with_ui: bool = True,
        database_url: str | None = None,
    ) -> None:
        self.home = home.resolve()
        self.ports = ports
        self.with_ui = with_ui
        self.database_url = database_url  # None: TAILOR_DATABASE_URL, or SQLite under home
        self.group = ProcessGroup(self.home)

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "TAILOR_HOME": str(self.home),
                "TAILOR_TEMPORAL_ADDRESS": f"{HOST}:{self.ports.temporal}",
                "TAILOR_TEMPORAL_UI_URL": f"http://{HOST}:{self.ports.ui}",
                "TAILOR_API_PORT": str(self.ports.api),
                "TAILOR_PUBLIC_URL": env.get(
                    "TAILOR_PUBLIC_URL", f"http://{HOST}:{self.ports.api}"
                ),
                "TAILOR_SMTP_HOST": HOST,
                "TAILOR_SMTP_PORT": str(self.ports.smtp),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.database_url:
            env["TAILOR_DATABASE_URL"] = self.database_url
        return env

    def settings(self) -> Settings:
        values: dict[str, Any] = {
            "home": self.home,
            "temporal_address": f"{HOST}:{self.ports.temporal}",
            "temporal_ui_url": f"http://{HOST}:{self.ports.ui}",
            "api_port": self.ports.api,
            "smtp_port": self.ports.smtp,
        }
        if self.database_url:  # otherwise TAILOR_DATABASE_URL or the SQLite default applies
            values["database_url"] = self.database_url
        return Settings(**values)

    def check_ports(self, *, api: bool = True, smtp: bool = True) -> None:
        wanted = {"Temporal": (self.ports.temporal, "--temporal-port")}
        if self.with_ui:
            wanted["Temporal UI"] = (self.ports.ui, "--ui-port")
        if api:
            wanted["API"] = (self.ports.api, "--api-port")
        if smtp:
            wanted["SMTP capture"] = (self.ports.smtp, "--smtp-port")
        for what, (port, flag) in wanted.items():
            if port_in_use(HOST, port):
                raise StartupError(
                    f"{what} port {port} is in use by {port_owner(port)}; stop it or pass "
                    f"{flag} with a free port"
                )

    def _python(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "tailor.cli.main", *args]

    def start_temporal(self) -> None:
        argv = [
            temporal_binary(), "server", "start-dev",
            "--db-filename", str(self.home / "temporal.db"),
            "--ip", HOST,
            "--port", str(self.ports.temporal),
            "--sqlite-pragma", "journal_mode=wal",
            "--sqlite-pragma", "synchronous=1",
            "--log-level", "warn",
        ]  # fmt: skip
        if self.with_ui:
            argv += ["--ui-port", str(self.ports.ui), "--ui-disable-news-fetch"]
        else:
            argv += ["--headless"]
        for key in SEARCH_ATTRIBUTES:
            argv += ["--search-attribute", f"{key.name}=Keyword"]
        service = self.group.start("temporal", argv, self.env)
        try:
            wait_for_port(HOST, self.ports.temporal, 60, service.proc)
            if self.with_ui:
                wait_for_port(HOST, self.ports.ui, 60, service.proc)
        except StartupError as exc:
            raise StartupError(f"Temporal dev server {exc}; see {service.log}") from exc

    def start_sink(self) -> None:
        service = self.group.start(
            "smtp-sink",
            self._python("smtp-sink", "--port", str(self.ports.smtp)),
            self.env,
        )
        try:
            wait_for_port(HOST, self.ports.smtp, 30, service.proc)
        except StartupError as exc:
            raise StartupError(f"SMTP capture server {exc}; see {service.log}") from exc

    def start_esp_stub(self, port: int) -> None:
        service = self.group.start(
            "esp-stub", self._python("esp-stub", "--port", str(port)), self.env
        )
        try:
            wait_for_port(HOST, port, 30, service.proc)
        except StartupError as exc:
            raise StartupError(f"email provider stub {exc}; see {service.log}") from exc

    def start_worker(self, name: str = "worker") -> None:
        self.group.start(name, self._python("worker"), self.env)

    def start_api(self) -> None:
        service = self.group.start("api", self._python("api"), self.env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if service.proc.poll() is not None:
                raise StartupError(
                    f"API exited with code {service.proc.returncode}; see {service.log}"
                )
            try:
                if (
                    httpx.get(f"http://{HOST}:{self.ports.api}/healthz", timeout=1).status_code
                    == 200
                ):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise StartupError(f"API not healthy after 60s; see {service.log}")

    async def wait_for_worker(self, client: Client, task_queue: str, timeout: float = 60) -> None:
        """Until a worker polls the task queue, so the first campaign does not sit waiting."""
        deadline = time.monotonic() + timeout
        request = DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
        while time.monotonic() < deadline:
            failed = self.group.failed()
            if failed is not None:
                raise StartupError(f"{failed.name} exited; see {failed.log}")
            response = await client.workflow_service.describe_task_queue(request)
            if response.pollers:
                return
            await asyncio.sleep(0.2)
        raise StartupError(f"no worker polled {task_queue} within {timeout:.0f}s")
