"""The blob manager contract and its one engine, :class:`FsspecBlobManager`."""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import posixpath
import threading
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import fsspec
from fsspec.callbacks import DEFAULT_CALLBACK, Callback

from fsblob import chunks, local_copy, paths, uris, versions
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
from fsblob.transfer import Transfer

log = logging.getLogger("fsblob")

T = TypeVar("T")

#: Keys every backend accepts, read by the engine itself.
ENGINE_KEYS = keys.ENGINE_KEYS

#: Which extra installs the client library of a protocol.
_EXTRAS = {"s3": "s3", "s3a": "s3", "oss": "oss", "hdfs": "hdfs", "arrow_hdfs": "hdfs"}

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
      default ``$FSBLOB_CACHE_DIR`` or ``~/.cache/fsblob``); ``multipart_threshold``,
      ``multipart_chunksize``, ``max_concurrency`` (parallel parts and ranges, see
      :class:`fsblob.chunks.TransferSettings`).

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
        self._config = dict(config)  # what a pickled manager carries
        config = dict(config)
        engine = {key: config.pop(key) for key in ENGINE_KEYS if key in config}
        name = self.backend or keys.text(config, "backend", "fsspec") or "fsspec"
        if self.backend is None:
            config.pop("backend", None)
        self._name = name
        self._store = get_backend(name)(config)
        self._secrets = self._store.secrets
        try:  # a missing extra is reported now, not at the first transfer
            fsspec.get_filesystem_class(self._store.protocol)
        except ImportError as exc:
            raise self._error(exc, f"open the {self._store.protocol!r} filesystem", 1) from None
        except ValueError:
            raise BlobConfigError(
                f"{name}: the backend's protocol {self._store.protocol!r} is not a known fsspec "
                "protocol; register its filesystem with fsspec.register_implementation"
            ) from None
        self._retry = RetryPolicy(
            retries=_count(engine, "retries", name, default=4),
            deadline=_seconds(engine, "retry_deadline", name, default=60.0),
        )
        cache = keys.text(engine, "cache_directory", name)
        self._cache_dir = Path(cache).expanduser() if cache else local_copy.default_cache_dir()
        self._copies = local_copy.LocalCopies(self._cache_dir)
        self._fs: fsspec.AbstractFileSystem | None = None
        self._fs_lock = threading.Lock()
        self._transfer = Transfer(self._store, self._open_fs, self._copies, name,
                                  chunks.TransferSettings.from_config(engine, name))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.root_url}>"

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the configuration only (credentials included, as fsspec's
        filesystems do); connections and locks are rebuilt on unpickling."""
        return {"config": self._config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"])  # type: ignore[misc]

    # -- where things are -------------------------------------------------------

    @property
    def root_url(self) -> str:
        """The URI of the root (a plain path for the Local backend)."""
        return self._store.uri(self._store.root)

    @property  # AIFlow's plugins set root_dir; fsblob's managers derive it
    def root_dir(self) -> str:  # type: ignore[override]
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
        if self._fs is None:
            self._call(f"open the {self._store.protocol!r} filesystem", self._open_fs)
        assert self._fs is not None
        return self._fs

    def _open_fs(self) -> fsspec.AbstractFileSystem:
        """The filesystem, opened in one attempt: an operation that needs it retries
        its own attempt, so opening must not multiply the retries. An error that no
        retry can mend is a :class:`BlobConfigError` naming the fix."""
        if self._fs is not None:
            return self._fs
        with self._fs_lock:
            if self._fs is None:
                options = _merged(self._store.storage_options, self._store.engine_options)
                try:
                    fs = fsspec.filesystem(self._store.protocol, **options)
                    hide_secrets(self._secrets)
                    if self._store.prepare is not None:  # timeouts, client retries, secrets
                        self._store.prepare(fs)
                except Exception as exc:
                    if is_transient(exc):
                        raise
                    raise self._open_error(exc, 1) from None
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
        if src.is_dir() and self._store.local_paths:
            root, here = os.path.realpath(self._store.root), str(src.resolve())
            if root == here or root.startswith(here.rstrip("/") + "/"):
                raise InvalidPathError(
                    f"{self._name}: cannot upload {src}: it contains the store's root "
                    f"{self.root_url}, which would be copied into itself; upload a directory "
                    "that does not hold the store, or keep the store elsewhere"
                )
        name = src.name if src.name not in ("", ".", "..") else src.resolve().name
        dest = paths.join_under(self._store.root, name, what="the name of the uploaded file")
        callback = callback or DEFAULT_CALLBACK
        uri = self._store.uri(dest)
        if src.is_dir():
            files = versions.scan(src)
            if not files:
                raise InvalidPathError(
                    f"{self._name}: directory {src} holds no files; object stores cannot keep "
                    "an empty directory, so there is nothing to upload"
                )
            self._call(f"upload {src} to {uri}",
                       lambda: self._transfer.upload_tree(files, dest, callback))
        elif src.is_file():
            self._call(f"upload {src} to {uri}",
                       lambda: self._transfer.upload_file(src, dest, callback))
        else:
            raise InvalidPathError(
                f"{self._name}: {src} is not a regular file or directory (a pipe, socket or "
                "device); save its bytes to a file and upload that"
            )
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
        once complete and checked: its size always, its bytes against fsblob's own CRC32
        (stored with every object fsblob writes) or else the store's full-object
        checksum, multipart ETag or MD5 ETag, as they stream past (see
        :mod:`fsblob.integrity`; the log says which check was made, or that none could be).
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
            if local_dir is None:
                raise BlobConfigError(
                    f"{self._name}: cannot create {folder} in the cache directory: "
                    f"{describe(exc)}; set cache_directory (or $FSBLOB_CACHE_DIR) to a "
                    "writable directory, or pass local_dir") from None
            raise BlobTransferError(
                f"{self._name}: cannot create the download directory {folder}: {describe(exc)}"
            ) from None
        self._copies.sweep_once(folder)  # what killed downloads left there
        dest = folder / posixpath.basename(path)
        callback = callback or DEFAULT_CALLBACK
        uri = self._store.uri(path)
        with self._copies.locked(dest):
            self._call(f"download {uri} to {dest}",
                       lambda: self._transfer.fetch(path, dest, callback))
        return str(dest)

    # -- the rest of a store's life -----------------------------------------------

    def exists(self, remote_file_path: str) -> bool:
        """Whether an artifact is stored at this URI or relative path."""
        path = self._resolve(remote_file_path)
        return self._call(f"check {self._store.uri(path)}", lambda: self._transfer.exists(path))

    def ls(self) -> list[str]:
        """The URIs of the artifacts stored directly under the root, sorted."""

        names = self._call(f"list {self.root_url}", self._transfer.names)
        return [self._store.uri(n) for n in names]

    def delete(self, remote_file_path: str) -> None:
        """Delete a stored artifact (a directory with everything in it)."""
        path = self._resolve(remote_file_path)
        uri = self._store.uri(path)

        self._call(f"delete {uri}", lambda: self._transfer.delete(path))

    def gc(self, older_than: float = 86400.0) -> list[str]:
        """Remove what no version needs any more: stored objects that no commit
        record names, and temporaries of uploads that died; only those older than
        ``older_than`` seconds (default a day), so that a running upload keeps its
        own; also the freshness records in the cache directory of copies that
        no longer exist. Returns the URIs removed."""
        removed = self._call(f"collect garbage under {self.root_url}",
                             lambda: self._transfer.gc(older_than))
        local_copy.prune(self._cache_dir, older_than)  # records of copies long gone
        return removed

    def sign(self, remote_file_path: str, expires: float | timedelta = 3600) -> str:
        """A URL that fetches a stored file with a plain HTTP GET, no credentials
        needed, for ``expires`` (seconds or a ``timedelta``; S3 allows 7 days).

        Made by the filesystem's ``sign`` (S3; GCS and others through
        :class:`FsspecBlobManager`), with this manager's credentials.

        Raises:
            InvalidPathError: the path is malformed, outside the root, or a directory.
            BlobNotFoundError: no such artifact.
            BlobConfigError: this store cannot make signed URLs.
        """
        path = self._resolve(remote_file_path)
        seconds = expires.total_seconds() if isinstance(expires, timedelta) else expires
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
            raise InvalidPathError(f"expires must be a positive number of seconds, not {expires!r}")
        uri = self._store.uri(path)

        def signed() -> str:
            self.fs.invalidate_cache(path)
            if self.fs.info(path).get("type") == "directory":
                raise InvalidPathError(f"{self._name}: {uri} is a directory; sign its files one by one")
            try:
                return str(self.fs.sign(path, expiration=int(seconds)))
            except NotImplementedError:
                raise BlobConfigError(
                    f"{self._name}: cannot sign {uri}: the {self._store.protocol!r} filesystem "
                    "makes no signed URLs; use a store that does (S3, or GCS/Azure through "
                    "FsspecBlobManager), or download with this manager's credentials"
                ) from None

        return self._call(f"sign {uri}", signed)

    # -- paths ----------------------------------------------------------------------

    def _resolve(self, uri: str | os.PathLike[str]) -> str:
        """The filesystem path of a URI or relative path, confined to the root."""
        return uris.resolve(self._store, _fspath(uri, "remote_file_path"), self._name)

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
        if type(exc).__name__ == "NoCredentialsError":  # botocore: none in config or chain
            return BlobConfigError(
                f"{self._name}: cannot {what}{at}: no credentials ({detail}); set "
                "access_key_id and secret_access_key, or the AWS credential chain "
                "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance role)"
            )
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
    if number < 0 or isinstance(value, bool) or (isinstance(value, float) and value != number):
        raise BlobConfigError(
            f"{backend}: blob_manager_config key {key!r} must be a whole number >= 0, not {value!r}"
        )
    return number


def _seconds(config: Mapping[str, Any], key: str, backend: str, default: float) -> float:
    """A duration in seconds >= 0: a number, or its text (from ``${ENV}``)."""
    value = config.get(key, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if not 0 <= number < float("inf") or isinstance(value, bool):
        raise BlobConfigError(
            f"{backend}: blob_manager_config key {key!r} must be a number of seconds >= 0, "
            f"such as 60 or 2.5, not {value!r}"
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
