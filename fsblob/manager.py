"""The blob manager contract and its one engine, :class:`FsspecBlobManager`."""

from __future__ import annotations

import copy
import glob
import hashlib
import json
import logging
import os
import posixpath
import secrets as _random
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import fsspec
from fsspec.callbacks import DEFAULT_CALLBACK, Callback

from fsblob import local_copy, paths, uris
from fsblob.base import BlobManager
from fsblob.backends import get_backend, keys
from fsblob.errors import (
    BlobConfigError,
    BlobError,
    BlobIntegrityError,
    BlobNotFoundError,
    BlobTransferError,
    InvalidPathError,
    describe,
    describe_endpoint,
)
from fsblob.logs import hide_secrets, known_secrets
from fsblob.retry import (
    RetryPolicy,
    is_integrity_failure,
    is_not_found,
    is_tls_failure,
    is_transient,
)

log = logging.getLogger("fsblob")

T = TypeVar("T")

#: Keys every backend accepts, read by the engine itself.
ENGINE_KEYS = ("retries", "retry_deadline", "cache_directory")

#: Files of a directory up to this size are uploaded together, in one call.
BATCH_FILE_SIZE = 8 * 2**20

#: Which extra installs the client library of a protocol.
_EXTRAS = {"s3": "s3", "s3a": "s3", "oss": "oss", "hdfs": "hdfs", "arrow_hdfs": "hdfs"}

#: Info fields that change when an object's content changes, across filesystems.
_VERSION_FIELDS = ("ETag", "etag", "md5", "LastModified", "last_modified", "mtime",
                   "modificationTime", "created", "generation", "ino", "checksum")


_Mismatch = BlobIntegrityError  # public: what a failed verification raises


class FsspecBlobManager(BlobManager):
    """A blob manager on any fsspec filesystem.

    Config keys (``blob_manager_config``):

    * ``root_directory``: a local directory or a URL (``memory://artifacts``,
      ``s3://bucket/prefix``...);
    * ``protocol``: the fsspec protocol when ``root_directory`` names none;
    * ``storage_options``: keyword arguments for the filesystem;
    * ``backend``: instead of the three above, the name of a registered backend
      (see :func:`fsblob.register_backend`), followed by that backend's keys;
    * for every backend: ``retries`` (retries after a transient failure, default
      4), ``retry_deadline`` (seconds after which no retry starts, default 60),
      ``cache_directory`` (locks, freshness records and default downloads;
      default ``$FSBLOB_CACHE_DIR`` or ``~/.cache/fsblob``).

    Guarantees, on every backend: ``upload`` never changes the caller's file and
    replaces the stored one in one step; ``download`` yields a complete, verified
    copy or raises and leaves nothing new at the returned path; concurrent
    downloads of one URI to one place on one host transfer it once; a local copy
    is reused only while it matches the remote object; a path outside the root is
    refused before any I/O; secrets never appear in ``repr``, logs or errors.
    """

    #: The backend a subclass is bound to; ``None`` reads ``backend`` from the config.
    backend: ClassVar[str | None] = None

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        config = dict(config)
        engine = {key: config.pop(key) for key in ENGINE_KEYS if key in config}
        name = self.backend or keys.text(config, "backend", "fsspec") or "fsspec"
        if self.backend is None:
            config.pop("backend", None)
        self._name = name
        self._store = get_backend(name)(config)
        self._secrets = self._store.secrets
        self._retry = RetryPolicy(
            retries=_count(engine, "retries", name, default=4),
            deadline=float(_count(engine, "retry_deadline", name, default=60)),
        )
        cache = keys.text(engine, "cache_directory", name)
        self._cache_dir = Path(cache).expanduser() if cache else local_copy.default_cache_dir()
        self._copies = local_copy.LocalCopies(self._cache_dir)
        self._fs: fsspec.AbstractFileSystem | None = None
        self._fs_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.root_url}>"

    # -- where things are -------------------------------------------------------

    @property
    def root_url(self) -> str:
        """The URI of the root (a plain path for the Local backend)."""
        return self._store.uri(self._store.root)

    @property
    def root_dir(self) -> str:
        """The same as :attr:`root_url`."""
        return self.root_url

    @property
    def storage_options(self) -> dict[str, Any]:
        """What ``fsspec.open(uri, **storage_options)`` and pandas' ``storage_options``
        need to open the URIs this manager returns. Holds credentials: don't log it."""
        return copy.deepcopy(dict(self._store.storage_options))

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The fsspec filesystem, created (and its library imported) on first use."""
        if self._fs is not None:
            return self._fs
        with self._fs_lock:
            if self._fs is None:
                options = _merged(self._store.storage_options, self._store.engine_options)
                fs = self._retry.call(
                    lambda: fsspec.filesystem(self._store.protocol, **options),
                    f"open the {self._store.protocol!r} filesystem",
                    self._open_error,
                )
                hide_secrets(self._secrets)
                prepare = self._store.prepare  # timeouts, client retries, resolved secrets
                if prepare is not None:
                    self._retry.call(lambda: prepare(fs), "prepare", self._open_error)
                self._fs = fs
            return self._fs

    # -- the contract -----------------------------------------------------------

    def upload(
        self, local_file_path: str | os.PathLike[str], *, callback: Callback | None = None
    ) -> str:
        """Store a local file as ``<root>/<basename>``, or a directory as the tree
        ``<root>/<dirname>/``, replacing what was stored under that name.

        The caller's file or directory is not changed. The stored object appears
        whole or not at all (an atomic PUT on object stores, a rename elsewhere);
        a re-uploaded directory loses the files that are no longer in it.

        Args:
            local_file_path: the file or directory to store.
            callback: an fsspec callback told of the bytes sent (a progress bar).

        Returns:
            The URI of the stored artifact: an absolute path for the Local
            backend, otherwise a URL that ``fsspec.open(uri, **storage_options)``
            and pandas open.

        Raises:
            BlobNotFoundError: ``local_file_path`` does not exist.
            InvalidPathError: its name cannot be stored safely.
            BlobTransferError: the store failed after every retry.
        """
        src = Path(_fspath(local_file_path, "local_file_path"))
        if not src.exists():
            raise BlobNotFoundError(f"{self._name}: cannot upload {src}: no such file or directory")
        if not src.is_file() and not src.is_dir():  # a pipe, FIFO, socket or device
            raise InvalidPathError(f"{self._name}: cannot upload {src}: not a regular file or a "
                                   "directory (a pipe or device?); write its bytes to a file first")
        name = src.name if src.name not in ("", ".", "..") else src.resolve().name
        dest = paths.join_under(self._store.root, name, what="the name of the uploaded file")
        callback = callback or DEFAULT_CALLBACK
        if src.is_dir():
            self._upload_tree(src, dest, callback)
        else:
            self._upload_file(src, dest, callback)
        uri = self._store.uri(dest)
        log.info("uploaded %s to %s", src, uri)
        return uri

    def download(
        self,
        remote_file_path: str,
        local_dir: str | os.PathLike[str] | None = None,
        *,
        callback: Callback | None = None,
    ) -> str:
        """Fetch a stored file (or directory) to ``<local_dir>/<basename>``.

        The bytes go to a hidden temporary sibling and are renamed into place only
        once complete and verified (size, and MD5 where the store's ETag is one).
        Threads and processes of this host fetching the same URI to the same place
        transfer it once; a local copy that still matches the remote object is
        reused, a truncated, edited or stale one is fetched again.

        Args:
            remote_file_path: a URI that :meth:`upload` returned (or a legacy
                manager's URI), or a path relative to the root.
            local_dir: where to put the copy. ``None``: the Local backend returns
                the stored path itself; other backends use the cache directory.
            callback: an fsspec callback told of the bytes received.

        Returns:
            The local path of the complete copy.

        Raises:
            InvalidPathError: the path is malformed or outside the root (before I/O).
            BlobNotFoundError: no such artifact.
            BlobTransferError: the transfer failed after every retry, the bytes did
                not verify, or ``local_dir`` cannot be written. Nothing new is left
                at the returned path.
        """
        path = self._resolve(remote_file_path)
        if local_dir is None and self._store.url_prefix == "":
            if not os.path.exists(path):
                raise BlobNotFoundError(f"{self._name}: no artifact at {path}")
            return path
        if local_dir is None:
            key = hashlib.sha256(self.root_url.encode()).hexdigest()[:16]
            relative = posixpath.relpath(posixpath.dirname(path), self._store.root)
            folder = self._cache_dir / "downloads" / key / relative
        else:
            folder = Path(_fspath(local_dir, "local_dir")).expanduser()
        folder = folder.absolute()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BlobTransferError(
                f"{self._name}: cannot create the download directory {folder}: {describe(exc)}"
            ) from None
        dest = folder / posixpath.basename(path)
        callback = callback or DEFAULT_CALLBACK
        uri = self._store.uri(path)
        with self._copies.locked(dest):
            self._call(f"download {uri} to {dest}", lambda: self._fetch(path, dest, callback))
        return str(dest)

    # -- the rest of a store's life -----------------------------------------------

    def exists(self, remote_file_path: str) -> bool:
        """Whether an artifact is stored at this URI or relative path."""
        path = self._resolve(remote_file_path)
        return self._call(f"check {self._store.uri(path)}", lambda: self._exists(path))

    def ls(self) -> list[str]:
        """The URIs of the artifacts stored directly under the root, sorted."""

        def listing() -> list[str]:
            try:
                names = self.fs.ls(self._store.root, detail=False)
            except FileNotFoundError:
                return []
            return [posixpath.join(self._store.root, posixpath.basename(n.rstrip("/")))
                    for n in names]

        names = self._call(f"list {self.root_url}", listing)
        return sorted(self._store.uri(n) for n in names
                      if not n.endswith(local_copy.PART_SUFFIX) and n != self._store.root)

    def delete(self, remote_file_path: str) -> None:
        """Delete a stored artifact (a directory with everything in it)."""
        path = self._resolve(remote_file_path)
        uri = self._store.uri(path)

        def remove() -> None:
            self.fs.info(path)  # raises FileNotFoundError
            self.fs.rm(path, recursive=True)

        self._call(f"delete {uri}", remove)

    # -- paths ----------------------------------------------------------------------

    def _resolve(self, uri: str | os.PathLike[str]) -> str:
        """The filesystem path of a URI or relative path, confined to the root."""
        return uris.resolve(self._store, _fspath(uri, "remote_file_path"), self._name)

    # -- transfers --------------------------------------------------------------------

    def _upload_file(self, src: Path, dest: str, callback: Callback) -> None:
        size = src.stat().st_size
        uri = self._store.uri(dest)

        def attempt() -> None:
            fs = self.fs
            if self._store.atomic_put:
                self._put(src, dest, callback)
                self._check_size(dest, size)
                return
            tmp = self._remote_temp(dest)
            try:
                fs.makedirs(self._store.root, exist_ok=True)
                self._put(src, tmp, callback)
                self._check_size(tmp, size)
                self._rename(tmp, dest)
            except BaseException:
                self._discard(tmp)
                raise

        self._call(f"upload {src} to {uri}", attempt)

    def _upload_tree(self, src: Path, dest: str, callback: Callback) -> None:
        files = sorted(p for p in src.rglob("*") if p.is_file())
        if not files:
            raise InvalidPathError(
                f"{self._name}: directory {src} holds no files; object stores cannot keep "
                "an empty directory, so there is nothing to upload"
            )
        relative = [p.relative_to(src).as_posix() for p in files]
        for rel in relative:
            paths.check_segments(rel, what=f"file {rel!r} in {src}")
        sizes = {rel: p.stat().st_size for rel, p in zip(relative, files, strict=True)}
        uri = self._store.uri(dest)

        def put_tree(target: str) -> list[str]:
            """Upload every file below ``target``; return what else is stored there."""
            rpaths = {rel: f"{target}/{rel}" for rel in relative}
            if not self._store.atomic_put:
                for parent in sorted({posixpath.dirname(r) for r in rpaths.values()}):
                    self.fs.makedirs(parent, exist_ok=True)
            small = [rel for rel in relative if sizes[rel] <= BATCH_FILE_SIZE]
            if small:  # in one call: asynchronous filesystems send them concurrently
                self.fs.put([str(src / rel) for rel in small], [rpaths[rel] for rel in small],
                            callback=callback)
            for rel in relative:
                if sizes[rel] > BATCH_FILE_SIZE:
                    self._put(src / rel, rpaths[rel], callback)
            stored = {posixpath.relpath(p, target): i.get("size")
                      for p, i in self._tree(target).items()}
            missing = [rel for rel, size in sizes.items() if stored.get(rel) != size]
            if missing:
                raise _Mismatch(
                    f"{self._name}: after upload {len(missing)} file(s) under "
                    f"{self._store.uri(target)} are missing or incomplete, e.g. {missing[0]!r}"
                )
            return [f"{target}/{rel}" for rel in stored if rel not in sizes]

        def attempt() -> None:
            if self._store.atomic_put:
                stale = put_tree(dest)
                if stale:
                    self.fs.rm(stale)
                return
            fs, tmp, aside = self.fs, self._remote_temp(dest), self._remote_temp(dest)
            try:
                put_tree(tmp)
                if self._exists(dest):
                    fs.mv(dest, aside, recursive=True)
                fs.mv(tmp, dest, recursive=True)
                if self._exists(tmp):
                    raise _Mismatch(f"{self._name}: the store did not rename {self._store.uri(tmp)}")
            except BaseException:
                self._discard(tmp)
                raise
            finally:
                self._discard(aside)

        self._call(f"upload {src} to {uri}", attempt)

    def _fetch(self, path: str, dest: Path, callback: Callback) -> None:
        """Bring ``dest`` up to date with remote ``path`` (runs under the lock)."""
        self.fs.invalidate_cache(path)
        info = self.fs.info(path)
        if info.get("type") == "directory":
            files = self._tree(path)
            if not files:
                raise FileNotFoundError(f"{path} is an empty directory")
            version = json.dumps(
                sorted((posixpath.relpath(p, path), _version(i)) for p, i in files.items())
            )
        else:
            if self._store.etag is not None:
                info = {**info, "etag": self._store.etag(self.fs, path)}
            files, version = None, _version(info)
        if self._copies.is_fresh(dest, version):
            log.debug("%s is up to date", dest)
            return
        tmp = local_copy.temp_sibling(dest, directory=files is not None)
        try:
            if files is None:
                self._get_file(path, tmp, callback)
                self._verify(tmp, info)
            else:
                targets = {}
                for p in files:  # a key with '..' below the directory is refused here
                    inside = paths.require_under(path, p, what="a listed file", where=path)
                    targets[p] = tmp.joinpath(*inside[len(path):].strip("/").split("/"))
                    targets[p].parent.mkdir(parents=True, exist_ok=True)
                self._get_tree(targets, callback)
                for p, target in targets.items():
                    self._verify(target, files[p])
            self._copies.forget(dest)
            local_copy.replace(tmp, dest)
            self._copies.record(dest, version)
        finally:
            local_copy.remove(tmp)
            for stray in tmp.parent.glob(glob.escape(tmp.name) + "?*"):
                local_copy.remove(stray)  # a client's own temporaries, e.g. oss2's resumable download

    def _put(self, src: Path, rpath: str, callback: Callback) -> None:
        """Upload one file, with the store's own writer if it has one."""
        if self._store.put_file is None:
            self.fs.put_file(str(src), rpath, callback=callback)
        else:
            self._store.put_file(self.fs, str(src), rpath, callback)

    def _get_file(self, rpath: str, lpath: Path, callback: Callback) -> None:
        """Fetch one file, with the store's own reader if it has one."""
        if self._store.get_file is None:
            self.fs.get_file(rpath, str(lpath), callback=callback, **self._store.get_options)
        else:
            self._store.get_file(self.fs, rpath, str(lpath), callback)

    def _get_tree(self, targets: Mapping[str, Path], callback: Callback) -> None:
        """Fetch many files; in one call where the filesystem can overlap them."""
        if self._store.get_file is None:
            self.fs.get(list(targets), [str(t) for t in targets.values()], callback=callback,
                        **self._store.get_options)
            return
        callback.set_size(len(targets))
        for rpath, lpath in targets.items():
            self._get_file(rpath, lpath, DEFAULT_CALLBACK)
            callback.relative_update(1)

    def _verify(self, local: Path, info: Mapping[str, Any]) -> None:
        size = local.stat().st_size
        if info.get("size") is not None and size != info["size"]:
            raise _Mismatch(
                f"{self._name}: received {size} bytes of {info.get('name')}, expected {info['size']}"
            )
        etag = str(info.get("ETag") or info.get("etag") or "").strip('"').lower()
        if self._store.md5_etag and len(etag) == 32 and info.get("ServerSideEncryption") != "aws:kms":
            with open(local, "rb") as f:
                digest = hashlib.file_digest(f, "md5").hexdigest()
            if digest != etag:
                raise _Mismatch(
                    f"{self._name}: the bytes received for {info.get('name')} do not match "
                    f"the store's MD5 ({digest} != {etag})"
                )

    def _check_size(self, path: str, size: int) -> None:
        self.fs.invalidate_cache(path)
        stored = self.fs.info(path).get("size")
        if stored != size:
            raise _Mismatch(
                f"{self._name}: {self._store.uri(path)} holds {stored} bytes after upload, expected {size}"
            )

    def _tree(self, path: str) -> dict[str, dict[str, Any]]:
        """Every file below ``path``, with its info, listed afresh."""
        self.fs.invalidate_cache(path)
        found = self.fs.find(path, withdirs=False, detail=True)
        return {p: i for p, i in found.items() if i.get("type") != "directory"}

    def _rename(self, tmp: str, dest: str) -> None:
        """Move an uploaded temporary into place; notice a rename that did nothing."""
        if self._store.protocol in ("file", "local"):
            os.replace(tmp, dest)  # atomic; never moves into a directory named like dest
            return
        if self._exists(dest):
            try:
                self.fs.rm(dest, recursive=True)  # HDFS renames never overwrite
            except FileNotFoundError:
                pass  # another uploader removed it first
        self.fs.mv(tmp, dest)
        if self._exists(tmp):
            raise _Mismatch(
                f"{self._name}: the store did not rename {self._store.uri(tmp)} to "
                f"{self._store.uri(dest)}"
            )

    def _exists(self, path: str) -> bool:
        """Like ``fs.exists``, but an unreachable store raises instead of saying no."""
        self.fs.invalidate_cache(path)
        try:
            self.fs.info(path)
        except Exception as exc:
            if is_not_found(exc):
                return False
            raise
        return True

    def _remote_temp(self, dest: str) -> str:
        parent, name = posixpath.split(dest)
        return f"{parent}/.{name[:100]}.{_random.token_hex(6)}{local_copy.PART_SUFFIX}"

    def _discard(self, path: str) -> None:
        """Remove a remote temporary if it is still there; never raise."""
        try:
            if self._exists(path):
                self.fs.rm(path, recursive=True)
        except Exception as exc:  # the original error matters more than this one
            log.warning("could not remove temporary %s: %s", self._store.uri(path),
                        describe(exc, self._secrets))

    # -- errors ---------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` with retries; turn what it finally raises into a BlobError."""
        return self._retry.call(fn, what, lambda exc, attempts: self._error(exc, what, attempts))

    def _open_error(self, exc: Exception, attempts: int) -> Exception:
        what = f"open the {self._store.protocol!r} filesystem"
        if isinstance(exc, (BlobError, ImportError)) or is_transient(exc) or is_tls_failure(exc):
            return self._error(exc, what, attempts)
        cause = describe(exc, self._secrets, limit=160)
        if self._store.requirements:  # the fix first; a loader's raw detail is long
            return BlobConfigError(f"{self._name}: cannot {what}: {self._store.requirements} "
                                   f"(cause: {cause})")
        return BlobConfigError(f"{self._name}: cannot {what}: {cause}")

    def _error(self, exc: Exception, what: str, attempts: int) -> Exception:
        if isinstance(exc, BlobError):
            return exc
        secrets = (*self._secrets, *known_secrets())
        detail = describe(exc, secrets)
        log.debug("%s: %s", what, detail)
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        options = self._store.storage_options
        endpoint = str(options.get("endpoint_url") or options.get("endpoint") or "")
        at = f" at {describe_endpoint(endpoint, secrets)}" if endpoint else ""
        if is_tls_failure(exc):
            return BlobConfigError(
                f"{self._name}: cannot {what}{at}: the TLS handshake failed ({detail}); "
                "check that the endpoint speaks https (not plain http) and that its "
                "certificate verifies against the CA bundle given as 'verify'"
            )
        if is_not_found(exc):
            return BlobNotFoundError(f"{self._name}: cannot {what}: not found ({detail})")
        if is_integrity_failure(exc):
            return BlobIntegrityError(f"{self._name}: cannot {what}{tries}: the bytes received "
                                      f"do not match the store's checksum ({detail})")
        if isinstance(exc, ImportError):
            extra = _EXTRAS.get(self._store.protocol)
            fix = f"pip install 'fsblob[{extra}]'" if extra else "install the package it names"
            return BlobConfigError(f"{self._name}: cannot {what}: {detail}; {fix}")
        if isinstance(exc, PermissionError):
            return BlobTransferError(
                f"{self._name}: cannot {what}{at}: access denied ({detail}); "
                "check the credentials and the permissions of the root"
            )
        return BlobTransferError(f"{self._name}: cannot {what}{at}{tries}: {detail}")


def _merged(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``extra``, merging nested mappings."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            value = _merged(merged[key], value)
        merged[key] = value
    return merged


def _version(info: Mapping[str, Any]) -> str:
    """A string that changes when the remote object's content changes."""
    fields = {key: str(info[key]) for key in _VERSION_FIELDS if info.get(key) is not None}
    return json.dumps({"size": info.get("size"), **fields}, sort_keys=True)


def _fspath(value: Any, what: str) -> str:
    try:
        text = os.fspath(value)
    except TypeError:
        raise InvalidPathError(f"{what} must be a path or URI string, not {type(value).__name__}") from None
    if isinstance(text, bytes):
        raise InvalidPathError(f"{what} must be a str path, not bytes")
    if not text or "\x00" in text:
        raise InvalidPathError(f"{what} {text!r} is empty or contains a NUL byte")
    return text


def _count(config: Mapping[str, Any], key: str, backend: str, default: int) -> int:
    value = config.get(key, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if number < 0 or isinstance(value, bool):
        raise BlobConfigError(
            f"{backend}: blob_manager_config key {key!r} must be a whole number >= 0, not {value!r}"
        )
    return number


class LocalBlobManager(FsspecBlobManager):
    """Artifacts in a local directory (client, server and workers on one host).

    Keys: ``root_directory``. URIs are absolute paths, and ``download(uri)``
    without ``local_dir`` returns the stored path itself, as AIFlow's did.
    """

    backend = "local"


class S3BlobManager(FsspecBlobManager):
    """Artifacts in Amazon S3 (or an S3-compatible store), through s3fs.

    Keys: ``bucket_name`` and optionally ``root_directory``, ``service_name``,
    ``region_name``, ``api_version``, ``use_ssl``, ``verify``, ``endpoint_url``,
    ``access_key_id``, ``secret_access_key``, ``session_token``, ``config``.
    URIs are ``s3://<bucket>/<root>/<name>``.
    """

    backend = "s3"


class OssBlobManager(FsspecBlobManager):
    """Artifacts in Alibaba Cloud OSS, through ossfs.

    Keys: ``access_key_id``, ``access_key_secret``, ``endpoint``, ``bucket``,
    ``root_directory``. URIs are ``oss://<bucket>/<root>/<name>``.
    """

    backend = "oss"


class HDFSBlobManager(FsspecBlobManager):
    """Artifacts in HDFS, through WebHDFS (an ``http(s)://`` or ``webhdfs://`` url)
    or pyarrow's libhdfs client (an ``hdfs://`` url).

    Keys: ``hdfs_url``, ``hdfs_user``, ``root_directory``.
    """

    backend = "hdfs"
