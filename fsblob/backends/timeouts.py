"""Watching the ``requests`` sessions of fsblob's filesystems (WebHDFS, OSS) for progress.

:func:`mount` puts a :class:`TimeoutAdapter` on the session of fsblob's own
filesystem instance (see :mod:`fsblob.stall`). Every request gets the attempt's
connect timeout; its socket counts the bytes each way (received, and those of the
send queue the peer acknowledged), waits at most :data:`POLL` seconds per read or
write, and raises :class:`~fsblob.stall.TransferStalled` once fewer than the
floor's bytes moved over the last ``stall_timeout`` seconds of the request: a
silent server, a trickling one, a peer that stops reading an upload. It is not
an ``OSError``, so oss2's and ossfs's retry loops let it through to fsblob's.
S3 (aiohttp) is watched by :mod:`fsblob.backends.watch`.
"""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from fsblob import stall
from fsblob.backends.watch import unsent

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
        given = getattr(_REQUEST, "limits", None) or stall.limits()
        poll = min(POLL, given.stall / 4)
        started = time.monotonic()
        while True:
            if self._sock.gettimeout() != poll:
                self._sock.settimeout(poll)
            try:
                return op()
            except TimeoutError:
                self._moved(0)
                if getattr(_REQUEST, "meter", None) is None and (
                        time.monotonic() - started >= given.stall):  # read outside a request
                    raise stall.stalled_error(given, self._endpoint) from None

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


@dataclass(frozen=True)
class Carried:
    """The meter of a request whose answer is read on later, maybe in another thread."""

    meter: stall.Meter
    limits: stall.Limits


def carried() -> Carried | None:
    """The meter of the request this thread sent last (call it right after the
    request returned its headers): its body, read on elsewhere, stays bounded by
    the floor (:func:`reading`)."""
    meter, limits = getattr(_REQUEST, "meter", None), getattr(_REQUEST, "limits", None)
    return Carried(meter, limits) if meter is not None and limits is not None else None


@contextlib.contextmanager
def reading(request: Carried | None) -> Iterator[None]:
    """Reads in this thread count for ``request`` (its meter restarted: the time
    its answer waited to be read on is no stall), and are cut as its were."""
    if request is None:
        yield
        return
    before = getattr(_REQUEST, "meter", None), getattr(_REQUEST, "limits", None)
    request.meter.restart()
    _REQUEST.meter, _REQUEST.limits = request.meter, request.limits
    try:
        yield
    finally:
        _REQUEST.meter, _REQUEST.limits = before


#: Seconds a socket read or write waits before the request's progress is checked.
POLL = 0.5


def _connected() -> None:
    """A connection of the request in this thread is made: its progress counts from
    now (the time to connect is bounded by the connect timeout, and a SYN the
    server's full backlog dropped costs a second or more before it is answered)."""
    meter: stall.Meter | None = getattr(_REQUEST, "meter", None)
    if meter is not None:
        meter.restart()


class _GuardedHTTPConnection(HTTPConnection):
    def connect(self) -> None:
        super().connect()
        self.sock = _GuardedSocket(self.sock, f"{self.host}:{self.port}")  # type: ignore[assignment]
        _connected()


class _GuardedHTTPSConnection(HTTPSConnection):
    def connect(self) -> None:
        super().connect()  # the TLS handshake too: its bytes were not counted
        self.sock = _GuardedSocket(self.sock, f"{self.host}:{self.port}")  # type: ignore[assignment]
        _connected()


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
