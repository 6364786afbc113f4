"""What a backend produces: where artifacts live, as fsspec sees it."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

_SECRET_KEY = re.compile(r"secret|token|password|passwd|credential|(^|_)key($|_)", re.I)


@dataclass(frozen=True)
class Upload:
    """An unfinished multipart upload: the path it would create, its id, and when
    it began (epoch seconds)."""

    path: str
    id: str
    started: float


class Rest(Protocol):
    """The bytes of an answer after those a :class:`Start` kept."""

    def read(self, feed: Callable[[bytes], None], limit: int | None = None) -> None:
        """Send them to ``feed``, in pieces, to the object's end, or only the next
        ``limit`` bytes (the rest of the answer, and its connection, are then let
        go); once."""

    def close(self) -> None:
        """Let go of them (and of the connection), if they were not read."""


@dataclass(frozen=True)
class Start:
    """What one GET of an object told, and its first bytes (:attr:`Store.read_start`).

    Attributes:
        meta: its :class:`~fsblob.integrity.Meta`; ``None``: it still has the ETag
            the GET named in ``If-None-Match`` (a 304).
        data: its first bytes: the whole object when ``meta.size`` is no larger
            than the GET asked for and they came in time (else ``rest`` holds the
            remainder).
        rate: bytes per second at which ``data`` arrived (from the answer's
            headers on); ``None`` when not measured.
        rest: the rest of the same answer, when the backend left it open: read
            once with ``rest.read(feed)``, or let go with ``rest.close()``; the
            one who holds the Start does one of the two.
    """

    meta: Any
    data: bytes = b""
    rate: float | None = None
    rest: Rest | None = None

    def close(self) -> None:
        """Let go of the rest of the answer, if it was not read."""
        if self.rest is not None:
            self.rest.close()


@dataclass(frozen=True, repr=False)
class Store:
    """A backend's answer to "where do artifacts go?".

    Attributes:
        protocol: the fsspec protocol name (``"file"``, ``"s3"``, ``"webhdfs"``...).
        root: the root as the filesystem names it, without protocol
            (``"/data/artifacts"``, ``"bucket/prefix"``).
        storage_options: keyword arguments for the fsspec filesystem; exactly what
            ``fsspec.open`` and pandas need to open the URIs fsblob returns.
        url_prefix: what goes before a path to make its URI. ``None`` means
            ``"<protocol>://"``; ``""`` means plain local paths;
            ``"webhdfs://host:port"`` keeps the server in the URI.
        legacy_prefixes: URI prefixes of legacy blob managers, each mapped to the
            filesystem path it stands for; ``download`` accepts such URIs.
        get_options: extra keyword arguments for the filesystem's ``get_file``.
        md5_etag: the store's ETag of a single-part object is the MD5 of its
            bytes, so downloads can be verified against it.
        requirements: what the filesystem needs on this host, told when it
            cannot be opened.
        engine_options: options for fsblob's own filesystem instance only, on top
            of ``storage_options``. fsblob retries transfers itself, so a backend
            uses this to turn its library's retries off where it can.
        put_file: a replacement for the filesystem's ``put_file``, called as
            ``put_file(fs, lpath, rpath, callback)``, where the client's own is slow
            or memory-hungry; with ``upload``, the bytes alone, for files whose
            checksum travels elsewhere (a tree's manifest) where storing it costs a
            request of its own (a WebHDFS xattr). Returns what ``upload`` returns.
        get_file: a replacement for the filesystem's ``get_file``, called as
            ``get_file(fs, rpath, lpath, callback)``, where the client's own read
            path is unsafe.
        replace: a function ``(fs, src, dest)`` that renames ``src`` over an existing
            file ``dest`` in one step, for rename stores whose filesystem cannot
            (WebHDFS's rename with ``OVERWRITE``). Without it, fsblob moves the old
            file aside first and back if the rename fails.
        stat: a replacement for the filesystem's ``info(path)`` of one object, called
            as ``stat(fs, path)``, where ``info`` leaves out what verification needs
            (S3: whether the object is encrypted with KMS or a customer key, whose
            ETags are not the MD5 of the bytes).
        etag: for stores whose ``info()`` lacks an ETag, a function
            ``(fs, path) -> str`` asking the store for it, so that a replaced
            object of the same size and second is still noticed.
        prepare: a function ``(fs) -> None`` applied once to fsblob's own
            filesystem instance when it is opened: request timeouts on its HTTP
            session, the client's own retries off, secrets it resolved hidden.
            It may raise :class:`~fsblob.errors.BlobConfigError`.
        sign_expiry: the shortest and longest life (seconds) of a signed URL the
            store honours, for stores whose filesystem signs (``None``: no limit known).
        extra: the ``pip install 'fsblob[<extra>]'`` that brings the client library.
        list_uploads: for stores with multipart uploads, a function
            ``(fs, root) -> list[Upload]`` of the unfinished ones below ``root``
            (``gc`` aborts those older than its grace period).
        abort_upload: ``(fs, upload) -> None``, aborting one of them.
        meta: the backend's stat of one object, ``(fs, path) ->``
            :class:`~fsblob.integrity.Meta`: size, ETag, version, fsblob's CRC32
            and the store's own checksums (raises ``FileNotFoundError``; a
            directory is ``Meta(is_dir=True)``). Without it the engine reads
            ``fs.info``.
        read_range: the backend's byte path for downloads, ``(fs, path, meta, start,
            end, feed)``: sends bytes ``start`` to ``end`` (exclusive) of the version
            ``meta`` describes to ``feed`` in pieces, and raises
            :class:`~fsblob.chunks.ObjectChanged` if that version is gone (If-Match).
            Without it: fsspec's ranged ``cat_file``, pinned by re-reading the stat.
        read_start: one request that both stats and reads, ``(fs, path, limit,
            unless_etag, within) ->`` :class:`Start`: a GET of the object whose answer
            gives its Meta and first ``limit`` bytes, or fewer once ``within`` seconds
            (``None``: no limit) have passed since its headers (the rest may be left
            in the answer: :attr:`Start.rest`), or ``Start(None)`` if its ETag is still
            ``unless_etag`` (``If-None-Match``); ``FileNotFoundError`` when there is
            no object (a directory, or nothing: the engine then asks ``meta``).
            Downloads use it so that a file costs one request.
        upload: the backend's byte path for uploads, ``(fs, lpath, rpath, callback,
            settings) -> crc32 | None``: writes the file with fsblob's checksum in the
            store's metadata and verifies what the store holds before returning;
            returns the CRC32 of the bytes it stored, where it took it from those
            very bytes (as they were sent, or checked against them by the store):
            a tree's upload compares it with its manifest (``None``: the caller
            reads the file again to know it did not change).
        upload_files: the backend's batch byte path for a tree's files, ``(fs,
            [(lpath, rpath, entry)], callback, settings) -> {rpath: etag}``, whose
            size, MD5 and CRC32 (``entry``) the caller knows and keeps in a manifest:
            every file's parts and PUTs under one concurrency budget, each checked
            by the store against those digests; returns the ETags that are MD5s
            (or MD5s of part MD5s), for the caller's listing to compare.
        ranged_reads: whether parallel ranged reads can be faster than one stream.
        local_paths: the root is a directory of this host (``os`` calls apply).
        atomic_writes: whether a single write is atomic (an object appears whole or
            not at all); ``None``: decided by the protocol, as the generic backend
            knows them (:data:`fsblob.backends.generic.ATOMIC_PUT_PROTOCOLS`).
    """

    protocol: str
    root: str
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    url_prefix: str | None = None
    legacy_prefixes: Mapping[str, str] = field(default_factory=dict)
    get_options: Mapping[str, Any] = field(default_factory=dict)
    md5_etag: bool = False
    requirements: str = ""
    engine_options: Mapping[str, Any] = field(default_factory=dict)
    put_file: Callable[[Any, str, str, Any], int | None] | None = None
    get_file: Callable[[Any, str, str, Any], None] | None = None
    etag: Callable[[Any, str], str] | None = None
    replace: Callable[[Any, str, str], None] | None = None
    prepare: Callable[[Any], None] | None = None
    stat: Callable[[Any, str], Mapping[str, Any]] | None = None
    sign_expiry: tuple[int, int] | None = None
    extra: str = ""
    list_uploads: Callable[[Any, str], list[Upload]] | None = None
    abort_upload: Callable[[Any, Upload], None] | None = None
    meta: Callable[[Any, str], Any] | None = None
    read_range: Callable[[Any, str, Any, int, int, Callable[[bytes], None]], None] | None = None
    read_start: Callable[[Any, str, int, str, float | None], Start] | None = None
    upload: Callable[[Any, str, str, Any, Any], int | None] | None = None
    upload_files: Callable[[Any, Any, Any, Any], dict[str, str]] | None = None
    ranged_reads: bool = True
    local_paths: bool = False
    atomic_writes: bool | None = None

    def uri(self, path: str) -> str:
        """The URI of a filesystem path of this store."""
        prefix = f"{self.protocol}://" if self.url_prefix is None else self.url_prefix
        return prefix + path

    @property
    def atomic_put(self) -> bool:
        """Whether a single write to this store is atomic."""
        if self.atomic_writes is not None:
            return self.atomic_writes
        # the protocols' nature is a backend's knowledge, not the engine's
        from fsblob.backends.generic import ATOMIC_PUT_PROTOCOLS

        return self.protocol in ATOMIC_PUT_PROTOCOLS

    @property
    def server_copy(self) -> bool:
        """Whether the filesystem's ``copy`` copies on the server (object stores),
        so unchanged files of a tree are not sent again."""
        return self.atomic_put

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values in ``storage_options`` that must never be shown: those of
        keys naming a secret, key, token or password, and passwords inside URLs."""
        return tuple(_secret_values(self.storage_options))

    def __repr__(self) -> str:
        return f"Store(protocol={self.protocol!r}, root={self.root!r})"


def _secret_values(options: Any, key: str = "") -> list[str]:
    if isinstance(options, Mapping):
        return [v for k, value in options.items() for v in _secret_values(value, str(k))]
    if isinstance(options, (list, tuple)):
        return [v for value in options for v in _secret_values(value, key)]
    if isinstance(options, str) and _SECRET_KEY.search(key):
        return [options]
    if isinstance(options, str) and "@" in options and "://" in options:
        password = urlsplit(options).password  # a URL with credentials in it
        return [password] if password else []
    return []
