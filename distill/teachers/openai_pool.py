"""The openai backend spread over several client processes, for hundreds of requests per second.

    teachers/my-vllm.yaml:  backend: openai, concurrency: 512, client_processes: 4

One `OpenAITeacher` costs about 1 ms of CPU per request (the openai SDK builds, sends and parses
each request in Python): one process tops out near 1,000 requests/s, which a self-hosted vLLM
answering short completions can exceed. With `client_processes: N` the requests go to N child
processes, each running its own `OpenAITeacher` on its own event loop; this process keeps the
orchestration (prompt stream, retries, trace writing, resume), so nothing about resumability or
accounting changes. A child makes exactly one attempt per request and sends back the
`Completion` or the classified `TeacherError`; retries and their backoff stay in the parent.

Children read the key from the environment themselves (it is never sent to them) and exit when
the parent closes their pipe or dies (EOF), so a kill -9 of `distill traces` leaves nothing behind.
A child that dies fails its requests in flight as retryable connection errors; the others go on.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import queue
import threading
from multiprocessing.connection import Connection
from typing import Any

from distill.teachers.base import Completion, SamplingParams, TeacherError
from distill.teachers.config import TeacherConfig
from distill.teachers.openai_backend import OpenAITeacher

log = logging.getLogger(__name__)


def _child(conn: Connection, cfg: TeacherConfig) -> None:
    """A child process: requests in, one attempt each, results out, until EOF."""
    teacher = OpenAITeacher(cfg)
    # Results leave through a thread: a 100 kB trace can fill the pipe, and a blocked send on the
    # event loop would stop this process reading requests while the parent waits to send one.
    outbox: queue.SimpleQueue = queue.SimpleQueue()

    def sender() -> None:
        while (item := outbox.get()) is not None:
            try:
                conn.send(item)
            except (BrokenPipeError, OSError):  # the parent is gone; EOF on the reader ends the loop
                return

    threading.Thread(target=sender, daemon=True).start()

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        tasks: set[asyncio.Task] = set()

        async def one(req_id: int, messages: list[dict[str, str]], params: SamplingParams) -> None:
            try:
                result: Any = ("ok", await teacher.acomplete(messages, params))
            except TeacherError as e:
                result = ("error", (str(e), e.kind, e.retryable, e.retry_after, e.fatal))
            except Exception as e:  # noqa: BLE001 - a bug here must reach the parent as this request's failure
                result = ("error", (f"client process: {type(e).__name__}: {e}", "client", True, None, False))
            outbox.put((req_id, *result))

        def readable() -> None:
            try:
                while conn.poll():
                    msg = conn.recv()
                    if msg is None:
                        raise EOFError
                    task = loop.create_task(one(*msg))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            except (EOFError, OSError):
                loop.remove_reader(conn.fileno())
                if not done.done():
                    done.set_result(None)

        loop.add_reader(conn.fileno(), readable)
        await done
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await teacher.aclose()
        outbox.put(None)

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


class PooledOpenAITeacher(OpenAITeacher):
    """`OpenAITeacher` whose requests run in `cfg.client_processes` child processes (see module doc).
    `generate`, `request_body` and the key check are the parent class's."""

    def __init__(self, cfg: TeacherConfig):
        super().__init__(cfg)  # the key check happens here, before any child starts
        self._conns: list[Connection | None] = []
        self._procs: list[Any] = []
        self._pending: dict[int, tuple[int, asyncio.Future]] = {}
        self._ids = itertools.count()

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        # spawn, not fork: the parent may hold threads (the prompt reader) and an event loop.
        ctx = multiprocessing.get_context("spawn")
        for i in range(self.cfg.client_processes):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_child, args=(child, self.cfg), daemon=True, name=f"distill-client-{i}")
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
            self._in_flight.append(0)
            loop.add_reader(parent.fileno(), self._readable, i)
        self._loop = loop

    def _readable(self, i: int) -> None:
        conn = self._conns[i]
        try:
            while conn is not None and conn.poll():
                req_id, status, payload = conn.recv()
                self._in_flight[i] -= 1
                _, future = self._pending.pop(req_id, (None, None))
                if future is None or future.done():
                    continue
                if status == "ok":
                    future.set_result(payload)
                else:
                    message, kind, retryable, retry_after, fatal = payload
                    future.set_exception(TeacherError(message, kind=kind, retryable=retryable,
                                                      retry_after=retry_after, fatal=fatal))
        except (EOFError, OSError):
            self._lost(i, "client process exited")

    def _lost(self, i: int, why: str) -> None:
        """Child i is gone: fail what it had in flight (retryable), send nothing more its way."""
        conn, self._conns[i] = self._conns[i], None
        if conn is not None and self._loop is not None:
            self._loop.remove_reader(conn.fileno())
            conn.close()
        for req_id, (owner, future) in list(self._pending.items()):
            if owner == i:
                del self._pending[req_id]
                if not future.done():
                    future.set_exception(TeacherError(f"connection failed ({why})", kind="connection", retryable=True))
        self._in_flight[i] = 0
        log.warning("client process %d stopped (%s); %d left", i, why, sum(c is not None for c in self._conns))

    async def acomplete(self, messages: list[dict[str, str]], params: SamplingParams) -> Completion:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # First request of this event loop (each generate() is a new asyncio.run): children
            # of an earlier loop are told to stop, without awaiting, so no other request slips in.
            self._procs = [p for p in self._procs if p.is_alive()]
            self._stop_children()
            self._start(loop)
        live = [i for i, c in enumerate(self._conns) if c is not None]
        if not live:
            raise TeacherError("every client process has stopped", kind="client", fatal=True)
        i = min(live, key=lambda j: self._in_flight[j])
        req_id = next(self._ids)
        future = loop.create_future()
        self._pending[req_id] = (i, future)
        self._in_flight[i] += 1
        try:
            self._conns[i].send((req_id, messages, params))  # type: ignore[union-attr]
        except (BrokenPipeError, OSError):
            self._lost(i, "pipe closed")
        return await future

    def _stop_children(self) -> None:
        """Close every pipe (a child exits on EOF); the processes are joined by `aclose`."""
        for conn in self._conns:
            if conn is None:
                continue
            try:
                if self._loop is not None and not self._loop.is_closed():
                    self._loop.remove_reader(conn.fileno())
                conn.send(None)
            except (OSError, ValueError, RuntimeError):
                pass
            conn.close()
        self._conns, self._in_flight, self._loop = [], [], None
        for _, future in self._pending.values():
            if not future.done():
                future.cancel()
        self._pending.clear()

    async def aclose(self) -> None:
        self._stop_children()
        procs, self._procs = self._procs, []
        for proc in procs:
            await asyncio.to_thread(proc.join, 10)
            if proc.is_alive():
                proc.kill()
