"""Names and tree versions: what an artifact name holds, and every change to it.

A name holds a file or a tree. A tree is stored as immutable versions and one
pointer (see :mod:`fsblob.versions` for the layout):

1. **Files.** Each upload writes its files below a new version directory that
   nothing reads yet. Files unchanged since the current version are copied from it
   server-side where the store can copy (S3, OSS); the rest are sent. A copy whose
   source has gone, or whose bytes the store's MD5 ETag says differ, is sent again.
2. **Check.** Every file sent holds what the manifest says: the CRC32 its byte
   path took from the bytes stored, or (sent by fsspec's ``put``) the file read
   again; a file changed since the directory was read fails the upload. One fresh
   listing of the version must show every file at its size (and, for copies, its
   MD5 where the store's ETag is one).
3. **Manifest**, written beside the version: from now on it is a version.
4. **Pointer**, written at ``<root>/<name>`` in one atomic write. Only now does the
   name change, from one complete version to another.

Readers resolve the pointer (or are given a version's URI), read the manifest and
fetch that version's files, each verified against it; a version never changes, so
there is nothing to keep in step and nothing to repair. :meth:`Trees.gc` removes
versions no pointer names once superseded long enough, dead temporaries and
abandoned multipart uploads, all below ``<root>/.fsblob/`` and nowhere else.
"""

from __future__ import annotations

import contextvars
import errno
import functools
import json
import logging
import os
import posixpath
import shutil
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from threading import Lock
from typing import Any

from fsspec.callbacks import Callback

from fsblob import integrity, local_copy, versions
from fsblob.chunks import FileChanged, RangeMismatch
from fsblob.errors import BlobIntegrityError, InvalidPathError
from fsblob.integrity import Meta
from fsblob.retry import is_not_found
from fsblob.store import Start
from fsblob.transfer import BATCH_FILE_SIZE, Transfer, _Bytes
from fsblob.versions import LocalFile, Manifest, Pointer, VersionPath

log = logging.getLogger("fsblob")


@dataclass(frozen=True)
class Current:
    """What a name holds now: a tree's pointer and manifest, a file, or nothing."""

    # "tree", "file", "directory" (a tree another tool wrote), "none", "damaged",
    # "unchanged" (a file still at the ETag the caller named)
    kind: str
    info: Meta | None = None
    manifest: Manifest | None = None
    problem: str = ""
    start: Start | None = None  # a file's first bytes (and the rest), if the look read them


class Trees:
    """Every name-level operation of one store, on top of its :class:`Transfer`."""

    def __init__(self, transfer: Transfer) -> None:
        self.t = transfer
        self.store = transfer.store
        self.root = transfer.root

    @property
    def fs(self) -> Any:
        return self.t.fs

    # -- reading what a name holds ----------------------------------------------------

    def current(self, path: str, *, strict: bool = True, read: bool = False,
                unless_etag: str = "") -> Current:
        """What ``path`` holds now. A damaged pointer or manifest raises when
        ``strict``, and is reported as ``kind="damaged"`` otherwise. ``read``: a
        download's look, which also reads a file's first bytes where the store can
        in the same request (``unless_etag``: ``"unchanged"`` if it still has it)."""
        self.fs.invalidate_cache(path)
        start = self.t._start(path, unless_etag) if read else None
        if start is not None and start.meta is None:
            return Current("unchanged")
        try:
            info = start.meta if start is not None else self.t._meta(path)
        except FileNotFoundError:
            return Current("none")
        data = start.data if start is not None else None
        if info.is_dir:
            return Current("directory", info)
        name = versions.name_of(self.root, path)
        if name is None or info.size != versions.POINTER_SIZE:  # only these may be pointers
            return Current("file", info, start=start)
        if start is not None and start.rest is not None and len(start.data) < info.size:
            pieces = [start.data]  # cut short by time: the rest of the same answer
            start.rest.read(pieces.append)
            data = b"".join(pieces)
        if data is None or len(data) != info.size:
            data = self.t._cat(path)
        else:  # a pointer's bytes are checked like any download's
            self.t._checked(path, info, data)
        if not Pointer.is_pointer(data):
            return Current("file", info, start=Start(info, data))
        try:
            pointer = Pointer.parse(data, self.store.uri(path))
            manifest = self.manifest(name, pointer.version)
        except (InvalidPathError, FileNotFoundError) as exc:
            if strict:
                if isinstance(exc, FileNotFoundError):
                    raise BlobIntegrityError(
                        f"{self.t.backend}: {self.store.uri(path)} names version {exc}, which is "
                        "gone; upload the directory again") from None
                raise
            return Current("damaged", info, problem=str(exc))
        return Current("tree", info, manifest)

    def manifest(self, name: str, version: str) -> Manifest:
        """The validated manifest of one version (``FileNotFoundError``: none)."""
        path = versions.manifest_path(self.root, name, version)
        try:
            data = self.t._cat(path)
        except Exception as exc:
            if is_not_found(exc) or isinstance(exc, (IsADirectoryError, NotADirectoryError)):
                raise FileNotFoundError(version) from None
            raise
        return Manifest.from_json(data, name, version, self.store.uri(path))

    # -- uploads ----------------------------------------------------------------------

    def upload_tree(self, files: Mapping[str, LocalFile], dest: str, callback: Callback) -> str:
        """Store a directory as a new version of ``dest`` and point the name at it;
        return the version's path."""
        name = versions.name_of(self.root, dest)
        assert name is not None
        previous = self.current(dest, strict=False)
        if previous.kind == "damaged":
            log.warning("%s: %s; this upload replaces it", self.t.backend, previous.problem)
        old = previous.manifest
        version = versions.new_version()
        vdir = versions.version_dir(self.root, name, version)
        manifest = Manifest(name, version, versions.stamp(),
                            {rel: f.entry for rel, f in files.items()})
        copies = {}
        if old is not None and self.store.server_copy and self.store.md5_etag:
            # only where a copy can be checked (by the store's MD5 ETag): a damaged
            # source must not be copied into a new version
            old_dir = versions.version_dir(self.root, name, old.version)
            copies = {rel: f"{old_dir}/{rel}" for rel, f in files.items()
                      if old.files.get(rel) == f.entry}
        sends = {rel: f for rel, f in files.items() if rel not in copies}
        callback.set_size(sum(f.entry.size for f in sends.values()))
        etags = self._send(sends, vdir, callback)
        self._copy(copies, vdir)
        wrong = self._check(vdir, manifest, copied=set(copies), etags=etags)
        if wrong:  # copies whose source was gone or damaged: their bytes, from here
            log.info("%s: %d unchanged files could not be copied from version %s; sending them",
                     self.t.backend, len(wrong), old.version if old else "-")
            etags = self._send({rel: files[rel] for rel in wrong}, vdir, Callback())
            still = self._check(vdir, manifest, copied=set(), etags=etags)
            if still:
                raise BlobIntegrityError(
                    f"{self.t.backend}: version {version} of {self.store.uri(dest)} is missing "
                    f"{len(still)} files after upload (e.g. {sorted(still)[0]}); nothing was "
                    "committed, the previous version stands")
        manifest_path = versions.manifest_path(self.root, name, version)
        self.t._write_bytes(manifest_path, manifest.to_json())
        self._write_pointer(dest, Pointer(version).to_bytes())
        if not self.t._exists(manifest_path):  # see _gc_name: a gc removed it meanwhile
            raise BlobIntegrityError(
                f"{self.t.backend}: a gc removed version {version} of {self.store.uri(dest)} "
                "while the name was being pointed at it (a gc with no grace period); "
                "uploading it again as a new version")
        if previous.kind == "directory" and self.store.atomic_put:
            self.t._remove_tree(dest)  # the plain tree the name held (another tool's, or 0.x's)
        log.info("committed version %s of %s (%d files: %d sent, %d copied)", version,
                 self.store.uri(dest), len(files), len(sends), len(copies))
        return vdir

    def _send(self, files: Mapping[str, LocalFile], vdir: str,
              callback: Callback) -> dict[str, str]:
        """Write files below a version nobody reads yet: no temporaries, no renames.
        On object stores small files go in one batched call (the filesystem overlaps
        them). The others go through the backend's batch upload where it has one
        (all their parts under one budget of ``max_concurrency``), else
        ``max_concurrency`` files at a time, each in parallel parts where it is
        large. Returns the ETags the backend checked, by relative path, for
        :meth:`_check` to compare with its listing."""
        if not files:
            return {}
        try:
            return self._send_files(files, vdir, _Locked(callback))
        except FileNotFoundError as exc:  # the new version's folder went (gc with no grace)
            raise BlobIntegrityError(
                f"{self.t.backend}: a file vanished while {vdir} was being written ({exc}: a "
                "local file removed, or the new version removed by a gc with no grace "
                "period); nothing was committed") from None
        except FileChanged:
            raise
        except BlobIntegrityError as exc:  # damaged on the way (retried), or a local change?
            self._sent_as_scanned(files, {}, cause=exc)
            raise

    def _send_files(self, files: Mapping[str, LocalFile], vdir: str,
                    guarded: Callback) -> dict[str, str]:
        many = self.store.upload_files
        batched = {rel for rel, f in files.items() if self.store.atomic_put and (
            f.entry.size <= BATCH_FILE_SIZE) and (many is None or f.entry.crc32 is None)}
        crcs: dict[str, int | None] = {}  # of the bytes stored, where a byte path took it
        if batched:
            rels = sorted(batched)
            self.fs.put([str(files[rel].path) for rel in rels], [f"{vdir}/{rel}" for rel in rels],
                        callback=_Bytes(guarded, [files[rel].entry.size for rel in rels]))
        rest = {rel: f for rel, f in files.items() if rel not in batched}
        if not rest:
            self._sent_as_scanned(files, crcs)
            return {}
        if many is not None and all(f.entry.crc32 is not None for f in rest.values()):
            # every file's parts and PUTs under one budget, checked against the
            # manifest's digests: no second hashing pass, no HEAD per file
            try:
                etags = many(self.fs, [(str(f.path), f"{vdir}/{rel}", f.entry)
                                       for rel, f in sorted(rest.items())],
                             _Within(guarded), self.t.settings)
            except RangeMismatch as exc:  # the public type, from the public module
                raise BlobIntegrityError(f"{self.t.backend}: {exc}") from None
            return {posixpath.relpath(path, vdir): etag for path, etag in etags.items()}
        if not self.store.atomic_put:
            for folder in sorted({posixpath.dirname(f"{vdir}/{rel}") for rel in rest}):
                self.fs.makedirs(folder, exist_ok=True)  # leaves only: makedirs makes parents
        with ThreadPoolExecutor(self.t.settings.max_concurrency,
                                thread_name_prefix="fsblob-tree") as pool:
            put = functools.partial(self.t._put, checksum=False)  # the manifest has it
            jobs = {rel: pool.submit(contextvars.copy_context().run,  # the attempt's limits
                                     put, f.path, f"{vdir}/{rel}", _Within(guarded))
                    for rel, f in rest.items()}
            try:
                for rel, job in jobs.items():
                    crcs[rel] = job.result()
            except BaseException:
                for job in jobs.values():  # files not yet started are not sent
                    job.cancel()
                raise
        self._sent_as_scanned(files, crcs)
        return {}

    def _sent_as_scanned(self, files: Mapping[str, LocalFile], crcs: Mapping[str, int | None],
                         *, cause: BaseException | None = None) -> None:
        """Every file sent holds what its manifest entry says, or raise
        :class:`FileChanged`: a file changed after the directory was read would make
        a version its readers refuse. A CRC32 the byte path took from the bytes it
        stored (``crcs``) must be the entry's; a file sent without one (fsspec's
        ``put``), or every file after a failed check (``cause``: was it the file or
        the way?), is read again and must still have the entry's size and CRC32 (a
        change reverted before that read goes unseen there)."""
        again = sorted(rel for rel, f in files.items()
                       if crcs.get(rel) is None and f.entry.crc32 is not None)
        now: dict[str, tuple[int, int]] = {}
        if again:
            with ThreadPoolExecutor(min(self.t.settings.max_concurrency, len(again)),
                                    thread_name_prefix="fsblob-recheck") as pool:
                now = dict(zip(again, pool.map(lambda rel: _size_and_crc(files[rel].path), again)))
        for rel, f in sorted(files.items()):
            if f.entry.crc32 is None:  # nothing to compare with
                continue
            crc = crcs.get(rel)
            size, crc = (f.entry.size, crc) if crc is not None else now.get(rel, (None, None))
            if crc is not None and (size, crc) != (f.entry.size, f.entry.crc32):
                raise FileChanged(
                    f"{self.t.backend}: {f.path} changed while it was being uploaded "
                    f"({_state(size, crc)} sent or read after, {_state(f.entry.size, f.entry.crc32)} "
                    "when the directory was read); nothing was committed: the name still "
                    "gives its previous version. Upload it again once nothing is writing to it"
                ) from cause

    def _copy(self, copies: Mapping[str, str], vdir: str) -> None:
        """Server-side copies of unchanged files; a copy that fails (its source
        gone) is left to :meth:`_check`, which sends those files instead."""
        if not copies:
            return
        rels = sorted(copies)
        try:
            self.fs.copy([copies[rel] for rel in rels], [f"{vdir}/{rel}" for rel in rels],
                         on_error="ignore")
        except Exception as exc:
            if not is_not_found(exc):
                raise
            log.info("%s: a source of the copies is gone (%s)", self.t.backend, type(exc).__name__)

    def _check(self, vdir: str, manifest: Manifest, copied: set[str],
               etags: Mapping[str, str] | None = None) -> set[str]:
        """The files of ``manifest`` that one fresh listing of ``vdir`` does not show
        at their size, or (copies) with an MD5 ETag other than theirs, or (files
        sent) with an ETag other than the one their upload checked (``etags``)."""
        listed = {posixpath.relpath(p, vdir): i for p, i in self.t._find(vdir).items()
                  if i.get("type") != "directory" and not p.endswith("/")}
        wrong = set()
        for rel, entry in manifest.files.items():
            info = listed.get(rel)
            if info is None or info.get("size") != entry.size:
                wrong.add(rel)
                continue
            etag = str(info.get("ETag") or info.get("etag") or "").strip('"').lower()
            if rel in copied and self.store.md5_etag and len(etag) == 32 and etag != entry.md5:
                wrong.add(rel)
            elif etags and rel in etags and etag and etag != etags[rel]:
                wrong.add(rel)
        return wrong

    def _write_pointer(self, dest: str, data: bytes) -> None:
        """Point the name at a version in one atomic write. A directory at the name
        (a tree another tool wrote, or fsblob 0.x's plain tree) is moved aside on
        stores where a file cannot replace it, and removed once the pointer is in."""
        self._replace_name(dest, lambda: self.t._write_bytes(dest, data))

    def upload_file(self, src: Path, dest: str, callback: Callback) -> None:
        """Store one file at ``dest`` in one atomic write, replacing what the name held."""
        with open(src, "rb") as f:
            if Pointer.is_pointer(f.read(len(versions.POINTER_MAGIC))):
                raise InvalidPathError(
                    f"{self.t.backend}: {src} starts with fsblob's tree-pointer marker "
                    f"{versions.POINTER_MAGIC!r}, so it would read back as a tree; store it "
                    "inside a directory or compressed")
        self._replace_name(dest, lambda: self.t._write(src, dest, callback))

    def _replace_name(self, dest: str, write: Any) -> None:
        if self.store.atomic_put:
            try:
                write()
            except IsADirectoryError:  # no file beside a directory of its name (memory)
                self.t._remove_tree(dest)
                write()
            return
        if not self.t._is_dir(dest):
            write()
            return
        aside = self.t._remote_temp(dest)
        self.fs.mv(dest, aside, recursive=True)
        try:
            write()
        except BaseException:
            self.fs.mv(aside, dest, recursive=True)
            raise
        self.t._discard(aside)

    # -- downloads ------------------------------------------------------------------------

    def local_name(self, path: str) -> str:
        """The name a download of ``path`` takes locally: a version is named after
        its artifact, not its id."""
        where = versions.parse_version_path(self.root, path)
        if where is not None and not where.rel:
            return where.name
        return posixpath.basename(path)

    def stored_path(self, path: str) -> str:
        """On stores whose paths are local (Local), the stored path a download
        without ``local_dir`` returns: a tree name resolves to its current version."""
        where = versions.parse_version_path(self.root, path)
        if where is not None:
            self.manifest(where.name, where.version)  # a version that exists
            return path
        now = self.current(path)
        if now.kind == "none":
            raise FileNotFoundError(path)
        if now.kind == "tree":
            assert now.manifest is not None
            return versions.version_dir(self.root, now.manifest.name, now.manifest.version)
        return path

    def fetch(self, path: str, dest: Path, callback: Callback) -> None:
        """Bring ``dest`` up to date with ``path``: a name (its current version, or
        its file), a version's URI, or a file of another tool's tree."""
        where = versions.parse_version_path(self.root, path)
        if where is not None:
            try:
                manifest = self.manifest(where.name, where.version)
            except FileNotFoundError:
                raise FileNotFoundError(f"{path}: no such version (removed by gc, or never "
                                        "committed)") from None
            if where.rel:
                self._fetch_member(path, manifest, where, dest, callback)
            else:
                self._fetch_version(manifest, dest, callback)
            return
        recorded = self.t.copies.recorded(dest) or {}
        # a local copy removed or edited is fetched again: no If-None-Match, no 304 first
        intact = self.t.copies.untouched(dest, recorded)
        now = self.current(path, read=True,
                           unless_etag=_etag_of(recorded.get("version")) if intact else "")
        if now.kind == "unchanged":  # a 304: the local copy is fresh if untouched
            if self.t.copies.is_fresh(dest, recorded["version"]):
                log.info("%s is up to date", dest)
                return
            now = self.current(path, read=True)
        if now.kind == "tree":
            assert now.manifest is not None
            self._fetch_version(now.manifest, dest, callback)
        elif now.kind == "directory":
            self.t._fetch_plain_tree(path, dest, callback)
        elif now.kind == "none":
            raise FileNotFoundError(f"{path}: no such artifact")
        else:
            assert now.info is not None
            self.t.fetch_file(path, dest, callback, now.info, now.start)

    def _fetch_member(self, path: str, manifest: Manifest, where: VersionPath, dest: Path,
                      callback: Callback) -> None:
        """One file of a version, verified against its manifest."""
        entry = manifest.files.get(where.rel)
        if entry is None:
            raise FileNotFoundError(f"{path}: version {manifest.version} has no file {where.rel}")
        version = json.dumps({"file": where.rel, "version": manifest.version, "md5": entry.md5})
        if self.t.copies.is_fresh(dest, version):
            return
        tmp = local_copy.temp_sibling(dest)
        try:
            self._fetch_files(manifest, [(where.rel, tmp)], callback)
            self.t._put_in_place(tmp, dest, version)
        finally:
            local_copy.remove(tmp)

    def _fetch_version(self, manifest: Manifest, dest: Path, callback: Callback) -> None:
        """A version's files, each verified against its manifest; identical files are
        fetched once and copied (never linked: editing one must not change another)."""
        version = json.dumps({"tree": manifest.name, "version": manifest.version,
                              "files": {rel: e.key for rel, e in sorted(manifest.files.items())}})
        if self.t.copies.is_fresh(dest, version):
            log.info("%s is up to date with version %s", dest, manifest.version)
            return
        reusable = self._intact_local_files(dest)
        tmp = local_copy.temp_sibling(dest, directory=True)
        try:
            wanted: dict[str, list[tuple[str, Path]]] = {}
            for rel, entry in manifest.files.items():
                target = tmp.joinpath(*rel.split("/"))
                target.parent.mkdir(parents=True, exist_ok=True)
                have = reusable.get(rel)
                if have is not None and have[0] == entry.key:
                    _link_or_copy(have[1], target)  # unchanged since the last download
                else:
                    wanted.setdefault(entry.key, []).append((rel, target))
            self._fetch_files(manifest, [found[0] for found in wanted.values()], callback)
            for found in wanted.values():
                rel, first = found[0]
                entry = manifest.files[rel]
                for _, extra in found[1:]:
                    shutil.copyfile(first, extra)
                for _, target in found:
                    if entry.executable:  # x bits within the umask, as cp
                        target.chmod(target.stat().st_mode | (0o111 & ~local_copy.umask()))
            self.t._put_in_place(tmp, dest, version)
        finally:
            local_copy.remove(tmp)

    def _fetch_files(self, manifest: Manifest, files: list[tuple[str, Path]],
                     callback: Callback) -> None:
        """Fetch files of a version, ``max_concurrency`` at a time, each checked against
        its manifest as its bytes stream past (its CRC32, else its MD5): no second
        read. A single file may go in parallel ranges; many go one stream each."""
        vdir = versions.version_dir(self.root, manifest.name, manifest.version)
        callback.set_size(sum(manifest.files[rel].size for rel, _ in files))
        guarded = _Locked(callback)

        def one(rel: str, target: Path) -> None:
            entry, path = manifest.files[rel], f"{vdir}/{rel}"
            if self.store.local_paths:
                self.t._confine_local(path)  # a symlink planted in the store
            meta = Meta(entry.size, crc32=entry.crc32, pinned=True,  # a version never changes
                        md5=entry.md5 if entry.crc32 is None else None)
            try:
                self.t._download(path, target, meta, _Within(guarded), ranged=len(files) == 1)
            except FileNotFoundError:
                raise BlobIntegrityError(
                    f"{self.t.backend}: {rel} of version {manifest.version} of {manifest.name} "
                    "vanished while it was read (removed by gc after a newer version "
                    "replaced it, or lost)") from None
            except BlobIntegrityError as exc:
                raise BlobIntegrityError(
                    f"{self.t.backend}: {rel} of version {manifest.version} of {manifest.name} "
                    f"does not match its manifest ({exc})") from None

        with ThreadPoolExecutor(self.t.settings.max_concurrency,
                                thread_name_prefix="fsblob-tree") as pool:
            jobs = [pool.submit(contextvars.copy_context().run, one, rel, target)
                    for rel, target in files]
            try:
                for job in jobs:
                    job.result()
            except BaseException:
                for job in jobs:
                    job.cancel()
                raise

    def _intact_local_files(self, dest: Path) -> dict[str, tuple[str, Path]]:
        """Files of an earlier download at ``dest`` still as fetched:
        relative path -> (content key, path)."""
        previous = self.t.copies.recorded(dest)
        if not previous or not isinstance(previous.get("copy"), dict):
            return {}
        try:
            keys = json.loads(previous["version"])["files"]
        except (ValueError, KeyError, TypeError):
            return {}
        intact = {}
        for rel, key in keys.items():
            path = dest.joinpath(*rel.split("/"))
            if previous["copy"].get(rel) == local_copy.snapshot(path):
                intact[rel] = (key, path)
        return intact

    # -- the rest of a name's life ----------------------------------------------------------

    def exists(self, path: str) -> bool:
        """Whether a name, a version (its manifest) or a stored file is at ``path``."""
        where = versions.parse_version_path(self.root, path)
        if where is not None and not where.rel:
            return self.t._exists(versions.manifest_path(self.root, where.name, where.version))
        return self.t._exists(path)

    def names(self) -> list[str]:
        """The paths of the artifacts directly under the root, listed afresh."""
        self.fs.invalidate_cache(self.root)
        try:
            listed = self.fs.ls(self.root, detail=False)
        except FileNotFoundError:
            listed = []
        found = set()
        for entry in listed:
            base = posixpath.basename(entry.rstrip("/"))
            if base and not versions.is_reserved(base) and not (
                    base.startswith(".") and base.endswith(versions.PART_SUFFIX)):
                found.add(f"{self.root.rstrip('/')}/{base}")
        return sorted(found)

    def delete(self, path: str) -> None:
        """Delete a name (its pointer or file: one step, so no reader sees part of
        it) or a stored file; a tree's versions stay until :meth:`gc`."""
        if versions.parse_version_path(self.root, path) is not None:
            raise InvalidPathError(
                f"{self.t.backend}: {self.store.uri(path)} is a stored version, which never "
                "changes; delete its name instead (gc then removes the versions)")
        now = self.current(path, strict=False)
        if now.kind == "none":
            raise FileNotFoundError(path)
        if now.kind != "directory":
            self.fs.rm_file(path)
            return
        self.fs.rm(path, recursive=True)
        name = versions.name_of(self.root, path)
        record = versions.legacy_record_path(self.root, name) if name is not None else None
        if record is not None and self.t._exists(record):  # fsblob 0.x's tree: its record too
            self._rm_quietly([record])

    # -- garbage --------------------------------------------------------------------------

    def gc(self, older_than: float, keep: int) -> list[str]:
        """Remove, below ``<root>/.fsblob/`` only: versions no pointer names, except
        the ``keep`` newest superseded ones of a name that still points to a tree and
        any superseded less than ``older_than`` seconds ago; versions never committed
        and temporaries, older than that; fsblob 0.x's records and objects; and
        multipart uploads under the root begun longer ago than that. Listings are
        read afresh. Returns the URIs removed."""
        now = time.time()
        self.fs.invalidate_cache()  # never trust a listing cached by an earlier call
        removed: list[str] = []
        for name in self._tree_names():
            removed += self._gc_name(name, older_than, keep, now)
        removed += self._gc_aged(versions.tmp_dir(self.root), older_than, now)
        removed += self._gc_legacy(older_than, now)
        if self.store.list_uploads is not None and self.store.abort_upload is not None:
            for upload in self.store.list_uploads(self.fs, self.root):
                if now - upload.started > older_than:
                    self.store.abort_upload(self.fs, upload)
                    removed.append(f"{self.store.uri(upload.path)} (multipart upload {upload.id})")
        return removed

    def _tree_names(self) -> list[str]:
        try:
            listed = self.fs.ls(versions.trees_dir(self.root), detail=False)
        except FileNotFoundError:
            return []
        return sorted(posixpath.basename(p.rstrip("/")) for p in listed)

    def _gc_name(self, name: str, older_than: float, keep: int, now: float) -> list[str]:
        ndir = versions.name_dir(self.root, name)
        try:
            listed = self.fs.ls(ndir, detail=False)
        except FileNotFoundError:
            return []
        bases = {posixpath.basename(p.rstrip("/")) for p in listed}
        ids = sorted(b for b in bases if versions.is_version(b))
        ids = sorted(set(ids) | {b[:-5] for b in bases if b.endswith(".json")
                                 and versions.is_version(b[:-5])})
        committed = [v for v in ids if f"{v}.json" in bases]
        pointed = self._pointed(name)
        if pointed is None:
            return []  # a damaged pointer: judge nothing of this name until it is repaired
        superseded = [v for v in committed if v != pointed]
        kept = set(superseded[-keep:]) if keep and pointed else set()
        doomed = []
        for i, v in enumerate(ids):
            if v == pointed or v in kept:
                continue
            newer = ids[i + 1:]
            since = versions.version_time(newer[0]) if newer else versions.version_time(v)
            if v not in committed:
                since = versions.version_time(v)  # an upload that never committed
            if now - since > older_than:
                doomed.append(v)
        if not doomed:
            return []
        if self._pointed(name) != pointed:  # moved meanwhile: judge again next time
            return []
        removed = []
        for v in doomed:  # the manifest first: no new reader starts on a half-removed version
            manifest_path = versions.manifest_path(self.root, name, v)
            saved = self._read_quietly(manifest_path)  # to put back (below)
            self._rm_quietly([manifest_path])
            # An upload that committed v may have pointed the name at it since the look
            # above. Either that pointer is seen now (v is put back and kept), or it
            # comes after the manifest went, and its upload, which looks for the manifest
            # once its pointer is written, uploads again (upload_tree).
            named = self._pointer_names(name)
            if named in (v, None):  # None: a pointer gone unreadable meanwhile; keep all
                if saved is not None:
                    self.t._write_bytes(manifest_path, saved)
                log.warning("gc: %s %s while gc removed version %s; kept it",
                            self.store.uri(f"{self.root.rstrip('/')}/{name}"),
                            "was pointed at it" if named else "has an unreadable pointer", v)
                continue
            if self._rm_quietly([versions.version_dir(self.root, name, v)], recursive=True):
                removed.append(self.store.uri(versions.version_dir(self.root, name, v)))
        return removed

    def _read_quietly(self, path: str) -> bytes | None:
        """An object's bytes; ``None`` if it is gone."""
        try:
            return self.t._cat(path)
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise

    def _pointer_names(self, name: str) -> str | None:
        """The version the name's pointer names, read afresh without its manifest
        (which gc may just have removed); ``""``: no pointer; ``None``: unreadable."""
        path = f"{self.root.rstrip('/')}/{name}"
        self.fs.invalidate_cache(path)
        try:
            data = self._read_quietly(path)
        except (IsADirectoryError, NotADirectoryError):  # a plain tree at the name
            data = None
        if not data or not Pointer.is_pointer(data):
            return ""
        try:
            return Pointer.parse(data, self.store.uri(path)).version
        except InvalidPathError:
            return None

    def _pointed(self, name: str) -> str | None:
        """The version the name points to; ``""`` when it holds no tree; ``None``
        when its pointer is damaged."""
        now = self.current(f"{self.root.rstrip('/')}/{name}", strict=False)
        if now.kind == "damaged":
            log.warning("gc: %s; keeping every version of %s", now.problem, name)
            return None
        return now.manifest.version if now.manifest is not None else ""

    def _gc_aged(self, folder: str, older_than: float, now: float) -> list[str]:
        """Entries of ``folder`` last modified more than ``older_than`` seconds ago."""
        try:
            listed = self.fs.ls(folder, detail=True)
        except FileNotFoundError:
            return []
        doomed = [i["name"].rstrip("/") for i in listed if now - _age(i, now) > older_than]
        return [self.store.uri(p) for p in doomed if self._rm_quietly([p], recursive=True)]

    def _gc_legacy(self, older_than: float, now: float) -> list[str]:
        """fsblob 0.x kept objects and commit records; readers now read the plain
        tree of such a name, so both are garbage once old enough."""
        control = versions.control_dir(self.root)
        doomed = [p for folder in (f"{control}/objects", f"{control}/commits")
                  for p, info in self.t._find(folder).items() if now - _age(info, now) > older_than]
        self._rm_quietly(doomed)
        return [self.store.uri(p) for p in doomed]

    def _rm_quietly(self, doomed: list[str], *, recursive: bool = False) -> bool:
        """Remove ``doomed``; gone already is fine. A folder a writer adds to while
        it is removed (an upload still sending into a version gc judged abandoned)
        is left for the next gc: False."""
        whole = True
        for path in doomed:
            try:
                self.fs.rm(path, recursive=recursive)
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    log.warning("gc: %s gained files while it was removed (a writer is "
                                "still at work there); left for the next gc", self.store.uri(path))
                    whole = False
                elif not is_not_found(exc):
                    raise
            except Exception as exc:
                if not is_not_found(exc):
                    raise
        return whole


def _etag_of(token: Any) -> str:
    """The ETag in a file's freshness record (:meth:`Meta.token`), else ``""``."""
    try:
        recorded = json.loads(token)
    except (TypeError, ValueError):
        return ""
    etag = recorded.get("etag") if isinstance(recorded, dict) else None
    return etag if isinstance(etag, str) else ""


class _Locked(Callback):
    """Passes progress on to ``target`` one thread at a time (tqdm is not thread-safe)."""

    def __init__(self, target: Callback) -> None:
        super().__init__()
        self._target, self._lock = target, Lock()

    def relative_update(self, inc: int | None = 1) -> None:
        with self._lock:
            self._target.relative_update(inc)


class _Within(Callback):
    """One file's progress inside a larger total: bytes pass on, its size does not."""

    def __init__(self, target: Callback) -> None:
        super().__init__()
        self._target = target

    def relative_update(self, inc: int | None = 1) -> None:
        self._target.relative_update(inc)


def _link_or_copy(src: Path, dest: Path) -> None:
    """Reuse an earlier download's file: a hard link when it has no other name
    (the earlier copy is about to be replaced), else a copy."""
    try:
        if src.stat().st_nlink == 1:
            os.link(src, dest)
            return
    except OSError:
        pass
    shutil.copyfile(src, dest)
    shutil.copymode(src, dest)


def _age(info: Mapping[str, Any], now: float) -> float:
    """When an entry was last modified (epoch seconds); ``now`` when unknown."""
    for key in ("mtime", "LastModified", "modificationTime", "last_modified", "created"):
        value = info.get(key)
        if value is None:
            continue
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
        number = float(value)
        return number / 1000 if key == "modificationTime" else number
    return now


def _size_and_crc(path: Path) -> tuple[int, int]:
    """A local file's size and CRC32 now ((-1, 0): gone, or shrinking as it is read)."""
    try:
        digest = integrity.digest_file(str(path), md5=False)
    except (FileNotFoundError, RangeMismatch):
        return -1, 0
    return digest.size, digest.crc32


def _state(size: int | None, crc: int | None) -> str:
    return "gone or shrinking" if size == -1 else f"{size} bytes, CRC32 {crc or 0:08x}"
