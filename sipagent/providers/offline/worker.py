"""Worker processes for the CPU-heavy offline engines, and the pool that serves every call from the event loop.

Why processes: a pocketsphinx decode costs 3-50 ms per 100 ms of audio and holds the GIL, and libespeak-ng keeps
process-global state, so neither may run on the event loop (budget ~2 ms) nor share a process between two
syntheses at once. Each worker is a plain child interpreter started with ``asyncio.create_subprocess_exec``; the
loop talks to it over its stdin/stdout pipes with asyncio streams, so nothing on our side blocks or spawns threads.

A *session* is one engine object inside one worker (a call's stateful decoder, one synthesis). It stays in the
worker it was opened on for its whole life; sessions of the same ``key`` (the call id) go to the same worker, new
keys to the least loaded one. Requests of a session are answered in order, since a worker handles one message at a
time.

Wire format, both directions: a 4-byte big-endian length, then a pickle of a 3-tuple
``(session id, op, payload)`` towards the worker and ``(session id, kind, payload)`` back. Session id 0 is the
pool's own control session (``warm``). Pickle is safe here: both ends are our own code in our own processes.

Inside the worker, engines are created lazily from ``ENGINES`` and implement ``WorkerEngine``; their sessions
answer each op with a list of ``(kind, payload)`` replies. An exception becomes one ``error`` reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import os
import pickle
import select
import signal
import struct
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from sipagent.log import get_logger
from sipagent.providers.errors import (
    ProviderConfigError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
)

__all__ = ["ENGINES", "Channel", "ReplyHandler", "WorkerEngine", "WorkerPool", "WorkerSession", "serve"]

# Engine name -> (module, class) imported inside the worker only, so the loop process never loads pocketsphinx.
ENGINES: dict[str, tuple[str, str]] = {
    "sphinx": ("sipagent.providers.offline.sphinx", "SphinxEngine"),
    "espeak": ("sipagent.providers.offline.tts", "EspeakEngine"),
    "piper": ("sipagent.providers.offline.tts", "PiperEngine"),
}

_HEADER = struct.Struct(">I")
_MAX_MESSAGE = 64 << 20
_CONTROL = 0
_STOP_TIMEOUT = 2.0

Reply = tuple[str, Any]
ReplyHandler = Callable[[str, Any], None]
"""Called on the loop with each reply ``(kind, payload)`` of a session, in order; must not block."""


class WorkerSession(Protocol):
    info: Any
    """Sent back with the ``opened`` reply (e.g. what the engine could not use from the config)."""

    def handle(self, op: str, payload: Any) -> list[Reply]: ...

    def close(self) -> None: ...


class WorkerEngine(Protocol):
    def warm(self, config: Any) -> None:
        """Load what sessions opened with ``config`` will need, so the first one opens fast."""

    def open(self, config: Any) -> WorkerSession: ...

    def idle(self) -> None:
        """Called when no request is waiting: a chance to prepare for the next session (keep it short)."""


# ---------------------------------------------------------------------------------------------------------------
# Worker side: a blocking request/reply loop. It runs in its own process, where blocking is the point.


def _read_exactly(fd: int, size: int) -> bytes | None:
    # Unbuffered reads straight from the pipe: no bytes hide in a Python buffer, so select() on the fd tells the
    # truth about whether a request is waiting.
    parts: list[bytes] = []
    while size:
        part = os.read(fd, size)
        if not part:
            return None
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def _read_message(fd: int) -> tuple[int, str, Any] | None:
    header = _read_exactly(fd, _HEADER.size)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    body = _read_exactly(fd, length)
    if body is None:
        return None
    message: tuple[int, str, Any] = pickle.loads(body)
    return message


def _pending(fd: int) -> bool:
    readable, _, _ = select.select([fd], [], [], 0)
    return bool(readable)


def _error_reply(exc: BaseException) -> Reply:
    if isinstance(exc, ProviderError):
        return "error", (type(exc).__name__, str(exc), exc.retryable)
    return "error", (type(exc).__name__, f"{type(exc).__name__}: {exc}", False)


def serve() -> None:
    """Entry point of a worker process: answer requests from stdin on stdout until stdin closes."""
    niceness = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    if niceness:
        # Below the event loop's process: under CPU contention the media clock must win over decoding.
        os.nice(niceness)
    # The parent ends us by closing stdin; a Ctrl-C in the terminal goes to the whole process group.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever a C library prints goes to stderr instead of corrupting the protocol
    inp = sys.stdin.fileno()
    engines: dict[str, WorkerEngine] = {}
    sessions: dict[int, WorkerSession] = {}

    def engine(name: str) -> WorkerEngine:
        if name not in engines:
            if name not in ENGINES:
                raise ProviderConfigError(f"unknown offline engine {name!r}")
            module, cls = ENGINES[name]
            engines[name] = getattr(importlib.import_module(module), cls)()
        return engines[name]

    while True:
        if not _pending(inp):
            for warm_engine in engines.values():
                try:
                    warm_engine.idle()
                except Exception:  # a failed spare load is retried by the next request that needs one
                    traceback.print_exc()
        if (message := _read_message(inp)) is None:
            break
        sid, op, payload = message
        replies: list[Reply]
        try:
            if op == "warm":
                for name, config in payload:
                    engine(name).warm(config)
                replies = [("warmed", None)]
            elif op == "open":
                name, config = payload
                opened = sessions[sid] = engine(name).open(config)
                replies = [("opened", opened.info)]
            elif op == "close":
                closing = sessions.pop(sid, None)
                if closing is not None:
                    closing.close()
                replies = []
            else:
                session = sessions.get(sid)
                replies = [] if session is None else session.handle(op, payload)
        except Exception as exc:  # any engine failure is reported to the session instead of killing the worker
            replies = [_error_reply(exc)]
        for kind, data in replies:
            body = pickle.dumps((sid, kind, data), protocol=pickle.HIGHEST_PROTOCOL)
            out.write(_HEADER.pack(len(body)))
            out.write(body)
        if replies:
            out.flush()
    for session in sessions.values():
        session.close()


# ---------------------------------------------------------------------------------------------------------------
# Loop side.


def error_from_reply(payload: Any) -> ProviderError:
    """Rebuild the typed error a worker reported."""
    name, message, retryable = payload
    if name == "ProviderConfigError":
        return ProviderConfigError(message)
    if name == "ProviderConnectionError":
        return ProviderConnectionError(message, retryable=bool(retryable))
    if name == "ProviderTimeoutError":
        return ProviderTimeoutError(message, retryable=bool(retryable))
    return ProviderError(message, retryable=bool(retryable))


class Channel:
    """One session in one worker, seen from the loop: ``send`` never blocks, replies go to the handler."""

    __slots__ = ("_handler", "_worker", "key", "sid")

    def __init__(self, worker: _Worker, sid: int, key: str, handler: ReplyHandler) -> None:
        self._worker = worker
        self.sid = sid
        self.key = key
        self._handler: ReplyHandler | None = handler

    @property
    def closed(self) -> bool:
        return self._handler is None

    def send(self, op: str, payload: Any = None) -> None:
        if self._handler is not None:
            self._worker.send(self.sid, op, payload)

    def close(self) -> None:
        """Stop the session in the worker; replies still in flight are dropped."""
        if self._handler is not None:
            self._handler = None
            self._worker.detach(self)
            self._worker.send(self.sid, "close", None)

    def deliver(self, kind: str, payload: Any) -> None:
        if self._handler is not None:
            self._handler(kind, payload)


class _Worker:
    __slots__ = ("_log", "_reader", "_warmed", "_writer", "channels", "index", "process", "task")

    def __init__(self, index: int, process: asyncio.subprocess.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.index = index
        self.process = process
        self._writer = process.stdin
        self._reader = process.stdout
        self.channels: dict[int, Channel] = {}
        self._warmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._log = get_logger(worker=index, pid=process.pid)
        self.task = asyncio.create_task(self._read_loop(), name=f"offline-worker-{index}")

    @property
    def alive(self) -> bool:
        return not self.task.done()

    def send(self, sid: int, op: str, payload: Any) -> None:
        if not self.alive or self._writer.is_closing():
            return
        body = pickle.dumps((sid, op, payload), protocol=pickle.HIGHEST_PROTOCOL)
        self._writer.write(_HEADER.pack(len(body)) + body)

    def detach(self, channel: Channel) -> None:
        self.channels.pop(channel.sid, None)

    async def warm(self, engines: Sequence[tuple[str, Any]]) -> None:
        self.send(_CONTROL, "warm", tuple(engines))
        await self._warmed

    async def _read_loop(self) -> None:
        reason = "exited"
        try:
            while True:
                (length,) = _HEADER.unpack(await self._reader.readexactly(_HEADER.size))
                if length > _MAX_MESSAGE:
                    reason = f"sent an oversized message ({length} bytes)"
                    break
                sid, kind, payload = pickle.loads(await self._reader.readexactly(length))
                if sid == _CONTROL:
                    self._on_control(kind, payload)
                    continue
                channel = self.channels.get(sid)
                if channel is None:
                    continue  # closed meanwhile
                try:
                    channel.deliver(kind, payload)
                except Exception:  # one session's bug must not cut every other call off this worker
                    self._log.exception("offline reply handler failed", sid=sid, kind=kind)
                    channel.close()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._fail_all(f"offline worker {self.index} {reason}")

    def _on_control(self, kind: str, payload: Any) -> None:
        if self._warmed.done():
            return
        if kind == "error":
            self._warmed.set_exception(error_from_reply(payload))
        else:
            self._warmed.set_result(None)

    def _fail_all(self, message: str) -> None:
        error = ProviderConnectionError(message)
        if not self._warmed.done():
            self._warmed.set_exception(error)
        channels, self.channels = list(self.channels.values()), {}
        for channel in channels:
            channel.deliver("error", (type(error).__name__, message, True))

    async def stop(self) -> None:
        with contextlib.suppress(ConnectionError):
            self._writer.close()  # EOF on stdin: the worker's loop ends
        try:
            await asyncio.wait_for(self.process.wait(), _STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


class WorkerPool:
    """A fixed number of worker processes shared by every call; sessions are pinned to one worker."""

    def __init__(self, size: int = 1, *, warm: Sequence[tuple[str, Any]] = (), niceness: int = 5) -> None:
        """``warm`` lists ``(engine, config)`` pairs every worker loads at start; ``niceness`` lowers the workers'
        CPU priority below the event loop's."""
        if size < 1:
            raise ValueError(f"WorkerPool size must be at least 1, got {size}")
        self.size = size
        self._warm = tuple(warm)
        self._niceness = niceness
        self._workers: list[_Worker | None] = [None] * size
        self._sids = itertools.count(_CONTROL + 1)
        self._started = False
        self._starting: asyncio.Lock | None = None

    @property
    def loads(self) -> list[int]:
        """Open sessions per worker."""
        return [0 if w is None else len(w.channels) for w in self._workers]

    @property
    def pids(self) -> list[int | None]:
        return [None if w is None or not w.alive else w.process.pid for w in self._workers]

    async def start(self) -> None:
        """Spawn and warm every worker (in parallel); idempotent."""
        if self._started:
            return
        self._starting = self._starting or asyncio.Lock()
        async with self._starting:
            if not self._started:
                await asyncio.gather(*(self._spawn(i) for i in range(self.size)))
                self._started = True

    async def open(self, engine: str, config: Any, handler: ReplyHandler, *, key: str) -> Channel:
        """Open a session of ``engine`` on the worker serving ``key`` (or the least loaded one)."""
        await self.start()
        index = self._pick(key)
        worker = self._workers[index]
        if worker is None or not worker.alive:
            assert self._starting is not None
            async with self._starting:  # one respawn even if several calls notice the dead worker at once
                worker = self._workers[index]
                if worker is None or not worker.alive:
                    worker = await self._spawn(index)
        channel = Channel(worker, next(self._sids), key, handler)
        worker.channels[channel.sid] = channel
        worker.send(channel.sid, "open", (engine, config))
        return channel

    async def aclose(self) -> None:
        workers = [w for w in self._workers if w is not None]
        self._workers = [None] * self.size
        self._started = False
        await asyncio.gather(*(w.stop() for w in workers))

    def _pick(self, key: str) -> int:
        best, best_load = 0, -1
        for i, worker in enumerate(self._workers):
            if worker is None or not worker.alive:
                load = 0
            elif any(c.key == key for c in worker.channels.values()):
                return i
            else:
                load = len(worker.channels)
            if best_load < 0 or load < best_load:
                best, best_load = i, load
        return best

    async def _spawn(self, index: int) -> _Worker:
        old = self._workers[index]
        if old is not None:
            await old.stop()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from sipagent.providers.offline.worker import serve; serve()",
            str(self._niceness),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        worker = _Worker(index, process)
        self._workers[index] = worker
        try:
            await worker.warm(self._warm)
        except BaseException:
            await worker.stop()
            self._workers[index] = None
            raise
        return worker
