"""HDFS, through WebHDFS (fsspec's ``webhdfs``) or libhdfs (pyarrow, fsspec's ``hdfs``).

=====================  =================================================  ==========================
key                    meaning                                            fsspec
=====================  =================================================  ==========================
``hdfs_url``           ``http(s)://`` or ``webhdfs://host:port``:         ``webhdfs`` host, port,
                       the namenode's WebHDFS address;                    use_https;
                       ``hdfs://host:port``: its RPC address (libhdfs)    ``hdfs`` host, port
``hdfs_user``          the user to act as; default ``default``            ``user``
``root_directory``     the directory for artifacts; a relative one is     root
                       taken below ``/user/<hdfs_user>``, as HDFS does
=====================  =================================================  ==========================

URIs keep the server: ``webhdfs://host:port/<root>/<name>`` or
``hdfs://host:port/<root>/<name>``.
"""

from __future__ import annotations

import logging
import os
import posixpath
import secrets
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from fsspec.callbacks import Callback

from fsblob import integrity, local_copy, paths, retry, stall
from fsblob.backends import keys, timeouts
from fsblob.chunks import CRC32, ObjectChanged
from fsblob.errors import BlobConfigError, StoreError
from fsblob.store import Store

log = logging.getLogger("fsblob")

BACKEND = "hdfs"
CHUNK = 2**20
KEYS = ("hdfs_url", "hdfs_user", "root_directory")

LIBHDFS_REQUIREMENTS = (
    "the hdfs:// client (pyarrow's HadoopFileSystem) needs a JVM and libhdfs on this host: "
    "install Java and Hadoop, set JAVA_HOME, HADOOP_HOME, ARROW_LIBHDFS_DIR (the directory "
    "of libhdfs.so) and CLASSPATH=$(hadoop classpath --glob). Or give hdfs_url as the "
    "namenode's WebHDFS address, e.g. http://namenode:9870, which needs none of them"
)


def store(config: Mapping[str, Any]) -> Store:
    """Map the HDFS keys to a :class:`Store` on WebHDFS or libhdfs."""
    keys.check_keys(config, KEYS, BACKEND)
    url = keys.required(config, "hdfs_url", BACKEND,
                        fix="set it to the namenode's WebHDFS url, e.g. http://namenode:9870")
    user = keys.text(config, "hdfs_user", BACKEND) or "default"  # AIFlow's default
    root = keys.required(config, "root_directory", BACKEND,
                         fix="set it to the HDFS directory for artifacts, e.g. /user/alice/artifacts")
    parts = urlsplit(url)
    if parts.password is not None:  # say so without repeating the url: it holds a secret
        raise BlobConfigError(
            f"{BACKEND}: hdfs_url carries a user and password; HDFS's simple authentication "
            "takes the user from hdfs_user, so remove the credentials from the url"
        )
    scheme = parts.scheme.lower()
    protocols = {"http": "webhdfs", "https": "webhdfs", "webhdfs": "webhdfs", "swebhdfs": "webhdfs",
                 "hdfs": "hdfs"}
    if scheme not in protocols or not parts.hostname:
        raise BlobConfigError(
            f"{BACKEND}: hdfs_url {url!r} is not an http://, https://, webhdfs:// or hdfs:// "
            "url with a host; give e.g. http://namenode:9870"
        )
    if parts.path.rstrip("/") not in ("", "/webhdfs/v1"):
        raise BlobConfigError(
            f"{BACKEND}: hdfs_url {url!r} has a path; give only scheme, host and port, "
            "and put the directory in root_directory"
        )
    protocol = protocols[scheme]
    https = scheme in ("https", "swebhdfs")
    try:
        port = parts.port or (8020 if protocol == "hdfs" else 9871 if https else 9870)
    except ValueError:
        raise BlobConfigError(f"{BACKEND}: hdfs_url {url!r} has an invalid port") from None
    root_url = urlsplit(root)
    if root_url.scheme.lower() in protocols:  # AIFlow's configs wrote hdfs:///path
        if root_url.hostname not in (None, parts.hostname):
            raise BlobConfigError(
                f"{BACKEND}: root_directory {root!r} names the server {root_url.hostname}, "
                f"but hdfs_url names {parts.hostname}; give root_directory as a path")
        root = root_url.path or "/"
    if not root.startswith("/"):
        root = f"/user/{user}/{root}"
    segments = paths.check_segments(root, what="hdfs: root_directory")
    options: dict[str, Any] = {"host": parts.hostname, "port": port, "user": user}
    if https:
        options["use_https"] = True
    return Store(
        extra="hdfs",
        protocol=protocol,
        root="/" + "/".join(segments),
        storage_options=options,
        url_prefix=f"{protocol}://{parts.hostname}:{port}",
        legacy_prefixes={"hdfs://": ""},  # hdfs:///path/file URIs of AIFlow's configs
        requirements=LIBHDFS_REQUIREMENTS if protocol == "hdfs" else "",
        get_file=_webhdfs_get_file if protocol == "webhdfs" else None,
        replace=_webhdfs_replace if protocol == "webhdfs" else None,
        prepare=_webhdfs_prepare if protocol == "webhdfs" else None,
        **(WEBHDFS if protocol == "webhdfs" else {}),
    )


def meta(fs: Any, path: str) -> integrity.Meta:
    """GETFILESTATUS and GETXATTRS of a file: its length, a version (file id,
    modification time, length: a rename or rewrite changes it) and fsblob's CRC32
    from the xattr ``user.fsblob.crc32``."""
    with _webhdfs_call(fs, "get", "GETFILESTATUS", path) as response:
        status = response.json()["FileStatus"]
    if status.get("type") == "DIRECTORY":
        return integrity.Meta(None, is_dir=True, info=status)
    crc = None
    try:
        with _webhdfs_call(fs, "get", "GETXATTRS", path, encoding="hex") as response:
            found = response.json().get("XAttrs") or []
        crc = next((integrity.decode_crc(x.get("value")) for x in found
                    if x.get("name") == integrity.XATTR), None)
    except FileNotFoundError:
        raise
    except Exception as exc:  # xattrs disabled, or an older namenode
        if retry.is_transient(exc):
            raise
        log.debug("%s: no xattrs (%s)", path, type(exc).__name__)
    version = f"{status.get('fileId')}:{status.get('modificationTime')}:{status.get('length')}"
    return integrity.Meta(int(status["length"]), version=version, crc32=crc, pinned=False,
                          info=status)


def read_range(fs: Any, path: str, meta: integrity.Meta, start: int, end: int,
               feed: Callable[[bytes], None]) -> None:
    """One OPEN with offset and length, both legs' status checked. Not pinned by the
    store (HDFS has no If-Match): the engine compares the file's status at the end,
    and fsblob's CRC32 covers the bytes."""
    if end <= start and meta.size:
        return
    try:
        with _webhdfs_call(fs, "get", "OPEN", path, stream=True, offset=str(start),
                           length=str(end - start)) as response:
            for piece in response.iter_content(CHUNK):
                feed(piece)
        return
    except StoreError as exc:
        if exc.code != "EOFException":
            raise
        error = ObjectChanged(f"webhdfs {path} is shorter than {start + 1} bytes now, "
                              f"{meta.size} when the download began: it changed meanwhile")
    raise error  # outside the except: the whole download goes again, of one version


def upload(fs: Any, lpath: str, rpath: str, callback: Callback, settings: Any) -> int:
    """One CREATE streamed from the file, its CRC32 computed as the bytes go out
    (no second read), then stored as the xattr ``user.fsblob.crc32`` of the new
    file (a rename keeps it); return it. A namenode with xattrs disabled stores
    none; its downloads then check size and version only."""
    crc = _webhdfs_put_file(fs, lpath, rpath, callback)
    params: dict[str, Any] = {"xattr.name": integrity.XATTR,
                              "xattr.value": f"0x{integrity.encode_crc(crc)}", "flag": "CREATE"}
    try:
        with _webhdfs_call(fs, "put", "SETXATTR", rpath, **params):
            pass
    except Exception as exc:
        if retry.is_transient(exc) or isinstance(exc, FileNotFoundError):
            raise
        log.warning("%s: the namenode refused the xattr %s (%s): fsblob's checksum is "
                    "not stored", rpath, integrity.XATTR, type(exc).__name__)
    return crc


def _webhdfs_prepare(fs: Any) -> None:
    """Cut every request of fsblob's WebHDFS filesystem when it stops making progress
    (:mod:`fsblob.backends.timeouts`): fsspec's ``_call`` (``ls``, ``info``,
    ``mkdir``, ``rm``, ``mv``) sends them without a timeout."""
    timeouts.mount(fs.session)


def _timeout() -> tuple[float, float]:
    """Seconds to connect, and seconds without a byte moving, per WebHDFS request."""
    given = stall.limits()
    return (given.connect, given.stall)


def _webhdfs_get_file(fs: Any, rpath: str, lpath: str, callback: Callback) -> None:
    """Stream one WebHDFS OPEN into ``lpath``, checking the status of both legs.

    fsspec's own reader (``WebHDFile._fetch_range``) returns a failed datanode
    answer's JSON as if it were file bytes, and the ranged reads around it keep
    the total size right: a corrupt copy that no size check can see.
    """
    with _webhdfs_call(fs, "get", "OPEN", rpath, stream=True) as response:
        length = response.headers.get("Content-Length")
        callback.set_size(int(length) if length else None)
        # No O_TRUNC (ext4 flushes a truncated-then-rewritten file to disk at close):
        # lpath is fsblob's fresh, empty temporary, and the size is checked after.
        with open(os.open(lpath, os.O_WRONLY | os.O_CREAT, 0o666), "wb") as f:
            for chunk in response.iter_content(CHUNK):
                f.write(chunk)
                callback.relative_update(len(chunk))


def _webhdfs_put_file(fs: Any, lpath: str, rpath: str, callback: Callback) -> int:
    """Send ``lpath`` as one WebHDFS CREATE, its body streamed from the file; return
    the CRC32 of the bytes sent.

    fsspec's writer sends an empty CREATE and then a 4 MiB APPEND per block,
    each request without a timeout.
    """
    size = os.path.getsize(lpath)
    callback.set_size(size)
    crc = [0]

    def body() -> Iterator[bytes]:
        with open(lpath, "rb") as f:
            while chunk := f.read(CHUNK):
                crc[0] = CRC32.update(chunk, crc[0])
                callback.relative_update(len(chunk))
                yield chunk

    with _webhdfs_call(fs, "put", "CREATE", rpath, data=body(), overwrite="true",
                       headers={"content-type": "application/octet-stream"}):
        pass
    return crc[0]


def _webhdfs_replace(fs: Any, src: str, dest: str) -> None:
    """Rename ``src`` over ``dest``: WebHDFS's RENAME with ``renameoptions=OVERWRITE``
    (HDFS's rename2: one step, fails loudly, never moves into a directory named
    like ``dest``).

    A gateway that ignores ``OVERWRITE`` (HttpFS) answers ``{"boolean": false}``
    when ``dest`` exists. Then the old file is moved aside, ``src`` renamed in,
    and the old file removed; if ``src`` cannot be renamed in, the old file is
    put back and the error raised. (In between, ``dest`` is briefly missing; if
    the process dies there, the previous version is the hidden ``.part`` file
    beside it until ``gc`` removes it.) Never a silent success.
    """
    target = fs._strip_protocol(dest)
    with _webhdfs_call(fs, "put", "RENAME", src, destination=target,
                       renameoptions="OVERWRITE") as response:
        if not _answered_false(response):
            return
    parent, name = posixpath.split(target)
    aside = f"{parent}/.{local_copy.fitted(name)}.{secrets.token_hex(6)}{local_copy.PART_SUFFIX}"
    _webhdfs_rename(fs, target, aside, why=f"{src} could not replace it")
    try:
        _webhdfs_rename(fs, src, target, why="the previous version was moved aside")
    except BaseException:
        with stall.cleanup():
            _webhdfs_rename(fs, aside, target, why="putting the previous version back")
        raise
    try:
        with _webhdfs_call(fs, "delete", "DELETE", aside, recursive="false") as response:
            if _answered_false(response):
                raise OSError("DELETE answered false")
    except Exception as exc:  # noqa: BLE001 (replaced; the old bytes are garbage for gc now)
        log.warning("could not remove the previous version %s: %s", aside, type(exc).__name__)


def _webhdfs_rename(fs: Any, src: str, dest: str, *, why: str) -> None:
    """A plain WebHDFS RENAME (``dest`` must not exist) that raises unless it answers true."""
    with _webhdfs_call(fs, "put", "RENAME", src, destination=dest) as response:
        if _answered_false(response):
            raise OSError(f"WebHDFS refused to rename {src} to {dest} ({why}): it answered "
                          '{"boolean": false}')


def _answered_false(response: Any) -> bool:
    """Whether a WebHDFS answer is ``{"boolean": false}`` (an operation refused
    without an error status)."""
    try:
        return response.json().get("boolean") is False
    except (ValueError, AttributeError):
        return False  # rename2 answers without a body


def _webhdfs_call(fs: Any, method: str, op: str, rpath: str, *, data: Any = None,
                  stream: bool = False, headers: Mapping[str, str] | None = None,
                  **params: str) -> Any:
    """One WebHDFS operation through fsspec's session, following the namenode's
    redirect to a datanode by hand (so a body is sent once, to the datanode),
    with a timeout on every leg, and errors raised as fsspec raises them."""
    url = fs._apply_proxy(fs.url + quote(fs._strip_protocol(rpath), safe="/="))
    response = fs.session.request(method, url, params={**fs.pars, **params, "op": op},
                                  allow_redirects=False, timeout=_timeout())
    if response.status_code in (301, 302, 303, 307, 308):
        response.close()
        response = fs.session.request(method, fs._apply_proxy(response.headers["Location"]),
                                      data=data, headers=headers, stream=stream, timeout=_timeout())
    _raise_for_webhdfs(response, rpath, op)
    if data is not None and response.request.body is None:
        raise OSError(f"WebHDFS {op} of {rpath} answered {response.status_code} without "
                      "redirecting to a datanode; the data was not sent")
    return response


def _raise_for_webhdfs(response: Any, rpath: str, op: str = "") -> None:
    """Raise for an error answer (RemoteException JSON): not found and access denied
    as fsspec's WebHDFS raises them, anything else as a
    :class:`~fsblob.errors.StoreError` naming the operation and the exception
    (``"CREATE: RetriableException: ..."``), retried when its status says so."""
    if response.status_code < 400:
        return
    try:
        error = response.json()["RemoteException"]
        kind, message = error["exception"], error.get("message", "")
    except (ValueError, KeyError, TypeError):
        response.raise_for_status()
    if kind == "FileNotFoundException":
        raise FileNotFoundError(f"{rpath}: {message}")
    if kind in ("AccessControlException", "SecurityException"):
        raise PermissionError(f"{rpath}: {message}")
    raise StoreError(f"{op or 'WebHDFS'}: {kind}: {message} ({rpath})", operation=op,
                     code=kind, status=response.status_code)


#: WebHDFS's byte path and what it can do (see :class:`fsblob.store.Store`).
WEBHDFS: dict[str, Any] = {"meta": meta, "read_range": read_range, "upload": upload,
                           "put_file": _webhdfs_put_file, "atomic_writes": False}
