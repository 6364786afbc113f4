"""A TCP server that accepts connections and never answers (a stuck proxy or namenode).

It reads and discards whatever a client sends, so a request body never blocks on a
full socket buffer, and it never writes a byte. Clients must give up on their own.
"""

from __future__ import annotations

import socket
import threading


class SilentServer:
    """Listens on 127.0.0.1; every connection is accepted, drained and left unanswered."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.accepted = 0
        #: The first line of each request received (``"GET /b?list-type=2 HTTP/1.1"``).
        self.requests: list[str] = []
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with self._lock:
            for conn in self._conns:
                conn.close()
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
                self.accepted += 1
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        first = b""
        while not self._stop.is_set():
            try:
                data = conn.recv(65536)
                if not data:
                    return
                if b"\n" not in first:
                    first += data
                    if b"\n" in first:
                        with self._lock:
                            self.requests.append(first.split(b"\r\n")[0].decode("latin-1"))
            except TimeoutError:
                continue
            except OSError:
                return
