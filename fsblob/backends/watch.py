"""Watching fsblob's s3fs instance (aiohttp, in fsspec's event loop) for progress.

:func:`watch_async` gives the instance sockets that count the bytes each way
(received, and those of the send queue the peer acknowledged), and runs each of
its calls (:func:`run`) beside a watcher that cancels the call once those sockets
moved fewer than the floor's bytes over the last ``stall_timeout`` seconds of it
(see :mod:`fsblob.stall`): aiohttp has no timeout at all while it writes a request
body, and none on a body that trickles.

The meter is the instance's, not the call's: a call stuck while another of the
same instance moves bytes is cut once that one ends.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import socket
import struct
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from fsblob import stall

try:  # the send queue's unacknowledged bytes (Linux; elsewhere sent bytes count)
    import fcntl
    import termios

    _OUTQ: int | None = termios.TIOCOUTQ
except (ImportError, AttributeError):  # pragma: no cover
    _OUTQ = None


def unsent(sock: Any) -> int:
    """Bytes written to a TCP socket that the peer has not yet acknowledged (Linux's
    ``SIOCOUTQ``); 0 where that cannot be asked."""
    if _OUTQ is None:
        return 0
    try:
        return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0"))[0])
    except (OSError, ValueError):
        return 0


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

    def sendmsg(self, buffers: Any, *args: Any) -> int:  # asyncio's writelines (3.12+)
        n = super().sendmsg(buffers, *args)
        self.sent += n
        return n

    #: A connect is under way: its time is the connect timeout's, not stall_timeout's
    #: (a SYN dropped by a full backlog is sent again a second or more later).
    connecting = False

    def connect(self, address: Any) -> None:
        self.connecting = True
        try:
            super().connect(address)  # at once, or BlockingIOError: see getsockopt
        except BlockingIOError:
            raise
        except BaseException:
            self.connecting = False
            raise
        self._connected()

    def getsockopt(self, *args: Any) -> Any:
        value = super().getsockopt(*args)
        if args == (socket.SOL_SOCKET, socket.SO_ERROR) and self.connecting:
            self._connected()  # asyncio asks this when a non-blocking connect ends
        return value

    def _connected(self) -> None:
        """The connect ended: progress counts from now."""
        self.connecting = False
        if self.meter is not None:
            self.meter.restart()

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
    for name in dir(fs):  # fsspec's mirrored methods (on the instance) and s3fs's own
        coroutine = None if name.startswith("_") else getattr(fs, "_" + name, None)
        if inspect.iscoroutinefunction(coroutine):
            method = getattr(fs, name)
            if callable(method) and not inspect.iscoroutinefunction(method):
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
                if sock.connecting:  # bounded by the connect timeout, not by the floor
                    meter.restart()
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
