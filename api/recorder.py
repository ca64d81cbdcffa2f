"""The served API's tracking recorder, in a process of its own.

Recording a hit (checking its token, classifying it, storing it, engaging a first open or
click: ``tailor.engagement.tracker``) costs milliseconds of CPU, an engagement up to 14 ms. In
the API's own process that work takes turns with the pixel and the redirect on one event loop,
and at a steady 500 requests/s its turns showed in their tail: a redirect's p99 of 27-57 ms on
PostgreSQL, where the routes alone answer in a few. So ``tailor api`` records in a child
process at a lower priority, which the kernel preempts whenever a request is waiting.

What answers requests stays here: the redirect's send lookups (a ``Tracker`` that is never
started, used only for ``target`` and its cache of sends). Hits, and the opens and clicks that
providers report through the webhooks, go to the child over its stdin in pickled batches (the
child is this program, run by this process: a trusted pipe), at most one write per turn of the
event loop. The child answers on its stdout, which only these frames use.

A child that dies is started again; what was offered meanwhile is dropped and counted, like
hits the in-process recorder has no room for: a hit is an observation nobody retries. When the
child cannot keep up, the pipe's buffer fills and hits are dropped the same way, rather than
slowing the responses down. ``drain`` waits until the child has stored and engaged everything
sent so far (tests, and ``stop``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import struct
import sys
from collections.abc import Iterable
from typing import Any

from api.deps import TemporalGateway
from tailor.config import Settings
from tailor.db import Database
from tailor.engagement.tracker import RawHit, Reported, Resolved, Tracker
from tailor.journeys.triggers import TriggerAgent
from tailor.profiles.cache import FeatureCache

log = logging.getLogger(__name__)

NICE = 5  # the child's priority below the API's: requests first, recording in between
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0
RESTART_DELAY_S = 1.0  # doubled after each start that never became ready
MAX_RESTART_DELAY_S = 30.0
# Bytes waiting in the pipe before hits are dropped: some 30,000 hits, a minute of a busy
# campaign's readers that the child has not taken yet.
MAX_BACKLOG_BYTES = 8 * 1024 * 1024
_LENGTH = struct.Struct(">I")


def _frame(message: tuple[Any, ...]) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


async def _read_frame(reader: asyncio.StreamReader) -> tuple[Any, ...] | None:
    """The next message, or None at the end of the stream."""
    try:
        head = await reader.readexactly(_LENGTH.size)
        message: tuple[Any, ...] = pickle.loads(await reader.readexactly(_LENGTH.unpack(head)[0]))
    except asyncio.IncompleteReadError:
        return None
    return message


class RecorderProcess:
    """The tracker the served API's routes use: lookups here, recording in the child."""

    def __init__(self, settings: Settings, directory: Tracker) -> None:
        self._settings = settings
        self._directory = directory
        self._process: asyncio.subprocess.Process | None = None
        self._answers: asyncio.Task[None] | None = None
        self._outbox: list[tuple[Any, ...]] = []
        self._flush_scheduled = False
        self._drains: dict[int, asyncio.Future[None]] = {}
        self._next_drain = 0
        self._ready: asyncio.Future[None] | None = None
        self._stopping = False
        self.dropped = 0  # hits (and reported engagements) not handed over
        self.restarts = 0
        self._failures_in_a_row = 0

    # -- what the routes call --------------------------------------------------------------

    def offer(self, hit: RawHit) -> None:
        """Queue a hit for the child; never blocks, never raises."""
        self._queue(("hit", hit))

    def engage_reported(self, reported: Iterable[Reported]) -> None:
        for r in reported:
            self._queue(("reported", r))

    async def target(self, token: str) -> tuple[str, Resolved] | None:
        return await self._directory.target(token)

    async def drain(self, *, now: bool = False) -> None:
        """Wait until the child has stored and engaged everything offered so far."""
        self._flush()
        process = self._process
        if process is None or process.stdin is None or process.returncode is not None:
            return
        self._next_drain += 1
        ticket = self._next_drain
        answered = self._drains[ticket] = asyncio.get_running_loop().create_future()
        try:
            process.stdin.write(_frame(("drain", ticket, now)))
            await process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):  # the child just died: nothing to wait for
            self._drains.pop(ticket, None)
            return
        await answered

    # -- the child's life ------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The running child's process id; None while it is stopped or being started again."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    async def start(self) -> None:
        """Start the child and wait until it is ready to record."""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "api.recorder",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        assert self._process.stdin is not None
        self._ready = asyncio.get_running_loop().create_future()
        self._answers = asyncio.create_task(self._read_answers(self._process))
        self._process.stdin.write(_frame(("settings", self._settings)))
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), START_TIMEOUT_S)
        except TimeoutError:
            log.error("the tracking recorder did not start within %.0f s", START_TIMEOUT_S)

    async def stop(self) -> None:
        """Hand over what is queued, let the child record it, and wait for it to exit."""
        self._stopping = True
        self._flush()
        process = self._process
        if process is None:
            return
        if process.stdin is not None and process.returncode is None:
            process.stdin.close()  # the child records what it has, then exits
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            log.error("the tracking recorder did not stop within %.0f s: killed", STOP_TIMEOUT_S)
            process.kill()
            await process.wait()
        if self._answers is not None:
            await self._answers
        self._process = None

    async def _read_answers(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while (message := await _read_frame(process.stdout)) is not None:
            if message[0] == "ready" and self._ready is not None and not self._ready.done():
                self._failures_in_a_row = 0
                self._ready.set_result(None)
            elif message[0] == "drained":
                answered = self._drains.pop(message[1], None)
                if answered is not None and not answered.done():
                    answered.set_result(None)
        await process.wait()
        for answered in self._drains.values():  # nothing left to wait for
            if not answered.done():
                answered.set_result(None)
        self._drains.clear()
        if not self._stopping:
            # A child that keeps dying (a database that refuses it, say) is retried less often.
            delay = min(RESTART_DELAY_S * 2**self._failures_in_a_row, MAX_RESTART_DELAY_S)
            self._failures_in_a_row += 1
            log.error("the tracking recorder exited (%s); starting it again in %.0f s",
                      process.returncode, delay)  # fmt: skip
            self.restarts += 1
            await asyncio.sleep(delay)
            if not self._stopping:
                asyncio.get_running_loop().create_task(self._restart())

    async def _restart(self) -> None:
        try:
            await self.start()
        except Exception:  # logged; the API goes on answering, its hits counted as dropped
            log.exception("the tracking recorder could not be started again")

    # -- the pipe --------------------------------------------------------------------------

    def _queue(self, message: tuple[Any, ...]) -> None:
        self._outbox.append(message)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Write what this turn of the loop offered, in one frame."""
        self._flush_scheduled = False
        if not self._outbox:
            return
        batch, self._outbox = self._outbox, []
        process = self._process
        stdin = None if process is None or process.returncode is not None else process.stdin
        if stdin is None or stdin.is_closing():
            self._drop(len(batch), "is not running")
            return
        if stdin.transport.get_write_buffer_size() > MAX_BACKLOG_BYTES:
            self._drop(len(batch), "is behind")
            return
        stdin.write(_frame(("batch", batch)))

    def _drop(self, count: int, why: str) -> None:
        self.dropped += count
        # No token, address or agent: only that hits were lost.
        log.warning("tracking recorder %s: %d hits dropped (%d so far)", why, count, self.dropped)


# -- the child ---------------------------------------------------------------------------------


async def _record(reader: asyncio.StreamReader, answer: Any) -> None:
    """Take hits from the parent until its end of the pipe closes; record them."""
    first = await _read_frame(reader)
    if first is None or first[0] != "settings":
        return
    settings: Settings = first[1]
    db = Database(settings.resolved_database_url)
    temporal = TemporalGateway(settings)
    features = FeatureCache.from_settings(settings)
    tracker = Tracker(
        db,
        secret=settings.tracking_secret,
        triggers=TriggerAgent(db, temporal.journeys),
        features=features,
    )
    tracker.start()
    answer(("ready",))
    try:
        while (message := await _read_frame(reader)) is not None:
            if message[0] == "batch":
                for kind, item in message[1]:
                    if kind == "hit":
                        tracker.offer(item)
                    else:
                        tracker.engage_reported([item])
            elif message[0] == "drain":
                await tracker.drain(now=message[2])
                answer(("drained", message[1]))
    finally:
        await tracker.stop()
        if features is not None:
            await features.close()
        await db.dispose()


async def _child() -> None:
    # The answers get a descriptor of their own; anything else that writes to stdout (a
    # library's print) goes to stderr instead of corrupting them.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def answer(message: tuple[Any, ...]) -> None:
        answers.write(_frame(message))

    await _record(reader, answer)


def main() -> None:
    with contextlib.suppress(OSError):
        os.nice(NICE)
    # Ctrl-C reaches the whole process group, and a service manager may signal every process
    # of the service: the API stops, then closes the pipe, and the child records what it was
    # handed before it exits. Stopped by the signal itself, that would be lost. (If the API
    # dies outright, the pipe closes all the same.)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(_child())


if __name__ == "__main__":
    main()
