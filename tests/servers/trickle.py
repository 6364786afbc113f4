"""A TCP proxy that paces the bytes between a client and a server (standard library only).

``TrickleProxy(upstream_url)`` listens on 127.0.0.1 and relays every connection to
the upstream server. :meth:`TrickleProxy.shape` decides what happens to the bytes
of one direction (``"down"``: server to client, ``"up"``: client to server) once
``after`` bytes have passed that way at full speed (counted over all connections
since the call):

* ``"trickle"``: one byte per second;
* ``"stall"``: nothing more (the connection stays open, silent; an upload's
  sender sees its buffers fill);
* ``"throttle"``: ``rate`` bytes per second in both directions (one token bucket
  per direction, shared by all connections): a slow but steady link.

A TCP proxy, not an HTTP one: headers, listings and bodies are paced alike.
"""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit

PIECE = 64 * 1024


class _Bucket:
    """A token bucket: ``take(n)`` waits until ``n`` bytes may pass at ``rate``/s."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def take(self, n: int) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + n / self.rate
        time.sleep(max(0.0, start - now))


class TrickleProxy:
    """Relays 127.0.0.1:<port> to ``upstream``, pacing bytes as :meth:`shape` says."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._mode, self._direction, self._left = "pass", "down", 0
        self._one, self._paced = False, None  # one_connection, and which one it is
        self._buckets: dict[str, _Bucket] = {}
        self._thread = threading.Thread(target=self._accept, name="trickle-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def shape(self, mode: str = "pass", direction: str = "down", *, after: int = 0,
              rate: float = 0.0, one_connection: bool = False) -> None:
        """Pace from now on: ``mode`` is ``"pass"``, ``"trickle"``, ``"stall"`` or
        ``"throttle"`` (``rate`` bytes/s each way); ``direction`` (``"down"``/``"up"``)
        and ``after`` (bytes first passed at full speed) apply to trickle and stall.
        ``one_connection``: only the connection that used up ``after`` is paced;
        the others, and new ones, pass (one stuck connection to a healthy server)."""
        assert mode in ("pass", "trickle", "stall", "throttle") and direction in ("down", "up")
        with self._lock:
            self._mode, self._direction, self._left = mode, direction, after
            self._one, self._paced = one_connection, None
            self._buckets = {d: _Bucket(rate) for d in ("down", "up")} if mode == "throttle" else {}

    def __enter__(self) -> TrickleProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.drop()
        self._sock.close()

    def drop(self) -> None:
        """Close every relayed connection (both sides)."""
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    # -- relaying ------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                sock.settimeout(None)
            with self._lock:
                self._conns += [client, server]
            for src, dst, direction in ((client, server, "up"), (server, client, "down")):
                threading.Thread(target=self._pump, args=(src, dst, direction),
                                 daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        try:
            while not self._stop.is_set():
                data = src.recv(PIECE)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                self._forward(dst, data, direction)
        except OSError:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _forward(self, dst: socket.socket, data: bytes, direction: str) -> None:
        with self._lock:
            mode, paced, bucket = self._mode, self._direction == direction, self._buckets.get(direction)
            if self._one and self._paced is not None and self._paced is not dst:
                paced = False  # another connection is the stuck one
            free = len(data) if mode in ("pass", "throttle") or not paced else min(self._left, len(data))
            if mode not in ("pass", "throttle") and paced:
                self._left -= free
                if free < len(data) and self._paced is None:
                    self._paced = dst
        if bucket is not None:
            for start in range(0, len(data), 16384):
                bucket.take(len(data[start:start + 16384]))
                dst.sendall(data[start:start + 16384])
            return
        dst.sendall(data[:free])
        rest = data[free:]
        while rest and not self._stop.is_set():
            if dst.fileno() < 0:  # dropped
                return
            if mode == "stall":
                time.sleep(0.2)
                continue
            dst.sendall(rest[:1])  # trickle: one byte a second
            rest = rest[1:]
            self._stop.wait(1.0)
