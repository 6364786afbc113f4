"""Watching the clients' requests for progress (see :mod:`fsblob.stall`).

``requests`` (WebHDFS, OSS): :func:`mount` puts a :class:`TimeoutAdapter` on the
session of fsblob's own filesystem instance. Every request gets the attempt's
connect timeout, and its socket a timeout of ``stall_timeout`` per read and per
write (a silent server, a peer that stops reading an upload); the socket counts
the bytes each way, and a read or write that returns after fewer than the floor's
bytes moved over the last ``stall_timeout`` seconds of the request raises
:class:`~fsblob.stall.TransferStalled` (a trickling server). It is not an
``OSError``, so oss2's and ossfs's retry loops let it through to fsblob's.

aiohttp (S3, in fsspec's event loop): :func:`watch_async` gives the s3fs instance
sockets that count the bytes each way, and runs each of its calls
(:func:`run`) beside a watcher that cancels the call once that instance's sockets
moved fewer than the floor's bytes over the last ``stall_timeout`` seconds of it:
aiohttp has no timeout at all while it writes a request body.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import io
import socket
import struct
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from fsblob import stall

try:  # the send queue's unacknowledged bytes (Linux; elsewhere sent bytes count)
    import fcntl
    import termios

    _OUTQ: int | None = termios.TIOCOUTQ
except (ImportError, AttributeError):  # pragma: no cover
    _OUTQ = None

# -- requests: one meter per request, checked on every socket read and write -----------

_REQUEST = threading.local()


class TimeoutAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose requests are cut when they stop making progress."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def send(self, request: requests.PreparedRequest, stream: bool = False,  # type: ignore[override]
             timeout: Any = None, verify: Any = True, cert: Any = None,
             proxies: Any = None) -> requests.Response:
        given = stall.limits()
        asked = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        connect = min(given.connect, asked[0]) if asked[0] else given.connect
        _REQUEST.meter, _REQUEST.limits = stall.Meter(2 * given.stall), given
        return super().send(request, stream=stream, timeout=(connect, given.stall),
                            verify=verify, cert=cert, proxies=proxies)


class _GuardedSocket:
    """A connected socket (plain or TLS) whose reads and writes are metered for the
    request running in this thread; everything else is the socket's own.

    Reads and writes wait at most :data:`POLL` seconds at a time: between waits
    the bytes the peer has taken from the send queue (:func:`unsent`) count as
    progress too, so a large body buffered by the kernel and draining slowly to a
    steady peer is not taken for a stall, and a silent or stuck peer is cut once
    the meter says so."""

    def __init__(self, sock: Any, endpoint: str) -> None:
        self._sock = sock
        self._endpoint = endpoint
        self._sent = self._delivered = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        """A buffered reader whose reads come through :meth:`recv_into` (http.client
        reads responses from it)."""
        self._sock._io_refs += 1
        return io.BufferedReader(socket.SocketIO(self, "rb"))  # type: ignore[arg-type]

    def _decref_socketios(self) -> None:
        self._sock._decref_socketios()

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        n = int(self._wait(lambda: self._sock.recv_into(buffer, nbytes, flags)))
        self._moved(n)
        return n

    def recv(self, size: int, flags: int = 0) -> bytes:
        data = bytes(self._wait(lambda: self._sock.recv(size, flags)))
        self._moved(len(data))
        return data

    def send(self, data: Any, flags: int = 0) -> int:
        n = int(self._wait(lambda: self._sock.send(data, flags)))
        self._sent += n
        self._moved(0)
        return n

    def sendall(self, data: Any, flags: int = 0) -> None:
        """Send in pieces: a socket's own ``sendall`` holds its timeout for the whole
        buffer, which cuts a steady but slow upload of a large one."""
        view = memoryview(data).cast("B")
        while view:
            view = view[self.send(view[:2**16], flags):]

    def _wait(self, op: Callable[[], Any]) -> Any:
        """``op()``, retried while the request is still making progress."""
        while True:
            if self._sock.gettimeout() != POLL:
                self._sock.settimeout(POLL)
            try:
                return op()
            except TimeoutError:
                self._moved(0)

    def _moved(self, received: int) -> None:
        meter: stall.Meter | None = getattr(_REQUEST, "meter", None)
        if meter is None:
            return
        delivered = self._sent - unsent(self._sock)
        meter.moved(received + max(0, delivered - self._delivered))
        self._delivered = max(self._delivered, delivered)
        given = _REQUEST.limits
        if meter.stalled(given):
            raise stall.stalled_error(given, self._endpoint,
                                      meter.recent(given.stall, time.monotonic()))


#: Seconds a socket read or write waits before the request's progress is checked.
POLL = 0.5


def unsent(sock: Any) -> int:
    """Bytes written to a TCP socket that the peer has not yet acknowledged (Linux's
    ``SIOCOUTQ``); 0 where that cannot be asked."""
    if _OUTQ is None:
        return 0
    try:
        return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0"))[0])
    except (OSError, ValueError):
        return 0


class _GuardedHTTPConnection(HTTPConnection):
    def connect(self) -> None:
        super().connect()
        self.sock = _GuardedSocket(self.sock, f"{self.host}:{self.port}")  # type: ignore[assignment]


class _GuardedHTTPSConnection(HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        self.sock = _GuardedSocket(self.sock, f"{self.host}:{self.port}")  # type: ignore[assignment]


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


def mount(session: requests.Session) -> None:
    """Send every http(s) request of ``session`` through a :class:`TimeoutAdapter`
    (once; later calls keep it)."""
    if not isinstance(session.get_adapter("http://x"), TimeoutAdapter):
        pool = getattr(session.get_adapter("http://x"), "_pool_maxsize", 10)
        for prefix in ("http://", "https://"):
            session.mount(prefix, TimeoutAdapter(pool_connections=pool, pool_maxsize=pool))


# -- aiohttp (s3fs): one meter per filesystem instance, a watcher per call ----------------


class _CountingSocket(socket.socket):
    """A socket that tells a :class:`~fsblob.stall.Meter` of every byte it receives
    (asyncio's transports call ``recv``/``recv_into``), and of every byte the peer
    acknowledged of what it sent, when :func:`poll` asks."""

    meter: stall.Meter | None = None
    sent = delivered = 0

    def send(self, data: Any, flags: int = 0) -> int:
        n = super().send(data, flags)
        self.sent += n
        return n

    def poll(self) -> None:
        """Count what the peer has taken of what was sent."""
        if self.meter is not None and self.fileno() >= 0:
            delivered = self.sent - unsent(self)
            self.meter.moved(delivered - self.delivered)
            self.delivered = max(self.delivered, delivered)

    def recv(self, size: int, flags: int = 0) -> bytes:
        data = super().recv(size, flags)
        if self.meter is not None:
            self.meter.moved(len(data))
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        n = super().recv_into(buffer, nbytes, flags)
        if self.meter is not None:
            self.meter.moved(n)
        return n


#: The live sockets of each watched filesystem's meter.
_SOCKETS: weakref.WeakKeyDictionary[stall.Meter, weakref.WeakSet[_CountingSocket]] = (
    weakref.WeakKeyDictionary())
_SOCKETS_LOCK = threading.Lock()


def socket_factory(meter: stall.Meter) -> Callable[[tuple[Any, ...]], socket.socket]:
    """An aiohttp ``socket_factory`` whose sockets count their bytes into ``meter``."""

    def make(addr_info: tuple[Any, ...]) -> socket.socket:
        family, kind, proto = addr_info[:3]
        sock = _CountingSocket(family, kind, proto)
        sock.meter = meter
        with _SOCKETS_LOCK:
            _SOCKETS.setdefault(meter, weakref.WeakSet()).add(sock)
        return sock

    return make


def watch_async(fs: Any, meter: stall.Meter, endpoint: str) -> None:
    """Run every call of the async filesystem ``fs`` (its sync methods) through
    :func:`run`; ``meter`` counts the bytes of its sockets."""
    fs._fsblob_meter, fs._fsblob_endpoint = meter, endpoint
    for name in list(vars(fs)):
        coroutine = getattr(fs, "_" + name, None)
        if inspect.iscoroutinefunction(coroutine) and callable(getattr(fs, name)):
            setattr(fs, name, functools.partial(run, fs, coroutine))


def run(fs: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fsspec.asyn.sync(fs.loop, fn, *args, **kwargs)``, cut with
    :class:`~fsblob.stall.TransferStalled` once the sockets of ``fs`` stop making
    progress (see :func:`watch_async`; without it, plain ``sync``)."""
    from fsspec.asyn import sync

    meter: stall.Meter | None = getattr(fs, "_fsblob_meter", None)
    if meter is None:
        return sync(fs.loop, fn, *args, **kwargs)
    return sync(fs.loop, _watched, fn(*args, **kwargs), meter, stall.limits(),
                getattr(fs, "_fsblob_endpoint", "the store"))


async def _watched(coro: Any, meter: stall.Meter, given: stall.Limits, endpoint: str) -> Any:
    since = time.monotonic()
    task = asyncio.ensure_future(coro)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=min(0.5, given.stall / 4))
            if done:
                return task.result()
            with _SOCKETS_LOCK:
                live = list(_SOCKETS.get(meter, ()))
            for sock in live:
                sock.poll()
            if meter.stalled(given, since):
                moved = meter.recent(given.stall, time.monotonic())
                task.cancel()  # its own cleanup (an abort) has a budget of its own
                await asyncio.wait({task}, timeout=given.cleanup.stall + given.connect)
                raise stall.stalled_error(given, endpoint, moved)
    finally:
        if not task.done():
            task.cancel()


def endpoint_of(url: str | None) -> str:
    """``host:port`` of a URL, for messages."""
    parts = urlsplit(url or "")
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname or url)
