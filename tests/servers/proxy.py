"""Fault-injecting reverse HTTP proxy for tests (standard library only).

``FaultProxy`` sits in front of an upstream HTTP server (for example moto's S3
server) and streams requests and responses through in both directions.  Tests
can make it answer errors, drop connections, or die in the middle of a
transfer.  An optional ``Translator`` rewrites traffic, e.g. to make an S3
server speak another dialect (see ``oss.py``).
"""

from __future__ import annotations

import http.client
import socket
import threading
import traceback
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NoReturn, Protocol
from urllib.parse import unquote, urlsplit
from xml.sax.saxutils import escape

CHUNK = 64 * 1024
UPSTREAM_TIMEOUT = 300.0
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)
ERROR_CODES = {500: "InternalError", 503: "SlowDown"}


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Request:
    """A request on its way upstream; translators may rewrite it in place."""

    method: str
    path: str  # path and query, as sent upstream
    headers: dict[str, str]  # lower-case names, hop-by-hop headers removed
    body: Iterable[bytes]  # streamed body; consume at most once
    chunked: bool = False  # body has no Content-Length and is sent chunked
    notes: dict[str, Any] = field(default_factory=dict)  # translator scratch space


@dataclass
class Response:
    """A response on its way to the client; translators may rewrite it in place.

    ``body`` holds a complete body (local or buffered responses); otherwise the
    body is streamed from ``stream`` untouched.
    """

    status: int
    headers: dict[str, str]  # lower-case names, hop-by-hop headers removed
    body: bytes | None = None
    stream: http.client.HTTPResponse | None = None

    def read_body(self) -> bytes:
        """Buffer and return the whole body (meant for small API responses)."""
        if self.body is None:
            self.body = self.stream.read() if self.stream else b""
            self.stream = None
        return self.body


def error_response(status: int, code: str | None = None, message: str = "") -> Response:
    """Build an S3-style XML error response."""
    code = code or ERROR_CODES.get(status, "ServiceUnavailable")
    request_id = uuid.uuid4().hex.upper()
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message or code)}</Message>"
        f"<RequestId>{request_id}</RequestId><HostId>faultproxy</HostId></Error>"
    ).encode()
    headers = {"content-type": "application/xml", "x-amz-request-id": request_id}
    return Response(status, headers, body)


class Upstream:
    """Connections to the upstream server, also usable by translators."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.netloc = parts.netloc

    def open(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes | Iterable[bytes] = b"",
        *,
        chunked: bool = False,
        on_connect: Callable[[socket.socket], None] | None = None,
    ) -> http.client.HTTPResponse:
        """Send a request on a fresh connection and return the unread response.

        ``on_connect(sock)`` is called with the new socket before sending.  The
        connection closes once the response has been read or closed.
        """
        conn = http.client.HTTPConnection(self.host, self.port, timeout=UPSTREAM_TIMEOUT)
        conn.connect()
        if on_connect is not None:
            on_connect(conn.sock)
        headers = dict(headers or {})
        if isinstance(body, bytes):
            headers["content-length"] = str(len(body))
            body = [body] if body else []
        headers.update({"host": self.netloc, "connection": "close"})
        if chunked:
            headers["transfer-encoding"] = "chunked"
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        for data in body:
            if chunked and data:
                conn.send(b"%x\r\n%b\r\n" % (len(data), data))
            elif data:
                conn.send(data)
        if chunked:
            conn.send(b"0\r\n\r\n")
        return conn.getresponse()

    def call(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> Response:
        """Send a request and return the response with its body buffered."""
        resp = self.open(method, path, headers, body)
        with resp:
            return Response(resp.status, _clean_headers(resp.getheaders()), resp.read())


class Translator(Protocol):
    """Plug-in that rewrites traffic passing through a ``FaultProxy``."""

    def on_request(self, req: Request, upstream: Upstream) -> Response | None:
        """Rewrite ``req`` in place, or answer it locally by returning a response."""

    def on_response(self, req: Request, resp: Response, upstream: Upstream) -> None:
        """Rewrite ``resp`` in place; call ``resp.read_body()`` to rewrite its body."""


def _clean_headers(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {k.lower(): v for k, v in items if k.lower() not in HOP_BY_HOP}


class _Killed(Exception):
    """The proxy was stopped while this request was in flight."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, proxy: FaultProxy) -> None:
        self.proxy = proxy
        super().__init__(("127.0.0.1", port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connections broken by stop() or by clients are expected: stay quiet."""


class FaultProxy:
    """Reverse HTTP proxy in front of ``upstream`` that can inject faults."""

    def __init__(
        self, upstream: str, *, translator: Translator | None = None, port: int = 0
    ) -> None:
        self.upstream = Upstream(upstream)
        self.translator = translator
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._stop_lock = threading.Lock()
        self._server: _Server | None = None
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._requests: list[tuple[str, str]] = []
        self._fail_left = 0
        self._fail_status = 503
        self._reset_left = 0
        self._corrupt_left = 0
        self._corrupt_ending = ""
        self._corrupt_upload_left = 0
        self._fail_code: str | None = None
        self._fail_when: Callable[[str, str], bool] | None = None
        self._kill_budget: int | None = None
        #: Answer like older MinIO/Ceph/R2: checksum headers of requests are dropped
        #: (nothing is checked or kept), and no x-amz-checksum-*/x-oss-hash-crc64ecma
        #: header is answered.
        self.strip_checksums = False
        #: Answer COMPOSITE checksums for multipart uploads asked to be FULL_OBJECT
        #: (stores that know only COMPOSITE CRCs).
        self.composite_checksums = False
        #: Ignore ``partNumber`` on HEAD and GET (stores that cannot tell a part's size).
        self.ignore_part_numbers = False
        #: Drop ``Range`` from GETs: answer the whole object with a 200 (servers and
        #: caches that ignore ranges).
        self.ignore_ranges = False
        #: Answer GETs without Content-Length, in chunks (servers and proxies that
        #: stream a body of unannounced length).
        self.chunk_gets = False
        self._statuses: list[tuple[str, str, int]] = []

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> None:
        """Listen on ``self.url`` and serve in a background thread."""
        with self._stop_lock:
            if self._server is not None:
                return
            self._server = _Server(self.port, self)
            threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Die abruptly: close the listener and every live connection, both sides."""
        with self._stop_lock:
            server, self._server = self._server, None
            with self._lock:
                self._kill_budget = None
                live, self._sockets = list(self._sockets), weakref.WeakSet()
            # Cut the live connections first: server.shutdown() waits for the accept
            # loop (up to half a second), and meanwhile they would stream on, past
            # kill_after's budget, as if the server had not died.
            for sock in live:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            if server is not None:
                server.shutdown()
                server.server_close()

    @property
    def running(self) -> bool:
        """Whether it listens (``kill_after`` stops it)."""
        return self._server is not None

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults --------------------------------------------------------------
    def fail_next(self, n: int, status: int = 503, *, code: str | None = None,
                  when: Callable[[str, str], bool] | None = None) -> None:
        """Answer the next ``n`` requests (those for which ``when(method, path)`` holds,
        if given) with ``status`` and an S3-style error body with ``code``."""
        with self._lock:
            self._fail_left, self._fail_status = n, status
            self._fail_code, self._fail_when = code, when

    def corrupt_upload_next(self, n: int) -> None:
        """Flip the first byte of the next ``n`` object PUT bodies (PutObject, UploadPart)
        on their way to the store, which stores them as received."""
        with self._lock:
            self._corrupt_upload_left = n

    def _take_upload_corruption(self) -> bool:
        with self._lock:
            if self._corrupt_upload_left:
                self._corrupt_upload_left -= 1
                return True
        return False

    def reset_next(self, n: int) -> None:
        """Close the connection without any response for the next ``n`` requests."""
        with self._lock:
            self._reset_left = n

    def kill_after(self, nbytes: int) -> None:
        """Behave like ``stop()`` once ``nbytes`` more body bytes have passed."""
        with self._lock:
            self._kill_budget = nbytes

    def corrupt_next(self, n: int, ending: str = "") -> None:
        """Flip the first byte of the next ``n`` successful object GET bodies, whole
        or ranged (GETs without a query: not listings): one range each; only GETs
        whose path ends with ``ending`` (URL-decoded), if given."""
        with self._lock:
            self._corrupt_left, self._corrupt_ending = n, ending

    def _take_corruption(self, path: str) -> bool:
        with self._lock:
            if self._corrupt_left and unquote(path).endswith(self._corrupt_ending):
                self._corrupt_left -= 1
                return True
        return False

    # -- statistics ----------------------------------------------------------
    @property
    def requests(self) -> list[tuple[str, str]]:
        """(method, path+query) of every request received so far (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def answers(self) -> list[tuple[str, str, int]]:
        """(method, path+query, status) of every answer sent so far (a copy)."""
        with self._lock:
            return list(self._statuses)

    def count(self, method: str | None = None, contains: str = "") -> int:
        """Number of requests with this method (any if None) whose path contains ``contains``."""
        return sum(
            1
            for m, p in self.requests
            if (method is None or m == method.upper()) and contains in p
        )

    def reset_stats(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._requests.clear()
            self._statuses.clear()

    # -- used by the handler -------------------------------------------------
    def _track(self, sock: socket.socket) -> None:
        """Remember a live socket so that stop() can cut it."""
        with self._lock:
            if self._server is None:
                sock.shutdown(socket.SHUT_RDWR)
                raise _Killed
            self._sockets.add(sock)

    def _admit(self, method: str, path: str) -> str | int | None:
        """Record a request and pick its fault: "reset", an error status, or None."""
        with self._lock:
            self._requests.append((method, path))
            if self._reset_left:
                self._reset_left -= 1
                return "reset"
            if self._fail_left and (self._fail_when is None or self._fail_when(method, path)):
                self._fail_left -= 1
                return self._fail_status
        return None

    def _charge(self, data: bytes) -> tuple[bytes, bool]:
        """Charge body bytes against kill_after: (bytes that may pass, budget spent)."""
        with self._lock:
            if self._kill_budget is None:
                return data, False
            data = data[: self._kill_budget]
            self._kill_budget -= len(data)
            return data, self._kill_budget == 0

    def _die(self) -> NoReturn:
        """kill_after fired: stop like a killed server and abandon this request."""
        self.stop()
        raise _Killed


def _flip_first(body: Iterable[bytes]) -> Iterator[bytes]:
    """The body with its first byte flipped: same size, other bytes."""
    flipped = False
    for data in body:
        if data and not flipped:
            data, flipped = bytes([data[0] ^ 0xFF]) + data[1:], True
        yield data


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.proxy._track(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean."""

    def _read_body(self) -> Iterator[bytes]:
        """Yield the request body, de-chunked and charged against kill_after."""
        if self.headers.get("content-length") is not None:
            yield from self._read_exactly(int(self.headers["content-length"]))
        elif "chunked" in self.headers.get("transfer-encoding", "").lower():
            while size := int(self.rfile.readline(1024).split(b";")[0], 16):
                yield from self._read_exactly(size)
                self.rfile.readline(1024)
            while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                pass  # trailers are dropped

    def _read_exactly(self, size: int) -> Iterator[bytes]:
        proxy = self.server.proxy
        while size:
            data = self.rfile.read1(min(size, CHUNK))
            if not data:
                raise ConnectionError("client closed the connection mid-body")
            size -= len(data)
            data, spent = proxy._charge(data)
            if spent:
                proxy._die()
            yield data

    def _handle(self) -> None:
        proxy = self.server.proxy
        fault = proxy._admit(self.command, self.path)
        if fault == "reset":
            self.close_connection = True
            return
        chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        req = Request(
            self.command,
            self.path,
            _clean_headers(self.headers.items()),
            self._read_body(),
            chunked=chunked and "content-length" not in self.headers,
        )
        translator = proxy.translator
        resp: Response | None = None
        if req.method == "PUT" and "x-amz-copy-source" not in req.headers and (
                proxy._take_upload_corruption()):
            req.body = _flip_first(req.body)
        if proxy.ignore_part_numbers and req.method in ("HEAD", "GET") and "partNumber=" in req.path:
            base, _, query = req.path.partition("?")
            query = "&".join(q for q in query.split("&") if not q.startswith("partNumber="))
            req.path = f"{base}?{query}" if query else base
        if proxy.strip_checksums:
            req.headers = {k: v for k, v in req.headers.items()
                           if not k.startswith(("x-amz-checksum-", "x-amz-sdk-checksum-"))}
        if proxy.ignore_ranges and req.method == "GET":
            req.headers = {k: v for k, v in req.headers.items() if k != "range"}
        if proxy.composite_checksums and req.headers.get("x-amz-checksum-type") == "FULL_OBJECT":
            if req.method == "POST" and "uploads" in req.path.split("?", 1)[-1]:
                req.headers["x-amz-checksum-type"] = "COMPOSITE"
            elif req.method == "POST":  # CompleteMultipartUpload: no full-object CRC
                req.headers = {k: v for k, v in req.headers.items()
                               if not k.startswith("x-amz-checksum-")}
        try:
            if isinstance(fault, int):
                resp = error_response(fault, proxy._fail_code)
            elif translator is not None:
                resp = translator.on_request(req, proxy.upstream)
            if resp is None:
                resp = self._forward(req)
            if translator is not None:
                translator.on_response(req, resp, proxy.upstream)
            if proxy.strip_checksums:
                resp.headers = {k: v for k, v in resp.headers.items()
                                if not k.startswith(("x-amz-checksum-", "x-oss-hash-crc64"))}
            if proxy.chunk_gets and req.method == "GET":
                resp.headers.pop("content-length", None)
            for _ in req.body:  # read what nobody consumed, to keep the connection usable
                pass
            self._reply(req, resp)
        except (_Killed, OSError, http.client.HTTPException):
            self.close_connection = True
        except Exception:  # a translator bug: show it, drop the connection
            traceback.print_exc()
            self.close_connection = True
        finally:
            if resp is not None and resp.stream is not None:
                resp.stream.close()

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = _handle

    def _forward(self, req: Request) -> Response:
        proxy = self.server.proxy
        try:
            upstream = proxy.upstream.open(
                req.method,
                req.path,
                req.headers,
                req.body,
                chunked=req.chunked,
                on_connect=proxy._track,
            )
        except ConnectionRefusedError:
            self.close_connection = True
            return error_response(502, "BadGateway", "upstream refused the connection")
        return Response(upstream.status, _clean_headers(upstream.getheaders()), stream=upstream)

    def _reply(self, req: Request, resp: Response) -> None:
        proxy = self.server.proxy
        if resp.stream is None and resp.body is None:
            resp.body = b""
        headers = dict(resp.headers)
        has_body = req.method != "HEAD" and resp.status >= 200 and resp.status not in (204, 304)
        chunked = False
        if has_body and resp.body is not None:
            headers["content-length"] = str(len(resp.body))
        elif has_body and "content-length" not in headers:
            headers["transfer-encoding"] = "chunked"
            chunked = True
        with proxy._lock:
            proxy._statuses.append((req.method, req.path, resp.status))
        self.send_response_only(resp.status)
        for name, value in headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("connection", "close")
        self.end_headers()
        if not has_body:
            return
        if resp.body is not None:
            parts: Iterable[bytes] = [resp.body]
        else:
            stream = resp.stream
            assert stream is not None
            parts = iter(lambda: stream.read1(CHUNK), b"")
        corrupt = (req.method == "GET" and resp.status in (200, 206) and "?" not in req.path
                   and proxy._take_corruption(req.path))
        for data in parts:
            if corrupt and data:  # flip the first byte of the body: same size, other bytes
                data, corrupt = bytes([data[0] ^ 0xFF]) + data[1:], False
            data, spent = proxy._charge(data)
            if data:
                self.wfile.write(b"%x\r\n%b\r\n" % (len(data), data) if chunked else data)
            if spent:
                proxy._die()
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
