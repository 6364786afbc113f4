"""A small WebHDFS REST server (namenode + datanode emulation) for tests.

Serves a local directory through the WebHDFS REST API closely enough that
``fsspec.implementations.webhdfs.WebHDFS`` runs against it end to end::

    with WebHdfsServer() as srv:
        fs = fsspec.filesystem("webhdfs", host=srv.host, port=srv.port, user="alice")

Layout and behaviour (modelled on Hadoop 3 ``NamenodeWebHdfsMethods`` /
``DatanodeWebHdfsMethods``):

* namenode endpoint: ``http://127.0.0.1:PORT/webhdfs/v1/<path>?op=...``
* datanode endpoint: same host and port, prefix ``/datanode/webhdfs/v1``; the
  namenode answers CREATE/APPEND (always) and OPEN/GETFILECHECKSUM (when
  ``redirect=True``) with ``307`` + ``Location`` pointing there, carrying the
  original query plus ``namenoderpcaddress``. ``noredirect=true`` gives
  ``200 {"Location": ...}`` instead, as in Hadoop 3.
* Errors are ``{"RemoteException": {...}}`` with Hadoop's status mapping
  (``ExceptionHandler``): FileNotFoundException 404, IllegalArgument /
  UnsupportedOperation 400, every other IOException (AccessControl,
  FileAlreadyExists, ParentNotDirectory, PathIsNotEmptyDirectory, EOF) 403,
  anything unexpected 500.
* RENAME/DELETE/MKDIRS answer ``{"boolean": ...}`` with HDFS's (old, non
  overwriting) rename semantics: false when the source is missing or the
  destination exists or its parent is missing; an existing *directory*
  destination means "move into it".
* CREATE writes straight into the destination (a file being written is
  visible with its current length) and creates missing parents.
* Owner/group/permission/replication live in memory: new entries belong to
  ``user.name`` (``dr.who`` if absent), group ``supergroup``, permission
  644/755 unless ``permission=`` is given. Entries found on disk without
  metadata (the root, pre-seeded files) belong to ``hdfs`` and are
  world-writable (777/666). Permission bits are enforced (owner bits for the
  owner, "other" bits for everyone else; groups are ignored; ``hdfs`` is the
  superuser), so ``AccessControlException`` can be provoked with SETPERMISSION.
* GETFILECHECKSUM: ``{"algorithm": "MD5-of-0MD5-of-512CRC32C", "length": 28,
  "bytes": hex(int32 512 | int64 0 | md5(content))}`` - the HDFS
  MD5MD5CRC32 byte layout, but the digest is the plain MD5 of the content.
* accessTime follows HDFS's default 1 hour precision; reads use O_NOATIME so
  the local file system does not move it.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import socket
import stat
import struct
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

__all__ = ["WebHdfsServer", "NN_PREFIX", "DN_PREFIX"]

NN_PREFIX = "/webhdfs/v1"
DN_PREFIX = "/datanode/webhdfs/v1"
CHUNK = 1 << 20
BLOCK_SIZE = 128 * 1024 * 1024
ATIME_PRECISION_MS = 3600 * 1000
SUPERUSER, SUPERGROUP, ANONYMOUS = "hdfs", "supergroup", "dr.who"

_JAVA = {
    "FileNotFoundException": "java.io.FileNotFoundException",
    "IOException": "java.io.IOException",
    "EOFException": "java.io.EOFException",
    "IllegalArgumentException": "java.lang.IllegalArgumentException",
    "UnsupportedOperationException": "java.lang.UnsupportedOperationException",
    "RuntimeException": "java.lang.RuntimeException",
    "AccessControlException": "org.apache.hadoop.security.AccessControlException",
    "FileAlreadyExistsException": "org.apache.hadoop.fs.FileAlreadyExistsException",
    "ParentNotDirectoryException": "org.apache.hadoop.fs.ParentNotDirectoryException",
    "PathIsNotEmptyDirectoryException": "org.apache.hadoop.fs.PathIsNotEmptyDirectoryException",
    "RetriableException": "org.apache.hadoop.ipc.RetriableException",
    "StandbyException": "org.apache.hadoop.ipc.StandbyException",
}
_STATUS = {
    "FileNotFoundException": 404,
    "IllegalArgumentException": 400,
    "UnsupportedOperationException": 400,
    "RuntimeException": 500,
}
# op -> HTTP method, as in the WebHDFS REST API
_METHODS = {
    "OPEN": "GET", "GETFILESTATUS": "GET", "LISTSTATUS": "GET", "GETFILECHECKSUM": "GET",
    "GETCONTENTSUMMARY": "GET", "GETHOMEDIRECTORY": "GET",
    "CREATE": "PUT", "MKDIRS": "PUT", "RENAME": "PUT", "SETPERMISSION": "PUT",
    "SETOWNER": "PUT", "SETREPLICATION": "PUT", "APPEND": "POST", "DELETE": "DELETE",
    "SETXATTR": "PUT", "GETXATTRS": "GET",
}
_DN_OPS = {"OPEN", "CREATE", "APPEND", "GETFILECHECKSUM"}


class HdfsError(Exception):
    """A Hadoop RemoteException; ``status`` follows Hadoop's ExceptionHandler."""

    def __init__(self, exception: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.exception, self.message = exception, message
        self.status = status or _STATUS.get(exception, 403)  # other IOExceptions: 403

    def body(self) -> dict[str, Any]:
        java = _JAVA.get(self.exception, f"org.apache.hadoop.{self.exception}")
        return {"RemoteException": {"exception": self.exception,
                                    "javaClassName": java, "message": self.message}}


class _Killed(Exception):
    """Raised inside a handler once kill_after's byte budget is used up."""


def _ms(ns: int) -> int:
    return ns // 1_000_000


def _open_noatime(path: pathlib.Path) -> Any:
    flags = os.O_RDONLY | getattr(os, "O_NOATIME", 0)
    try:
        fd = os.open(path, flags)
    except PermissionError:  # O_NOATIME needs file ownership
        fd = os.open(path, os.O_RDONLY)
    return os.fdopen(fd, "rb")


class WebHdfsServer:
    """WebHDFS emulation over a local directory, with fault-injection hooks.

    ``root=None`` uses a private temporary directory, removed by :meth:`close`
    (and the context manager); :meth:`stop` keeps the data so the server can
    be restarted on the same port like a crashed namenode.
    """

    host: str = "127.0.0.1"

    def __init__(self, root: str | os.PathLike[str] | None = None, *, port: int = 0,
                 redirect: bool = True) -> None:
        self._own_root = root is None
        self.root: pathlib.Path = pathlib.Path(
            tempfile.mkdtemp(prefix="webhdfs-") if root is None else root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        if self._own_root:
            self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.root), True)
        self.port: int = port
        self.redirect = redirect
        self.ignore_overwrite = False
        """HttpFS's way: RENAME ignores ``renameoptions=OVERWRITE`` and answers
        ``{"boolean": false}`` when the destination exists."""
        self.refuse_renames = False
        """Answer every RENAME with ``{"boolean": false}`` (a gateway that refuses)."""
        self.advertised: str | None = None
        """The address datanode redirects name (a proxy in front); default :attr:`url`."""
        self.xattrs = True
        self._corrupt_left = 0
        self._corrupt_upload_left = 0
        """Whether SETXATTR is accepted (``dfs.namenode.xattrs.enabled``)."""
        self.requests: list[tuple[str, str, str]] = []
        """(HTTP method, op, HDFS path) per request; datanode legs use op "DN:<OP>"."""
        self.request_params: list[dict[str, str]] = []
        """Query parameters (including ``user.name``) of each request, parallel to ``requests``."""
        self._lock = threading.RLock()  # metadata, stats, faults
        self._life = threading.Lock()   # start/stop
        self._meta: dict[str, dict[str, Any]] = {}
        self._faults: list[tuple[str, int, str, str | None]] = []
        self._kill_budget: int | None = None
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (the WebHDFS base is ``url + "/webhdfs/v1"``)."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Bind (SO_REUSEADDR, same port on restart) and serve in a daemon thread."""
        with self._life:
            if self._httpd is not None:
                return
            self._httpd = _HTTPServer((self.host, self.port), _Handler, self)
            self.port = self._httpd.server_address[1]
            self._thread = threading.Thread(target=self._httpd.serve_forever,
                                            kwargs={"poll_interval": 0.05},
                                            name=f"webhdfs-{self.port}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Abrupt stop: drop live connections and the listening socket (data kept)."""
        with self._life:
            httpd, self._httpd = self._httpd, None
            if httpd is None:
                return
            httpd.stopping = True
            httpd.drop_connections()
            httpd.shutdown()
            httpd.server_close()
            httpd.drop_connections()
            if self._thread is not None:
                self._thread.join(5)
        with self._lock:
            self._kill_budget = None

    def close(self) -> None:
        """stop() and remove the temporary root if the server created it."""
        self.stop()
        if self._own_root:
            self._finalizer()

    def __enter__(self) -> WebHdfsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ test hooks
    def fail_next(self, n: int, status: int = 503, *, exception: str = "RetriableException",
                  op: str | None = None) -> None:
        """Answer the next ``n`` requests (only those whose recorded op is ``op``,
        e.g. ``"OPEN"`` or ``"DN:OPEN"``, if given) with ``status`` and a
        RemoteException of class ``exception``. Replaces pending failures."""
        with self._lock:
            self._faults = [f for f in self._faults if f[0] != "fail"]
            self._faults += [("fail", status, exception, op and op.upper())] * n

    def reset_next(self, n: int, *, op: str | None = None) -> None:
        """Close the connection without any answer for the next ``n`` requests.
        Replaces pending resets."""
        with self._lock:
            self._faults = [f for f in self._faults if f[0] != "reset"]
            self._faults += [("reset", 0, "", op and op.upper())] * n

    def kill_after(self, nbytes: int) -> None:
        """After ``nbytes`` more file-data bytes (OPEN bodies sent, CREATE/APPEND
        bodies received) have passed, behave like :meth:`stop`."""
        with self._lock:
            self._kill_budget = nbytes

    def corrupt_upload_next(self, n: int) -> None:
        """Flip the first byte of the next ``n`` datanode CREATE/APPEND bodies, stored
        as received (HDFS checks nothing a WebHDFS client did not send)."""
        with self._lock:
            self._corrupt_upload_left = n

    def corrupt_next(self, n: int) -> None:
        """Flip the first byte of the next ``n`` datanode OPEN bodies (one range each)."""
        with self._lock:
            self._corrupt_left = n

    def _take_corruption(self) -> bool:
        with self._lock:
            if self._corrupt_left:
                self._corrupt_left -= 1
                return True
        return False

    def count(self, op: str | None = None) -> int:
        """Number of recorded requests, all or for one op (``"OPEN"``, ``"DN:CREATE"``...)."""
        with self._lock:
            if op is None:
                return len(self.requests)
            return sum(1 for _, o, _ in self.requests if o == op.upper())

    def reset_stats(self) -> None:
        """Forget recorded requests."""
        with self._lock:
            self.requests.clear()
            self.request_params.clear()

    # ------------------------------------------------------------ internals
    def _record(self, method: str, op: str, path: str,
                params: dict[str, str]) -> tuple[str, int, str, str | None] | None:
        """Log the request and pop the first matching pending fault, if any."""
        with self._lock:
            self.requests.append((method, op, path))
            self.request_params.append(params)
            for i, fault in enumerate(self._faults):
                if fault[3] in (None, op):
                    return self._faults.pop(i)
        return None

    def _account(self, n: int) -> tuple[int, bool]:
        """Charge ``n`` data bytes to the kill budget: (bytes allowed, killed?)."""
        with self._lock:
            if self._kill_budget is None:
                return n, False
            allowed = min(n, self._kill_budget)
            self._kill_budget -= allowed
            if self._kill_budget > 0:
                return allowed, False
            self._kill_budget = None
        self.stop()  # synchronous, so a test may start() again as soon as its client failed
        return allowed, True

    def local(self, hpath: str) -> pathlib.Path:
        """Local path of a normalised HDFS path (confined to ``root``)."""
        p = self.root.joinpath(*hpath.strip("/").split("/")) if hpath != "/" else self.root
        if os.path.commonpath([os.path.realpath(p), self.root]) != str(self.root):
            raise HdfsError("IllegalArgumentException", f"Invalid path name {hpath}")
        return p

    @staticmethod
    def normalize(raw: str) -> str:
        """HDFS path validation: absolute, no '.', '..' or ':' components."""
        parts = [c for c in raw.split("/") if c]
        if not raw.startswith("/") or any(c in (".", "..") or ":" in c or "\0" in c for c in parts):
            raise HdfsError("IllegalArgumentException", f"Invalid path name Invalid file name: {raw}")
        return "/" + "/".join(parts)

    def _meta_of(self, hpath: str, is_dir: bool) -> dict[str, Any]:
        default = {"owner": SUPERUSER, "group": SUPERGROUP,
                   "permission": "777" if is_dir else "666", "replication": 3}
        return {**default, **self._meta.get(hpath, {})}

    def status(self, hpath: str, suffix: str = "") -> dict[str, Any]:
        """The FileStatus JSON object of ``hpath`` (FileNotFoundException if missing)."""
        p = self.local(hpath)
        try:
            st = p.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise HdfsError("FileNotFoundException", f"File does not exist: {hpath}") from None
        is_dir = stat.S_ISDIR(st.st_mode)
        meta = self._meta_of(hpath, is_dir)
        return {
            "accessTime": 0 if is_dir else _ms(st.st_atime_ns),
            "blockSize": 0 if is_dir else BLOCK_SIZE,
            "childrenNum": len(os.listdir(p)) if is_dir else 0,
            "fileId": st.st_ino,
            "group": meta["group"],
            "length": 0 if is_dir else st.st_size,
            "modificationTime": _ms(st.st_mtime_ns),
            "owner": meta["owner"],
            "pathSuffix": suffix,
            "permission": meta["permission"],
            "replication": 0 if is_dir else meta["replication"],
            "storagePolicy": 0,
            "type": "DIRECTORY" if is_dir else "FILE",
        }

    def _check(self, hpath: str, user: str, access: str) -> None:
        """HDFS permission check on ``hpath`` for ``access`` in 'rwx'."""
        if user == SUPERUSER:
            return
        st = self.status(hpath)
        mode = int(st["permission"], 8) >> (6 if user == st["owner"] else 0)
        need = sum({"r": 4, "w": 2, "x": 1}[c] for c in access)
        if mode & need != need:
            kind = "d" if st["type"] == "DIRECTORY" else "-"
            bits = "".join(c if int(st["permission"], 8) & (1 << (8 - i)) else "-"
                           for i, c in enumerate("rwxrwxrwx"))
            raise HdfsError("AccessControlException",
                            f"Permission denied: user={user}, access={access.upper()}, "
                            f'inode="{hpath}":{st["owner"]}:{st["group"]}:{kind}{bits}')

    def _existing_ancestor(self, hpath: str) -> str:
        while not self.local(hpath).exists():
            hpath = _parent(hpath)
        return hpath

    def _make_parents(self, hpath: str, user: str, perm: str = "755") -> None:
        """mkdir -p ``hpath`` as HDFS does (ParentNotDirectory on a file)."""
        anc = self._existing_ancestor(hpath)
        if not self.local(anc).is_dir():
            raise HdfsError("ParentNotDirectoryException", f"{anc} (is not a directory)")
        if anc == hpath:
            return
        self._check(anc, user, "wx")
        todo = hpath[len(anc):].strip("/").split("/")
        for part in todo:
            anc = anc.rstrip("/") + "/" + part
            self.local(anc).mkdir()
            self._meta[anc] = {"owner": user, "group": SUPERGROUP, "permission": perm}

    def _move_meta(self, src: str, dst: str | None) -> None:
        for key in [k for k in self._meta if k == src or k.startswith(src + "/")]:
            value = self._meta.pop(key)
            if dst is not None:
                self._meta[dst + key[len(src):]] = value


def _parent(hpath: str) -> str:
    return hpath.rsplit("/", 1)[0] or "/"


def _perm(q: dict[str, str], default: str) -> str:
    value = q.get("permission") or default
    try:
        return f"{int(value, 8) & 0o1777:o}"
    except ValueError:
        raise HdfsError("IllegalArgumentException",
                        f'Invalid value for webhdfs parameter "permission": {value}') from None


def _flag(q: dict[str, str], name: str) -> bool:
    return q.get(name, "false").lower() == "true"


def _int(q: dict[str, str], name: str, default: int | None) -> int | None:
    if name not in q:
        return default
    try:
        value = int(q[name])
        if value < 0:
            raise ValueError
        return value
    except ValueError:
        raise HdfsError("IllegalArgumentException",
                        f'Invalid value for webhdfs parameter "{name}": {q[name]}') from None


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], handler: type, owner: WebHdfsServer) -> None:
        self.owner = owner
        self.stopping = False
        self.conns: set[socket.socket] = set()
        super().__init__(addr, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.owner._lock:
            self.conns.add(request)
        if self.stopping:
            _drop(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.owner._lock:
            self.conns.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self.owner._lock:
            conns = list(self.conns)
        for conn in conns:
            _drop(conn)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # socket errors from killed/reset connections are expected


def _drop(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)  # wakes up a handler blocked in recv
    except OSError:
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 300
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # ------------------------------------------------------------ plumbing
    def _dispatch(self, method: str) -> None:
        srv = self.server.owner
        self._body_done = False
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        raw = unquote(url.path)
        datanode = raw == DN_PREFIX or raw.startswith(DN_PREFIX + "/")
        prefix = DN_PREFIX if datanode else NN_PREFIX
        op = q.get("op", "").upper()
        raw_path = raw[len(prefix):] or "/"
        fault = srv._record(method, ("DN:" if datanode else "") + op, raw_path, q)
        if fault and fault[0] == "reset":
            self.close_connection = True
            _drop(self.connection)
            return
        try:
            if fault:
                _, status, exc, _ = fault
                raise HdfsError(exc, f"Injected failure ({exc})", status)
            if not (datanode or raw == NN_PREFIX or raw.startswith(NN_PREFIX + "/")):
                raise HdfsError("FileNotFoundException", f"No such resource: {url.path}")
            if _METHODS.get(op) != method or (datanode and op not in _DN_OPS):
                raise HdfsError("IllegalArgumentException",
                                f'Invalid value for webhdfs parameter "op": {op!r} is not a valid '
                                f"{method} operation")
            hpath = srv.normalize(raw_path)
            user = q.get("user.name") or ANONYMOUS
            getattr(self, ("_dn_" if datanode else "_nn_") + op.lower())(hpath, q, user)
        except _Killed:
            self.close_connection = True
            _drop(self.connection)
        except (ConnectionError, BrokenPipeError, TimeoutError):
            self.close_connection = True
        except Exception as e:  # noqa: BLE001 - turned into a RemoteException
            err = e if isinstance(e, HdfsError) else HdfsError("RuntimeException", repr(e))
            self._drain()
            self._send(err.status, err.body())

    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if data else "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Iterator[bytes]:
        """Request body pieces, Content-Length or chunked, without buffering it all."""
        if self._body_done:
            return
        self._body_done = True
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                yield from self._read_exact(size)
                self.rfile.readline()
        else:
            yield from self._read_exact(int(self.headers.get("Content-Length") or 0))

    def _read_exact(self, n: int) -> Iterator[bytes]:
        while n > 0:
            data = self.rfile.read(min(CHUNK, n))
            if not data:
                raise ConnectionError("client closed during request body")
            n -= len(data)
            yield data

    def _drain(self) -> None:
        try:
            for _ in self._body():
                pass
        except (OSError, ValueError):
            self.close_connection = True

    def _redirect(self, hpath: str, q: dict[str, str]) -> None:
        srv = self.server.owner
        params = {**q, "namenoderpcaddress": f"{srv.host}:{srv.port}"}
        params.pop("noredirect", None)
        location = f"{srv.advertised or srv.url}{DN_PREFIX}{quote(hpath)}?{urlencode(params)}"
        if _flag(q, "noredirect"):
            self._send(200, {"Location": location})
        else:
            self._send(307, None, {"Location": location})

    def _file(self, hpath: str, what: str = "Path is not a file") -> pathlib.Path:
        p = self.server.owner.local(hpath)
        if not p.exists():
            raise HdfsError("FileNotFoundException", f"File does not exist: {hpath}")
        if p.is_dir():
            raise HdfsError("FileNotFoundException", f"{what}: {hpath}")
        return p

    def _write(self, hpath: str, mode: str) -> None:
        """Stream the request body into the file, charging kill_after."""
        srv = self.server.owner
        with srv._lock:
            corrupt, srv._corrupt_upload_left = (srv._corrupt_upload_left > 0,
                                                 max(srv._corrupt_upload_left - 1, 0))
        with open(srv.local(hpath), mode) as f:
            for chunk in self._body():
                if corrupt and chunk:
                    chunk, corrupt = bytes([chunk[0] ^ 0xFF]) + chunk[1:], False
                allowed, killed = srv._account(len(chunk))
                f.write(chunk[:allowed])
                if killed:
                    raise _Killed

    # ------------------------------------------------------------ namenode ops
    def _nn_getfilestatus(self, hpath: str, q: dict[str, str], user: str) -> None:
        with self.server.owner._lock:
            st = self.server.owner.status(hpath)
        self._send(200, {"FileStatus": st})

    def _nn_liststatus(self, hpath: str, q: dict[str, str], user: str) -> None:
        srv = self.server.owner
        with srv._lock:
            p = srv.local(hpath)
            if not p.exists():
                raise HdfsError("FileNotFoundException", f"File {hpath} does not exist.")
            if p.is_dir():
                srv._check(hpath, user, "rx")
                base = hpath.rstrip("/")
                items = [srv.status(f"{base}/{n}", n) for n in sorted(os.listdir(p))]
            else:
                items = [srv.status(hpath)]
        self._send(200, {"FileStatuses": {"FileStatus": items}})

    def _nn_getcontentsummary(self, hpath: str, q: dict[str, str], user: str) -> None:
        p = self.server.owner.local(hpath)
        if not p.exists():
            raise HdfsError("FileNotFoundException", f"File does not exist: {hpath}")
        dirs, files, length = (1, 0, 0) if p.is_dir() else (0, 1, p.stat().st_size)
        for top, dnames, fnames in os.walk(p):
            dirs += len(dnames)
            files += len(fnames)
            length += sum(os.path.getsize(os.path.join(top, f)) for f in fnames)
        self._send(200, {"ContentSummary": {
            "directoryCount": dirs, "fileCount": files, "length": length, "quota": -1,
            "spaceConsumed": length * 3, "spaceQuota": -1}})

    def _nn_gethomedirectory(self, hpath: str, q: dict[str, str], user: str) -> None:
        self._send(200, {"Path": f"/user/{user}"})

    def _nn_mkdirs(self, hpath: str, q: dict[str, str], user: str) -> None:
        srv = self.server.owner
        with srv._lock:
            p = srv.local(hpath)
            if p.exists() and not p.is_dir():
                raise HdfsError("FileAlreadyExistsException", f"Path is not a directory: {hpath}")
            srv._make_parents(hpath, user, _perm(q, "755"))
        self._send(200, {"boolean": True})

    def _nn_delete(self, hpath: str, q: dict[str, str], user: str) -> None:
        self._send(200, {"boolean": self._delete(hpath, _flag(q, "recursive"), user)})

    def _delete(self, hpath: str, recursive: bool, user: str) -> bool:
        srv = self.server.owner
        with srv._lock:
            p = srv.local(hpath)
            if hpath == "/" or not p.exists():
                return False
            if p.is_dir() and any(p.iterdir()) and not recursive:
                raise HdfsError("PathIsNotEmptyDirectoryException",
                                f"`{hpath} is non empty': Directory is not empty")
            srv._check(_parent(hpath), user, "wx")
            shutil.rmtree(p) if p.is_dir() else p.unlink()
            srv._move_meta(hpath, None)
            return True

    def _nn_rename(self, hpath: str, q: dict[str, str], user: str) -> None:
        dst = q.get("destination", "")
        if not dst.startswith("/"):
            raise HdfsError("IllegalArgumentException",
                            f'Invalid value for webhdfs parameter "destination": {dst}')
        if self.server.owner.refuse_renames:
            self._send(200, {"boolean": False})
            return
        if (not self.server.owner.ignore_overwrite
                and "OVERWRITE" in q.get("renameoptions", "").upper().split(",")):
            self._rename2(hpath, self.server.owner.normalize(dst), user)
            self._send(200)
            return
        self._send(200, {"boolean": self._rename(hpath, self.server.owner.normalize(dst), user)})

    def _rename2(self, src: str, dst: str, user: str) -> None:
        """HDFS's rename2 with OVERWRITE: replaces a file (or an empty directory) in one
        step, raises instead of answering false, never moves into a directory."""
        srv = self.server.owner
        with srv._lock:
            s, d = srv.local(src), srv.local(dst)
            if src == "/" or not s.exists():
                raise HdfsError("FileNotFoundException", f"File does not exist: {src}")
            if not srv.local(_parent(dst)).is_dir():
                raise HdfsError("FileNotFoundException", f"rename destination parent {_parent(dst)} not found.")
            if dst == src or dst.startswith(src + "/"):
                raise HdfsError("IOException", f"Rename {src} to {dst} is not allowed")
            if d.exists():
                if d.is_dir() != s.is_dir():
                    raise HdfsError("IOException", f"Source {src} and destination {dst} must both be directories")
                if d.is_dir() and any(d.iterdir()):
                    raise HdfsError("IOException", f"rename destination directory is not empty: {dst}")
            srv._check(_parent(src), user, "wx")
            srv._check(_parent(dst), user, "wx")
            if d.is_dir():
                d.rmdir()
            os.replace(s, d)
            srv._move_meta(dst, None)
            srv._move_meta(src, dst)

    def _rename(self, src: str, dst: str, user: str) -> bool:
        """HDFS's original rename: never overwrites, moves into an existing directory."""
        srv = self.server.owner
        with srv._lock:
            if src == "/" or not srv.local(src).exists():
                return False
            if dst == src:
                return True
            if srv.local(dst).is_dir():
                dst = dst.rstrip("/") + "/" + src.rsplit("/", 1)[1]
            if (dst == src or dst.startswith(src + "/") or srv.local(dst).exists()
                    or not srv.local(_parent(dst)).is_dir()):
                return False
            srv._check(_parent(src), user, "wx")
            srv._check(_parent(dst), user, "wx")
            os.rename(srv.local(src), srv.local(dst))
            srv._move_meta(src, dst)
            return True

    def _nn_setpermission(self, hpath: str, q: dict[str, str], user: str) -> None:
        srv = self.server.owner
        with srv._lock:
            st = srv.status(hpath)
            if user not in (SUPERUSER, st["owner"]):
                raise HdfsError("AccessControlException", f"Permission denied. user={user} is not the owner of inode={hpath}")
            srv._meta.setdefault(hpath, {})["permission"] = _perm(q, "755")
        self._send(200)

    def _nn_setowner(self, hpath: str, q: dict[str, str], user: str) -> None:
        srv = self.server.owner
        with srv._lock:
            srv.status(hpath)
            if user != SUPERUSER:
                raise HdfsError("AccessControlException", "Non-super user cannot change owner")
            meta = srv._meta.setdefault(hpath, {})
            meta.update({k: q[k] for k in ("owner", "group") if q.get(k)})
        self._send(200)

    def _nn_setreplication(self, hpath: str, q: dict[str, str], user: str) -> None:
        srv = self.server.owner
        with srv._lock:
            ok = srv.local(hpath).is_file()
            if ok:
                srv._check(hpath, user, "w")
                srv._meta.setdefault(hpath, {})["replication"] = _int(q, "replication", 3)
        self._send(200, {"boolean": ok})

    def _nn_setxattr(self, hpath: str, q: dict[str, str], user: str) -> None:
        """SETXATTR (user namespace; values as HDFS's XAttrCodec takes them: "0x"
        hex, "0s" base64 or quoted text); flag CREATE fails on an existing one."""
        srv = self.server.owner
        if not srv.xattrs:
            raise HdfsError("IOException", "The XAttr operation has been rejected.  Support "
                            "for extended attributes has been disabled.  Set "
                            "dfs.namenode.xattrs.enabled to true.")
        name, value = q.get("xattr.name", ""), q.get("xattr.value", "")
        if not name.startswith("user."):
            raise HdfsError("IllegalArgumentException", f"An XAttr name must be prefixed with user/trusted/security/system/raw, followed by a '.': {name}")
        if value.startswith("0x"):
            raw = bytes.fromhex(value[2:])
        elif value.startswith('"') and value.endswith('"'):
            raw = value[1:-1].encode()
        else:
            raw = value.encode()
        with srv._lock:
            srv.status(hpath)
            srv._check(hpath, user, "w")
            attrs = srv._meta.setdefault(hpath, {}).setdefault("xattrs", {})
            flags = q.get("flag", "CREATE").upper().split(",")
            if name in attrs and "REPLACE" not in flags:
                raise HdfsError("IOException", f"XAttr: {name} already exists. The REPLACE flag must be specified.")
            attrs[name] = raw
        self._send(200)

    def _nn_getxattrs(self, hpath: str, q: dict[str, str], user: str) -> None:
        srv = self.server.owner
        with srv._lock:
            srv.status(hpath)
            srv._check(hpath, user, "r")
            attrs = dict(srv._meta.get(hpath, {}).get("xattrs", {}))
        encoding = q.get("encoding", "").lower()
        found = [{"name": k, "value": ("0x" + v.hex()) if encoding == "hex" else json.dumps(v.decode())}
                 for k, v in attrs.items()]
        self._send(200, {"XAttrs": found})

    def _nn_create(self, hpath: str, q: dict[str, str], user: str) -> None:
        self._drain()  # the namenode ignores data sent with the first request
        self._redirect(hpath, q)

    def _nn_append(self, hpath: str, q: dict[str, str], user: str) -> None:
        self._file(hpath, "Failed to append to non-file")
        self._drain()
        self._redirect(hpath, q)

    def _nn_open(self, hpath: str, q: dict[str, str], user: str) -> None:
        self._file(hpath)
        if self.server.owner.redirect:
            self._redirect(hpath, q)
        else:
            self._dn_open(hpath, q, user)

    def _nn_getfilechecksum(self, hpath: str, q: dict[str, str], user: str) -> None:
        self._file(hpath)
        if self.server.owner.redirect:
            self._redirect(hpath, q)
        else:
            self._dn_getfilechecksum(hpath, q, user)

    # ------------------------------------------------------------ datanode ops
    def _dn_create(self, hpath: str, q: dict[str, str], user: str) -> None:
        srv = self.server.owner
        with srv._lock:
            p = srv.local(hpath)
            if p.is_dir():
                raise HdfsError("FileAlreadyExistsException", f"{hpath} already exists as a directory")
            if p.exists() and not _flag(q, "overwrite"):
                raise HdfsError("FileAlreadyExistsException",
                                f"{hpath} for client 127.0.0.1 already exists")
            srv._make_parents(_parent(hpath), user)
            srv._check(_parent(hpath), user, "wx")
            p.write_bytes(b"")
            srv._meta[hpath] = {"owner": user, "group": SUPERGROUP, "permission": _perm(q, "644"),
                                "replication": _int(q, "replication", 3)}
        self._write(hpath, "ab")
        self._send(201, None, {"Location": f"webhdfs://{srv.host}:{srv.port}{quote(hpath)}"})

    def _dn_append(self, hpath: str, q: dict[str, str], user: str) -> None:
        srv = self.server.owner
        with srv._lock:
            self._file(hpath, "Failed to append to non-file")
            srv._check(hpath, user, "w")
        self._write(hpath, "ab")
        self._send(200)

    def _dn_open(self, hpath: str, q: dict[str, str], user: str) -> None:
        srv = self.server.owner
        with srv._lock:
            p = self._file(hpath)
            srv._check(hpath, user, "r")
            st = p.stat()
            now = _ms(time.time_ns())
            if now - _ms(st.st_atime_ns) > ATIME_PRECISION_MS:
                os.utime(p, ns=(time.time_ns(), st.st_mtime_ns))
        offset = _int(q, "offset", 0) or 0
        if offset > st.st_size:
            raise HdfsError("EOFException", "Cannot seek after EOF")
        length = _int(q, "length", None)
        n = st.st_size - offset if length is None else min(length, st.st_size - offset)
        corrupt = n > 0 and srv._take_corruption()
        with _open_noatime(p) as f:
            f.seek(offset)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            while n > 0:
                chunk = f.read(min(CHUNK, n))
                if not chunk:  # truncated concurrently; the client sees a short body
                    self.close_connection = True
                    return
                if corrupt:
                    chunk, corrupt = bytes([chunk[0] ^ 0xFF]) + chunk[1:], False
                allowed, killed = srv._account(len(chunk))
                self.wfile.write(chunk[:allowed])
                if killed:
                    raise _Killed
                n -= len(chunk)

    def _dn_getfilechecksum(self, hpath: str, q: dict[str, str], user: str) -> None:
        srv = self.server.owner
        with srv._lock:
            p = self._file(hpath)
            srv._check(hpath, user, "r")
        md5 = hashlib.md5()
        with _open_noatime(p) as f:
            while chunk := f.read(CHUNK):
                md5.update(chunk)
        raw = struct.pack(">iq", 512, 0) + md5.digest()
        self._send(200, {"FileChecksum": {"algorithm": "MD5-of-0MD5-of-512CRC32C",
                                          "bytes": raw.hex(), "length": len(raw)}})
