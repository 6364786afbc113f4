"""Moving bytes between local files and one store: verified, and put into place whole.

:class:`Transfer` is handed the :class:`~fsblob.store.Store`, a way to get its
filesystem and the host's :class:`~fsblob.local_copy.LocalCopies`; it never sees
the manager. Each public method is one *attempt*: the manager runs it under its
retry policy, and an attempt that fails part-way leaves nothing a reader could
take for a version (see :mod:`fsblob.versions` for directory trees).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import posixpath
import secrets as _random
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import fsspec
from fsspec.callbacks import DEFAULT_CALLBACK, Callback

from fsblob import chunks, integrity, local_copy, paths, versions
from fsblob.errors import BlobIntegrityError, PathOutsideRootError
from fsblob.retry import is_not_found
from fsblob.store import Store

log = logging.getLogger("fsblob")

#: Files of a directory up to this size are sent together, in one call.
BATCH_FILE_SIZE = 8 * 2**20

#: Remote temporaries older than this (seconds) belong to a dead upload.
STALE_TEMPORARY = 3600.0

#: Info fields that change when an object's content changes, across filesystems.
_VERSION_FIELDS = ("ETag", "etag", "md5", "LastModified", "last_modified", "mtime",
                   "modificationTime", "created", "generation", "ino", "checksum")


class Transfer:
    """Uploads, downloads and the bookkeeping of one store.

    Args:
        store: where artifacts live.
        get_fs: returns the store's filesystem (opened on first use).
        copies: the host's locks and freshness records of local copies.
        backend: the backend's name, for messages.
        settings: how large files split into parallel ranges and parts.
    """

    def __init__(self, store: Store, get_fs: Callable[[], fsspec.AbstractFileSystem],
                 copies: local_copy.LocalCopies, backend: str,
                 settings: chunks.TransferSettings | None = None) -> None:
        self.store, self._get_fs, self.copies, self.backend = store, get_fs, copies, backend
        self.settings = settings or chunks.TransferSettings()
        self.root = store.root

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return self._get_fs()

    # -- uploads ------------------------------------------------------------------------

    def upload_file(self, src: Path, dest: str, callback: Callback) -> None:
        """Store one file at ``dest``, replacing a file or tree of that name."""
        name = versions.name_of(self.root, dest)
        self.sweep_temporaries(dest)  # a killed upload's, once old enough to be dead
        if self.store.atomic_put or not self._is_dir(dest):
            try:
                self._write(src, dest, callback)
            except IsADirectoryError:  # no file beside a directory of its name (memory)
                self._remove_tree(dest, self._take_record(name) if name is not None else None)
                self._write(src, dest, callback)
                return
            old = self._take_record(name) if name is not None else None
            if old is not None:  # a tree had the name: this file replaces it
                self._remove_tree(dest, old)
            return
        # A rename store cannot put a file where a directory is: move the tree aside,
        # put the file in, and put the tree back if that fails.
        tmp = self._remote_temp(dest)
        aside = self._remote_temp(dest)
        try:
            self._write(src, tmp, callback, in_place=True)
            if name is not None:
                self._take_record(name)
            self.fs.mv(dest, aside, recursive=True)
            try:
                self._replace(tmp, dest)
            except BaseException:
                self.fs.mv(aside, dest, recursive=True)
                raise
        finally:
            self._discard(tmp)
            self._discard(aside)

    def upload_tree(self, files: Mapping[str, versions.LocalFile], dest: str,
                    callback: Callback) -> None:
        """Store a directory as one new version of ``dest`` (see :mod:`fsblob.versions`):
        objects first, then the record (the commit), then the plain tree."""
        name = versions.name_of(self.root, dest)
        assert name is not None
        current = self._read_record(name)
        known = {e.key for e in current.files.values()} if current else set()
        new = {f.entry.key: f for f in files.values() if f.entry.key not in known}
        callback.set_size(sum(f.entry.size for f in new.values()))
        self._store_objects(new, callback)
        record = versions.Record(versions.new_version(), versions.stamp(),
                                 {rel: f.entry for rel, f in files.items()})
        self._write_bytes(versions.record_path(self.root, name), record.to_json())
        log.info("committed version %s of %s (%d files, %d new objects)", record.version,
                 self.store.uri(dest), len(files), len(new))
        self._publish(dest, record, files, current)

    def _store_objects(self, new: Mapping[str, versions.LocalFile], callback: Callback) -> None:
        """Write the objects a version needs and the store lacks, each whole."""
        small = [f for f in new.values() if f.entry.size <= BATCH_FILE_SIZE]
        if small and self.store.atomic_put:  # one call: asynchronous filesystems overlap them
            self.fs.put([str(f.path) for f in small],
                        [versions.object_path(self.root, f.entry.key) for f in small],
                        callback=_Bytes(callback, [f.entry.size for f in small]))
            small_set = {f.entry.key for f in small}
        else:
            small_set = set()
        for key, f in new.items():
            if key not in small_set:
                self._write(f.path, versions.object_path(self.root, key), _Within(callback))

    def _publish(self, dest: str, record: versions.Record,
                 files: Mapping[str, versions.LocalFile], previous: versions.Record | None) -> None:
        """Make the plain tree ``dest/<rel>`` hold ``record``'s files, for other tools."""
        name = versions.name_of(self.root, dest)
        assert name is not None
        if self._is_file(dest):
            self.fs.rm_file(dest)  # the name held a file before: the tree takes its place
        plain = self._plain_files(dest)
        touched = [rel for rel, f in files.items()  # what is not there already
                   if not (previous and previous.files.get(rel) == f.entry
                           and plain.get(rel) == f.entry.size)]
        self._place_many([(files[rel].entry, f"{dest}/{rel}", files[rel].path) for rel in touched])
        stale = [rel for rel in plain if rel not in files]
        self._rm_many([f"{dest}/{rel}" for rel in stale])
        latest = self._read_record(name)
        if latest is not None and latest.version != record.version:
            # Another upload committed meanwhile: what this one wrote or removed
            # goes back to that version, whichever publisher finishes last.
            log.info("%s was replaced during publishing; restoring version %s",
                     self.store.uri(dest), latest.version)
            self._place_many([(latest.files[rel], f"{dest}/{rel}", None)
                              for rel in touched + stale if rel in latest.files])
            self._rm_many([f"{dest}/{rel}" for rel in touched if rel not in latest.files])

    def _place_many(self, items: list[tuple[versions.Entry, str, Path | None]]) -> None:
        """Put copies of objects at plain paths, each atomically: on object stores
        small ones are sent again from the local file, in one batched call (one PUT
        each, overlapped), large ones copied server-side, in one call."""
        if not self.store.atomic_put:
            for entry, plain, local in items:
                self._place(entry.key, plain, local)
            return
        small = [(local, plain) for entry, plain, local in items
                 if local is not None and entry.size <= BATCH_FILE_SIZE]
        if small:
            self.fs.put([str(local) for local, _ in small], [plain for _, plain in small])
        sent = {plain for _, plain in small}
        large = [(versions.object_path(self.root, entry.key), plain)
                 for entry, plain, _ in items if plain not in sent]
        if large:
            self.fs.copy([obj for obj, _ in large], [plain for _, plain in large])

    def _place(self, key: str, plain: str, local: Path | None) -> None:
        """Put a copy of object ``key`` at ``plain``, atomically."""
        obj = versions.object_path(self.root, key)
        if self.store.protocol in ("file", "local"):
            os.makedirs(posixpath.dirname(plain), exist_ok=True)
            tmp = self._remote_temp(plain)
            try:
                os.link(obj, tmp)  # the same bytes, no second copy on disk
            except OSError:  # a filesystem without hard links
                local_copy.copy_file(Path(obj), Path(tmp), DEFAULT_CALLBACK)
            os.replace(tmp, plain)
            Path(tmp).unlink(missing_ok=True)  # rename() between links to one file does nothing
        elif self.store.atomic_put:
            self.fs.copy(obj, plain)  # server-side
        elif local is not None:
            self._write(local, plain, DEFAULT_CALLBACK)
        else:  # no server-side copy and no local file: through a local temporary
            with tempfile.TemporaryDirectory(prefix="fsblob-") as scratch:
                copy = Path(scratch) / "object"
                self._get_file(obj, copy, DEFAULT_CALLBACK)
                self._write(copy, plain, DEFAULT_CALLBACK)

    # -- downloads ----------------------------------------------------------------------

    def fetch(self, path: str, dest: Path, callback: Callback) -> None:
        """Bring ``dest`` up to date with remote ``path`` (the caller holds its lock)."""
        self.fs.invalidate_cache(path)
        try:
            meta: integrity.Meta | None = self._meta(path)
        except FileNotFoundError:
            meta = None
        if meta is None or meta.is_dir:
            # A tree, or a tree being committed where a file was: its record decides.
            name = versions.name_of(self.root, path)
            record = self._read_record(name) if name is not None else None
            if record is not None:
                self._fetch_version(path, record, dest, callback)
            elif meta is None:
                raise FileNotFoundError(f"{path}: no such artifact")
            else:
                self._fetch_plain_tree(path, dest, callback)
            return
        version = meta.token()
        if self.copies.is_fresh(dest, version):
            log.info("%s is up to date", dest)
            return
        tmp = local_copy.temp_sibling(dest)
        try:
            self._download(path, tmp, meta, callback)
            self._put_in_place(tmp, dest, version)
        except BaseException:
            self._clean_strays(tmp)
            raise
        finally:
            local_copy.remove(tmp)

    def _fetch_version(self, path: str, record: versions.Record, dest: Path,
                       callback: Callback) -> None:
        """A recorded tree: its objects, each verified against the record."""
        version = record.digest()
        if self.copies.is_fresh(dest, version):
            log.info("%s is up to date with version %s", dest, record.version)
            return
        reusable = self._intact_local_files(dest)
        tmp = local_copy.temp_sibling(dest, directory=True)
        try:
            wanted: dict[str, list[Path]] = {}
            for rel, entry in record.files.items():
                target = tmp.joinpath(*rel.split("/"))
                target.parent.mkdir(parents=True, exist_ok=True)
                have = reusable.get(rel)
                if have is not None and have[0] == entry.key:
                    os.link(have[1], target)  # unchanged since the last download
                else:
                    wanted.setdefault(entry.key, []).append(target)
            objects = {versions.object_path(self.root, key): targets[0]
                       for key, targets in wanted.items()}
            try:
                self._get_tree(objects, callback)
            except FileNotFoundError:
                raise BlobIntegrityError(f"{self.backend}: version {record.version} of "
                               f"{self.store.uri(path)} lost an object; a newer version replaced it") from None
            for key, targets in wanted.items():
                self._verify_md5(targets[0], key.split(".")[0], record, path)
                if key.endswith(".x"):  # executable: x bits within the umask, as cp
                    targets[0].chmod(targets[0].stat().st_mode | (0o111 & ~local_copy.umask()))
                for extra in targets[1:]:
                    os.link(targets[0], extra)
            for rel, entry in record.files.items():
                got = tmp.joinpath(*rel.split("/")).stat().st_size
                if got != entry.size:
                    raise BlobIntegrityError(f"{self.backend}: {rel} of {self.store.uri(path)} has "
                                   f"{got} bytes, its record says {entry.size}")
            self._put_in_place(tmp, dest, version)
        finally:
            local_copy.remove(tmp)

    def _fetch_plain_tree(self, path: str, dest: Path, callback: Callback) -> None:
        """A tree without a record: its plain files, unchanged from first to last look."""
        files = self._plain_tree(path)
        if not files:
            raise FileNotFoundError(f"{path} is an empty directory")
        version = _tree_version(path, files)
        if self.copies.is_fresh(dest, version):
            log.info("%s is up to date", dest)
            return
        tmp = local_copy.temp_sibling(dest, directory=True)
        try:
            targets = {}
            for p in files:  # a key with '..' below the directory is refused here
                inside = paths.require_under(path, p, what="a listed file", where=path)
                targets[p] = tmp.joinpath(*inside[len(path):].strip("/").split("/"))
                targets[p].parent.mkdir(parents=True, exist_ok=True)
            self._get_tree(targets, callback)
            for p, target in targets.items():
                self._verify(target, files[p])
            if _tree_version(path, self._plain_tree(path)) != version:
                raise BlobIntegrityError(f"{self.backend}: {self.store.uri(path)} changed while it was "
                               "downloaded (it has no commit record to read one version by)")
            self._put_in_place(tmp, dest, version)
        finally:
            local_copy.remove(tmp)

    def _put_in_place(self, tmp: Path, dest: Path, version: str) -> None:
        self.copies.forget(dest)
        local_copy.replace(tmp, dest)
        self.copies.record(dest, version)

    def _intact_local_files(self, dest: Path) -> dict[str, tuple[str, Path]]:
        """Files of an earlier recorded download at ``dest`` still as fetched:
        relative path -> (object key, path)."""
        previous = self.copies.recorded(dest)
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

    @staticmethod
    def _clean_strays(tmp: Path) -> None:
        """After a failed download: the client's own temporaries named after ours
        (oss2's resumable download). A scan of the folder, so only on failure."""
        for stray in tmp.parent.glob(glob.escape(tmp.name) + "?*"):
            local_copy.remove(stray)

    # -- the rest of a store's life -----------------------------------------------------

    def exists(self, path: str) -> bool:
        """Whether an artifact (recorded or plain) is at ``path``."""
        if self._exists(path):
            return True
        name = versions.name_of(self.root, path)  # committed, not yet published
        return name is not None and self._exists(versions.record_path(self.root, name))

    def names(self) -> list[str]:
        """The paths of the artifacts directly under the root."""
        found = set()
        try:
            listed = self.fs.ls(self.root, detail=False)
        except FileNotFoundError:
            listed = []
        for entry in listed:
            base = posixpath.basename(entry.rstrip("/"))
            if base and base != versions.CONTROL and not base.endswith(local_copy.PART_SUFFIX):
                found.add(f"{self.root.rstrip('/')}/{base}")
        for name in self._record_names():
            found.add(f"{self.root.rstrip('/')}/{name}")
        return sorted(found)

    def delete(self, path: str) -> None:
        """Delete an artifact: its record first (so no reader starts on it), then its files."""
        name = versions.name_of(self.root, path)
        had_record = name is not None and self._take_record(name) is not None
        if self._exists(path):
            self.fs.rm(path, recursive=True)
        elif not had_record:
            raise FileNotFoundError(path)

    def gc(self, older_than: float) -> list[str]:
        """Remove objects no record names and upload temporaries, both older than
        ``older_than`` seconds; return their URIs."""
        referenced = set()
        for name in self._record_names():
            record = self._read_record(name)
            if record is not None:
                referenced |= {e.key for e in record.files.values()}
        doomed = []
        now = time.time()
        for path, info in self._find(versions.objects_dir(self.root)).items():
            if posixpath.basename(path) not in referenced and now - _age(info, now) > older_than:
                doomed.append(path)
        for path, info in self._find(self.root, withdirs=True).items():
            if path.rstrip("/").endswith(local_copy.PART_SUFFIX) and now - _age(info, now) > older_than:
                doomed.append(path.rstrip("/"))
        self._rm_many(doomed)
        return [self.store.uri(p) for p in doomed]

    def sweep_temporaries(self, dest: str) -> None:
        """Remove dead uploads' temporaries next to ``dest`` (rename stores only)."""
        if self.store.atomic_put:
            return
        parent, name = posixpath.split(dest)
        now = time.time()
        try:
            listed = self.fs.ls(parent, detail=True)
        except FileNotFoundError:
            return
        for info in listed:
            base = posixpath.basename(info["name"].rstrip("/"))
            if (base.startswith(f".{name[:100]}.") and base.endswith(local_copy.PART_SUFFIX)
                    and now - _age(info, now) > STALE_TEMPORARY):
                self._discard(info["name"])

    # -- records --------------------------------------------------------------------------

    def _read_record(self, name: str) -> versions.Record | None:
        path = versions.record_path(self.root, name)
        try:
            data = self._cat(path)
        except Exception as exc:
            if is_not_found(exc) or isinstance(exc, (IsADirectoryError, NotADirectoryError)):
                return None
            raise
        return versions.Record.from_json(data, self.store.uri(path))

    def _cat(self, path: str) -> bytes:
        """A small file's bytes in one read: ranged reads (fsspec's WebHDFS file)
        could mix a file replaced between two of them."""
        if self.store.get_file is None:  # get_options: s3fs's one GET, not HEAD + LIST + GET
            return bytes(self.fs.cat_file(path, **self.store.get_options))
        with tempfile.TemporaryDirectory(prefix="fsblob-") as scratch:
            copy = Path(scratch) / "small"
            self.store.get_file(self.fs, path, str(copy), DEFAULT_CALLBACK)
            return copy.read_bytes()

    def _take_record(self, name: str) -> versions.Record | None:
        """Delete the record of ``name`` and return it (``None``: there was none)."""
        record = self._read_record(name)
        if record is not None:
            try:
                self.fs.rm_file(versions.record_path(self.root, name))
            except Exception as exc:
                if not is_not_found(exc):
                    raise
        return record

    def _record_names(self) -> list[str]:
        try:
            listed = self.fs.ls(versions.records_dir(self.root), detail=False)
        except FileNotFoundError:
            return []
        return sorted(posixpath.basename(p.rstrip("/")) for p in listed
                      if not p.endswith(local_copy.PART_SUFFIX))

    # -- one file -----------------------------------------------------------------------

    def _write(self, src: Path, dest: str, callback: Callback, *, in_place: bool = False) -> None:
        """Write ``src`` to ``dest`` whole: one PUT on object stores, elsewhere a
        temporary renamed into place (``in_place``: ``dest`` is a temporary itself)."""
        size = src.stat().st_size
        if self.store.atomic_put:  # a PUT that succeeded stored the whole object
            self._put(src, dest, callback)
            return
        if in_place:
            self.fs.makedirs(posixpath.dirname(dest), exist_ok=True)
            self._put(src, dest, callback)
            self._check_size(dest, size)
            return
        self.fs.makedirs(posixpath.dirname(dest), exist_ok=True)
        tmp = self._remote_temp(dest)
        try:
            self._put(src, tmp, callback)
            self._check_size(tmp, size)
            self._replace(tmp, dest)
        finally:
            self._discard(tmp)

    def _write_bytes(self, dest: str, data: bytes) -> None:
        """Write a small file whole (a record)."""
        if self.store.atomic_put:
            self.fs.pipe_file(dest, data)
            return
        self.fs.makedirs(posixpath.dirname(dest), exist_ok=True)
        tmp = self._remote_temp(dest)
        try:
            self.fs.pipe_file(tmp, data)
            self._check_size(tmp, len(data))
            self._replace(tmp, dest)
        finally:
            self._discard(tmp)

    def _replace(self, tmp: str, dest: str) -> None:
        """Rename a temporary over ``dest`` in one step, where the store can."""
        if self.store.local_paths:
            os.replace(tmp, dest)  # atomic; never moves into a directory named like dest
        elif self.store.replace is not None:
            self.store.replace(self.fs, tmp, dest)
        else:  # no atomic overwrite: move the old file aside, and back if the rename fails
            aside = None
            if self._exists(dest):
                aside = self._remote_temp(dest)
                self.fs.mv(dest, aside)
            try:
                self.fs.mv(tmp, dest)
                if self._exists(tmp):
                    raise BlobIntegrityError(f"{self.backend}: the store did not rename "
                                   f"{self.store.uri(tmp)} to {self.store.uri(dest)}")
            except BaseException:
                if aside is not None and not self._exists(dest):
                    self.fs.mv(aside, dest)
                    aside = None
                raise
            finally:
                if aside is not None:
                    self._discard(aside)

    def _put(self, src: Path, rpath: str, callback: Callback) -> None:
        """Upload one file with the backend's byte path (which stores fsblob's
        checksum and verifies the upload), else the filesystem's ``put_file``."""
        if self.store.upload is not None:
            try:
                self.store.upload(self.fs, str(src), rpath, callback, self.settings)
            except chunks.RangeMismatch as exc:  # the public type, from the public module
                raise BlobIntegrityError(f"{self.backend}: {exc}") from None
        elif self.store.put_file is not None:
            self.store.put_file(self.fs, str(src), rpath, callback)
        else:
            self.fs.put_file(str(src), rpath, callback=callback)

    def _get_file(self, rpath: str, lpath: Path, callback: Callback,
                  size: int | None = None) -> bool:
        """Fetch one file (its checks are the caller's: this returns ``False``, no
        store checksum verified it): in parallel ranges from ``multipart_threshold``
        on where the store gains from them, else in one stream."""
        if self.store.local_paths:
            local_copy.copy_file(Path(rpath), lpath, callback)
        elif size is not None and self.settings.splits(size) and self.store.ranged_reads:
            meta = integrity.Meta(size)
            chunks.fetch(self._reader(rpath, meta), str(lpath), self._ranges(meta, integrity.Check()),
                         integrity.Check().hasher, self.settings, callback, self.store.uri(rpath))
        elif self.store.get_file is None:
            # The client opens with "wb": a placeholder truncated and rewritten is
            # flushed to disk at close on ext4, so it creates the file itself.
            lpath.unlink(missing_ok=True)
            self.fs.get_file(rpath, str(lpath), callback=callback, **self.store.get_options)
        else:
            self.store.get_file(self.fs, rpath, str(lpath), callback)
        return False

    def _meta(self, path: str) -> integrity.Meta:
        """The backend's stat of one object (or directory)."""
        if self.store.meta is not None:
            return self.store.meta(self.fs, path)
        info = dict(self.store.stat(self.fs, path) if self.store.stat else self.fs.info(path))
        if self.store.etag is not None and info.get("type") != "directory":
            info["etag"] = self.store.etag(self.fs, path)
        return integrity.from_info(info, md5_etag=self.store.md5_etag)

    def _download(self, path: str, tmp: Path, meta: integrity.Meta, callback: Callback) -> None:
        """Fetch one object into ``tmp``, checked as it streams past (see
        :mod:`fsblob.integrity`): one version of it, or raise."""
        uri = self.store.uri(path)
        size = meta.size or 0
        part = self.settings.part_size(size)
        check = integrity.choose(meta, fsblob_part=max(part, 5 * 2**20))
        ranges = [(0, size)]
        if self.store.ranged_reads and self.settings.splits(size) and check.ranged:
            ranges = self._ranges(meta, check)
        tmp.touch()
        try:
            what = self._read_checked(path, tmp, meta, check, ranges, callback)
        except chunks.RangeMismatch as exc:  # the public type, from the public module
            raise BlobIntegrityError(f"{self.backend}: {exc}") from None
        got = tmp.stat().st_size
        if self.store.local_paths:  # the stored file's mode, less the umask, as cp
            tmp.chmod(os.stat(path).st_mode & 0o777 & ~local_copy.umask())
        if check.verifies and what == check.name:
            log.info("%s: %d bytes in %d range(s), verified by %s", uri, got, len(ranges), what)
        else:
            log.info("%s: %d bytes in %d range(s), not verified: %s (the store keeps no "
                     "checksum of it)", uri, got, len(ranges), what)

    def _read_checked(self, path: str, tmp: Path, meta: integrity.Meta, check: integrity.Check,
                      ranges: list[tuple[int, int]], callback: Callback) -> str:
        uri = self.store.uri(path)
        hashes = chunks.fetch(self._reader(path, meta), str(tmp), ranges, check.hasher,
                              self.settings, callback, uri)
        if not meta.pinned:  # no If-Match: the object must be the same one at the end
            self.fs.invalidate_cache(path)
            try:
                now = self._meta(path)
            except FileNotFoundError:
                raise chunks.ObjectChanged(f"{uri} was removed during the download") from None
            if now.token() != meta.token():
                raise chunks.ObjectChanged(f"{uri} changed during the download")
        got = tmp.stat().st_size
        if meta.size is not None and got != meta.size:
            raise chunks.RangeMismatch(f"received {got} bytes of {uri}, expected {meta.size}")
        return check.verify(hashes, uri)

    def _ranges(self, meta: integrity.Meta, check: integrity.Check) -> list[tuple[int, int]]:
        """Ranges for a parallel download: about one per connection with the backend's
        streamed reader; ``multipart_chunksize`` each through ``cat_file``, which
        holds a whole range in memory."""
        size = meta.size or 0
        part = (self.settings.part_size(size) if self.store.read_range is not None
                else self.settings.multipart_chunksize)
        return check.ranges(size, part)

    def _reader(self, path: str, meta: integrity.Meta) -> chunks.Reader:
        """How to read one range of ``path``: the backend's byte path, else fsspec's."""
        fs = self.fs
        if self.store.read_range is not None:
            read_range = self.store.read_range
            return lambda start, end, feed: read_range(fs, path, meta, start, end, feed)

        def read(start: int, end: int, feed: Callable[[bytes], None]) -> None:
            if start == 0 and end == meta.size:  # one stream
                with fs.open(path, "rb") as f:
                    while piece := f.read(chunks.PIECE):
                        feed(piece)
            elif getattr(fs, "async_impl", False):
                from fsspec.asyn import sync

                feed(sync(fs.loop, fs._cat_file, path, start=start, end=end))
            else:
                feed(fs.cat_file(path, start=start, end=end))

        return read

    def _get_tree(self, targets: Mapping[str, Path], callback: Callback) -> None:
        """Fetch many files; in one call where the filesystem can overlap them."""
        if self.store.local_paths:
            for rpath in targets:
                self._confine_local(rpath)
        for rpath in targets:  # other processes wrote them: no stale listing may hide one
            self.fs.invalidate_cache(rpath)
        if self.store.get_file is None and not self.store.local_paths:
            self.fs.get(list(targets), [str(t) for t in targets.values()], callback=callback,
                        **self.store.get_options)
            return
        callback.set_size(len(targets))
        for rpath, lpath in targets.items():
            self._get_file(rpath, lpath, DEFAULT_CALLBACK)
            callback.relative_update(1)

    def _confine_local(self, path: str) -> None:
        """Nothing a download writes comes from outside a Local root (a symlink in a tree)."""
        real_root = os.path.realpath(self.root).rstrip("/") + "/"
        if not os.path.realpath(path).startswith(real_root):
            raise PathOutsideRootError(
                f"{path} is a symbolic link to {os.path.realpath(path)}, outside the store's "
                f"root {self.root}; remove the link from the stored tree")

    # -- checks -------------------------------------------------------------------------

    def _verify(self, local: Path, info: Mapping[str, Any], *, hashed: bool = False) -> None:
        size = local.stat().st_size
        if info.get("size") is not None and size != info["size"]:
            raise BlobIntegrityError(
                f"{self.backend}: received {size} bytes of {info.get('name')}, expected {info['size']}"
            )
        etag = str(info.get("ETag") or info.get("etag") or "").strip('"').lower()
        if (self.store.md5_etag and len(etag) == 32 and not hashed
                and info.get("etag_is_md5", True)):
            digest = versions.file_md5(local)
            if digest != etag:
                raise BlobIntegrityError(
                    f"{self.backend}: the bytes received for {info.get('name')} do not match "
                    f"the store's MD5 ({digest} != {etag})"
                )

    def _verify_md5(self, local: Path, md5: str, record: versions.Record, path: str) -> None:
        digest = versions.file_md5(local)
        if digest != md5:
            raise BlobIntegrityError(f"{self.backend}: an object of version {record.version} of "
                           f"{self.store.uri(path)} does not match its MD5 ({digest} != {md5})")

    def _check_size(self, path: str, size: int) -> None:
        self.fs.invalidate_cache(path)
        stored = self.fs.info(path).get("size")
        if stored != size:
            raise BlobIntegrityError(
                f"{self.backend}: {self.store.uri(path)} holds {stored} bytes after upload, expected {size}"
            )

    # -- listings -----------------------------------------------------------------------

    def _find(self, path: str, withdirs: bool = False, *, tries: int = 3) -> dict[str, dict[str, Any]]:
        self.fs.invalidate_cache(path)
        try:
            found = self.fs.find(path, withdirs=withdirs, detail=True)
        except FileNotFoundError:
            if tries <= 1 or not self._exists(path):
                return {}
            return self._find(path, withdirs, tries=tries - 1)  # an entry vanished while listed
        except KeyError:  # ossfs's find fails on a name that is a file and a directory
            found = {}
            for _, dirs, files in self.fs.walk(path, detail=True):
                found.update({i["name"]: i for i in files.values()})
                if withdirs:
                    found.update({i["name"]: i for i in dirs.values()})
        return dict(found)

    def _plain_tree(self, path: str) -> dict[str, dict[str, Any]]:
        """Every file below ``path``, with its info, listed afresh; directory markers
        (empty ``dir/`` objects other tools make) and temporaries are not files."""
        return {p: i for p, i in self._find(path).items()
                if i.get("type") != "directory" and not p.endswith("/")
                and p.rstrip("/") != path.rstrip("/") and not p.endswith(local_copy.PART_SUFFIX)}

    def _plain_files(self, dest: str) -> dict[str, int | None]:
        """Relative path -> size of the plain files below ``dest``."""
        return {posixpath.relpath(p, dest): i.get("size") for p, i in self._plain_tree(dest).items()}

    def _remove_tree(self, dest: str, record: versions.Record | None = None) -> None:
        """Remove the plain files below ``dest`` (and directory markers), not a file
        ``dest``: those its record names (a listing cannot see them where a file of
        the same name hides the directory, as on fsspec's memory filesystem) and
        those listed."""
        below = {f"{dest}/{rel}" for rel in (record.files if record else ())}
        below |= {p for p in self._find(dest, withdirs=True) if p.rstrip("/") != dest.rstrip("/")}
        self._rm_many(sorted(below, reverse=True))
        if self._is_dir(dest):  # a filesystem that keeps directories of its own (memory)
            try:
                self.fs.rmdir(dest)
            except OSError:
                pass  # not empty, or not there: nothing of the tree is left to remove

    def _rm_many(self, doomed: list[str]) -> None:
        """Remove these paths: in one call where the store deletes in bulk."""
        if doomed and self.store.atomic_put:
            try:
                self.fs.rm(doomed)
                return
            except FileNotFoundError:
                pass  # another writer removed some first: one by one
        for path in doomed:
            try:
                self.fs.rm(path, recursive=True)
            except FileNotFoundError:
                pass  # inside a directory removed just before

    def _is_dir(self, path: str) -> bool:
        try:
            return self.fs.info(path).get("type") == "directory"
        except FileNotFoundError:
            return False

    def _is_file(self, path: str) -> bool:
        """Whether a file (not only a directory) is stored at exactly ``path``."""
        if not self.store.atomic_put:
            return not self._is_dir(path) and self._exists(path)
        try:
            return self.fs.info(path).get("type") == "file"
        except FileNotFoundError:
            return False

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
        return f"{parent}/.{local_copy.fitted(name)}.{_random.token_hex(6)}{local_copy.PART_SUFFIX}"

    def _discard(self, path: str) -> None:
        """Remove a remote temporary if it is still there; never raise."""
        try:
            if self._exists(path):
                self.fs.rm(path, recursive=True)
        except Exception as exc:  # the original error matters more than this one
            log.warning("could not remove temporary %s: %s", self.store.uri(path),
                        type(exc).__name__)


class _Bytes(Callback):
    """Turns a batch call's per-file progress into bytes for ``target``."""

    def __init__(self, target: Callback, sizes: list[int]) -> None:
        super().__init__()
        self._target, self._sizes, self._done = target, sizes, 0

    def relative_update(self, inc: int | None = 1) -> None:
        done, self._done = self._done, self._done + (inc or 0)
        self._target.relative_update(sum(self._sizes[done:self._done]))


class _Within(Callback):
    """One file's progress inside a larger total: bytes pass on, its size does not."""

    def __init__(self, target: Callback) -> None:
        super().__init__()
        self._target = target

    def relative_update(self, inc: int = 1) -> None:
        self._target.relative_update(inc)


def _version(info: Mapping[str, Any]) -> str:
    """A string that changes when the remote object's content changes."""
    fields = {key: str(info[key]) for key in _VERSION_FIELDS if info.get(key) is not None}
    return json.dumps({"size": info.get("size"), **fields}, sort_keys=True)


def _tree_version(path: str, files: Mapping[str, Mapping[str, Any]]) -> str:
    return json.dumps(sorted((posixpath.relpath(p, path), _version(i)) for p, i in files.items()))


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

