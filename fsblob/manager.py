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

from fsblob import chunks, local_copy, paths, stall, uris, versions
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
    find_stall,
    is_integrity_failure,
    is_not_found,
    is_tls_failure,
    is_transient,
)
from fsblob.store import Store
from fsblob.transfer import Transfer
from fsblob.trees import Trees

log = logging.getLogger("fsblob")

T = TypeVar("T")

#: Keys every backend accepts, read by the engine itself.
ENGINE_KEYS = keys.ENGINE_KEYS


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
      ``stall_timeout`` (seconds without progress after which a request is cut,
      default 30; see :mod:`fsblob.stall`),
      ``cache_directory`` (locks, freshness records and default downloads;
      default ``$FSBLOB_CACHE_DIR`` or ``~/.cache/fsblob``); ``multipart_threshold``,
      ``multipart_chunksize``, ``max_concurrency``, ``one_stream_rate`` (parallel parts
      and ranges, see :class:`fsblob.chunks.TransferSettings`).

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
        self._relative_root = _relative_local_root(config, self._store)
        if self._relative_root is not None:  # resolved once: a pickled manager keeps this root
            self._config["root_directory"] = self._store.root
        self._secrets = self._store.secrets
        try:  # a missing extra is reported now, not at the first transfer
            fsspec.get_filesystem_class(self._store.protocol)
        except ImportError as exc:
            raise self._error(exc, f"open the {self._store.protocol!r} filesystem", 1) from None
        except ValueError:
            raise BlobConfigError(
                f"{name}: the backend's {uris.unknown_protocol(self._store.protocol)}") from None
        stall_timeout = _seconds(engine, "stall_timeout", name, default=stall.STALL_TIMEOUT)
        if not stall_timeout > 0:
            raise BlobConfigError(
                f"{name}: blob_manager_config key 'stall_timeout' must be a number of seconds "
                f"> 0, such as 30 or 2.5, not {engine['stall_timeout']!r}")
        self._retry = RetryPolicy(
            retries=_count(engine, "retries", name, default=4),
            deadline=_seconds(engine, "retry_deadline", name, default=60.0),
            limits=stall.Limits(stall=stall_timeout),
        )
        cache = keys.text(engine, "cache_directory", name)
        self._cache_dir = Path(cache).expanduser() if cache else local_copy.default_cache_dir()
        self._copies = local_copy.LocalCopies(self._cache_dir)
        self._fs: fsspec.AbstractFileSystem | None = None
        self._fs_lock = threading.Lock()
        self._transfer = Transfer(self._store, self._open_fs, self._copies, name,
                                  chunks.TransferSettings.from_config(engine, name))
        self._trees = Trees(self._transfer)

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
        """Store a local file as ``<root>/<basename>``, or a directory as a new
        version of the tree ``<root>/<dirname>``, replacing what that name held.

        The caller's file or directory is not changed. A file is one object,
        written whole or not at all (an atomic PUT on object stores, a rename
        elsewhere). A directory becomes a new, never-modified version
        (``<root>/.fsblob/trees/<dirname>/<version>/``), and the name is pointed at
        it in one atomic write once every file is stored and checked; until then
        readers get the previous version, whole.

        Args:
            local_file_path: the file or directory to store.
            callback: an fsspec callback told of the bytes sent (a progress bar).

        Returns:
            The URI of the stored artifact: an absolute path for the Local
            backend, otherwise a URL that ``fsspec.open(uri, **storage_options)``
            and pandas open. For a directory, the URI of the version just
            stored: a plain directory that never changes (``download`` of it
            gets exactly that version; ``download`` of ``<root>/<dirname>``
            gets the latest).

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
        if versions.is_reserved(name):
            raise InvalidPathError(
                f"{self._name}: cannot upload {src}: the name {name!r} is reserved for fsblob's "
                f"own bookkeeping ({versions.CONTROL!r}, and names ending in "
                f"{versions.PART_SUFFIX!r}); rename it or upload its parent directory")
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
            uri = self._store.uri(self._call(
                f"upload {src} to {uri}", lambda: self._trees.upload_tree(files, dest, callback)))
        elif src.is_file():
            self._call(f"upload {src} to {uri}",
                       lambda: self._trees.upload_file(src, dest, callback))
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
            try:
                return self._call(f"find {path}", lambda: self._trees.stored_path(path))
            except BlobNotFoundError:
                raise BlobNotFoundError(f"{self._name}: no artifact at {path}") from None
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
        dest = folder / self._trees.local_name(path)
        callback = callback or DEFAULT_CALLBACK
        uri = self._store.uri(path)
        with self._copies.locked(dest):
            self._call(f"download {uri} to {dest}",
                       lambda: self._trees.fetch(path, dest, callback))
        return str(dest)

    # -- the rest of a store's life -----------------------------------------------

    def exists(self, remote_file_path: str) -> bool:
        """Whether an artifact is stored at this URI or relative path."""
        path = self._resolve(remote_file_path)
        return self._call(f"check {self._store.uri(path)}", lambda: self._trees.exists(path))

    def ls(self, path: str | None = None) -> list[str]:
        """The URIs of the artifacts stored directly under the root, sorted.

        With ``path`` (a URI or a path relative to the root), as ``aws s3 ls``
        takes one: the entries directly inside that directory, or inside the
        current version of a tree (as the version's URIs); the artifact itself if
        it is a file; otherwise the entries of its directory whose names begin
        with its last part (a prefix). fsblob's own files are never listed.
        """
        if path is None or path.rstrip("/") == self.root_url.rstrip("/"):
            names = self._call(f"list {self.root_url}", self._trees.names)
            return [self._store.uri(n) for n in names]
        target = self._resolve(path)
        return self._call(f"list {self._store.uri(target)}", lambda: self._below(target))

    def _below(self, target: str) -> list[str]:
        """What :meth:`ls` lists for a path: a tree's or directory's entries, a file,
        or a prefix's."""
        now = self._trees.current(target)
        if now.kind == "tree":
            assert now.manifest is not None
            vdir = versions.version_dir(self._store.root, now.manifest.name, now.manifest.version)
            return sorted({self._store.uri(f"{vdir}/{rel.split('/', 1)[0]}")
                           for rel in now.manifest.files})
        if now.kind == "file":
            return [self._store.uri(target)]
        parent, stem = posixpath.split(target) if now.kind == "none" else (target, "")
        fs = self._open_fs()
        fs.invalidate_cache(parent)
        try:
            entries = fs.ls(parent, detail=False)
        except (FileNotFoundError, NotADirectoryError):
            entries = []
        found = set()
        for entry in entries:
            base = posixpath.basename(str(entry).rstrip("/"))
            if base and base.startswith(stem) and not versions.is_reserved(base):
                found.add(self._store.uri(posixpath.join(parent, base)))
        return sorted(found)

    def delete(self, remote_file_path: str) -> None:
        """Delete a stored artifact: a file, or a tree name (in one step: its
        pointer; :meth:`gc` removes its versions later)."""
        path = self._resolve(remote_file_path)
        uri = self._store.uri(path)
        self._call(f"delete {uri}", lambda: self._trees.delete(path))

    def gc(self, older_than: float = 86400.0, keep: int = 2) -> list[str]:
        """Remove what no reader needs any more, and only below the root's
        ``.fsblob/`` folder: tree versions that no name points to, except the
        ``keep`` newest superseded ones of each tree name (default 2) and those
        superseded less than ``older_than`` seconds ago (default a day); versions
        never committed, temporaries of uploads that died and unfinished multipart
        uploads, once older than ``older_than``; also the freshness records in the
        cache directory of copies that no longer exist. Returns the URIs removed."""
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise InvalidPathError(f"keep must be a whole number >= 0, not {keep!r}")
        if isinstance(older_than, bool) or not isinstance(older_than, (int, float)) or older_than < 0:
            raise InvalidPathError(f"older_than must be a number of seconds >= 0, not {older_than!r}")
        removed = self._call(f"collect garbage under {self.root_url}",
                             lambda: self._trees.gc(older_than, keep))
        local_copy.prune(self._cache_dir, older_than)  # records of copies long gone
        return removed

    def sign(self, remote_file_path: str, expires: float | timedelta = 3600) -> str:
        """A URL that fetches a stored file with a plain HTTP GET, no credentials
        needed, for ``expires`` (seconds or a ``timedelta``; S3 honours 1 s to 7 days).

        Made by the filesystem's ``sign`` (S3; GCS and others through
        :class:`FsspecBlobManager`), with this manager's credentials.

        Raises:
            InvalidPathError: the path is malformed, outside the root, or a directory.
            BlobNotFoundError: no such artifact.
            BlobConfigError: this store cannot make signed URLs.
            InvalidPathError: ``expires`` is outside what the store honours
                (S3: 1 to 604800 seconds), naming the range.
        """
        path = self._resolve(remote_file_path)
        seconds = expires.total_seconds() if isinstance(expires, timedelta) else expires
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
            raise InvalidPathError(f"expires must be a positive number of seconds, not {expires!r}")
        low, high = self._store.sign_expiry or (1, 0)
        if high and seconds > high:
            raise BlobConfigError(
                f"{self._name}: expires {seconds:g} s is longer than a signed URL of the "
                f"{self._store.protocol!r} store can live ({high} s, {high // 86400} days): "
                f"it honours {low} s to {high} s; give at most {high // 86400}d")
        if seconds < low:
            raise BlobConfigError(
                f"{self._name}: expires {seconds:g} s is shorter than a signed URL can be: "
                f"the {self._store.protocol!r} store honours {low} s"
                f"{f' to {high} s' if high else ' or more'}; give at least {low}")
        uri = self._store.uri(path)

        def signed() -> str:
            kind = self._trees.current(path).kind
            if kind == "none":
                raise FileNotFoundError(path)
            if kind in ("tree", "directory"):
                raise InvalidPathError(f"{self._name}: {uri} is a tree; sign its files one by "
                                       "one (below the URI of its version)")
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
        """The filesystem path of a URI or relative path, confined to the root and
        outside fsblob's own folder (except the stored versions of trees)."""
        path = uris.resolve(self._store, _fspath(uri, "remote_file_path"), self._name,
                            relative_root=self._relative_root)
        if (versions.is_control(self._store.root, path)
                and versions.parse_version_path(self._store.root, path) is None):
            raise InvalidPathError(
                f"{self._name}: {self._store.uri(path)} is inside {versions.CONTROL!r}, fsblob's "
                "own bookkeeping, which is not an artifact; give a URI that upload() returned")
        return path

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
        stalled = find_stall(exc)
        if stalled is not None:
            return BlobTransferError(f"{self._name}: cannot {what}{tries}: "
                                     f"{describe(stalled, secrets)}")
        if is_integrity_failure(exc):
            return BlobIntegrityError(f"{self._name}: cannot {what}{tries}: the bytes received "
                                      f"do not match the store's checksum ({detail})")
        if isinstance(exc, ImportError):
            extra = self._store.extra
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


def _relative_local_root(config: Mapping[str, Any], store: Store) -> str | None:
    """``root_directory`` when it is a relative local path (resolved against the
    working directory), else ``None``."""
    root = config.get("root_directory")
    if (not store.local_paths or not isinstance(root, str) or not root
            or fsspec.core.split_protocol(root)[0] or os.path.isabs(os.path.expanduser(root))):
        return None
    return root


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
