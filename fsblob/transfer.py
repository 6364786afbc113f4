"""Moving bytes between local files and one store: verified, and put into place whole.

:class:`Transfer` is handed the :class:`~fsblob.store.Store`, a way to get its
filesystem and the host's :class:`~fsblob.local_copy.LocalCopies`; it never sees
the manager. Each method is one *attempt*: the manager runs it under its retry
policy, and an attempt that fails part-way leaves nothing a reader could take
for the artifact. Names and tree versions are :mod:`fsblob.trees`' business.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import posixpath
import secrets as _random
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import fsspec
from fsspec.callbacks import DEFAULT_CALLBACK, Callback

from fsblob import chunks, integrity, local_copy, paths, stall, versions
from fsblob.errors import BlobIntegrityError, PathOutsideRootError
from fsblob.retry import is_not_found
from fsblob.store import Start, Store

log = logging.getLogger("fsblob")

#: Files of a directory up to this size are sent together, in one call.
BATCH_FILE_SIZE = 8 * 2**20
#: A download's first GET reads this much (where the store stats and reads in one
#: request): a file no larger costs that one request.
FIRST_READ = 2**20

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

    # -- downloads ----------------------------------------------------------------------

    def fetch_file(self, path: str, dest: Path, callback: Callback,
                   meta: integrity.Meta, start: Start | None = None) -> None:
        """Bring ``dest`` up to date with the remote file ``path``, whose ``meta``
        (one stat, :meth:`meta`) and, if the look read them, first bytes (``start``,
        whose rest this reads or lets go) the caller has (and holds the lock of
        ``dest``)."""
        try:
            version = meta.token()
            if self.copies.is_fresh(dest, version):
                log.info("%s is up to date", dest)
                return
            tmp = local_copy.temp_sibling(dest)
            try:
                self._download(path, tmp, meta, callback, start=start)
                self._put_in_place(tmp, dest, version)
            except BaseException:
                self._clean_strays(tmp)
                raise
            finally:
                local_copy.remove(tmp)
        finally:
            if start is not None:
                start.close()

    def _fetch_plain_tree(self, path: str, dest: Path, callback: Callback) -> None:
        """A tree another tool wrote (or fsblob 0.x's plain tree): its plain files,
        unchanged from the first look to the last."""
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
                               "downloaded (it is no fsblob version, which never changes)")
            self._put_in_place(tmp, dest, version)
        finally:
            local_copy.remove(tmp)

    def _put_in_place(self, tmp: Path, dest: Path, version: str) -> None:
        self.copies.forget(dest)
        local_copy.replace(tmp, dest)
        self.copies.record(dest, version)

    @staticmethod
    def _clean_strays(tmp: Path) -> None:
        """After a failed download: the client's own temporaries named after ours
        (oss2's resumable download). A scan of the folder, so only on failure."""
        for stray in tmp.parent.glob(glob.escape(tmp.name) + "?*"):
            local_copy.remove(stray)

    def _cat(self, path: str) -> bytes:
        """A small file's bytes in one read: ranged reads (fsspec's WebHDFS file)
        could mix a file replaced between two of them. Where the store reads and
        stats at once, one GET whose bytes are checked (fsblob's bookkeeping, a
        manifest, is checked like any download)."""
        if self.store.read_start is not None:
            start = self.store.read_start(self.fs, path, FIRST_READ, "", None)
            pieces = [start.data]
            try:
                if start.rest is not None:
                    start.rest.read(pieces.append)
            finally:
                start.close()
            return self._checked(path, start.meta, b"".join(pieces))
        if self.store.get_file is None:  # get_options: s3fs's one GET, not HEAD + LIST + GET
            return bytes(self.fs.cat_file(path, **self.store.get_options))
        with tempfile.TemporaryDirectory(prefix="fsblob-") as scratch:
            copy = Path(scratch) / "small"
            self.store.get_file(self.fs, path, str(copy), DEFAULT_CALLBACK)
            return copy.read_bytes()

    def _checked(self, path: str, meta: integrity.Meta, data: bytes) -> bytes:
        """``data``, the whole object ``meta`` describes, checked as a download is."""
        uri = self.store.uri(path)
        try:
            if meta.size is not None and len(data) != meta.size:
                raise chunks.RangeMismatch(f"received {len(data)} bytes of {uri}, expected "
                                           f"{meta.size}")
            check = integrity.choose(meta)
            digest = check.hasher()
            digest.update(data)
            check.verify([digest], uri)
        except chunks.RangeMismatch as exc:
            raise BlobIntegrityError(f"{self.backend}: {exc}") from None
        return data

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
        tmp = self._remote_temp(dest)
        for folder in {posixpath.dirname(dest), posixpath.dirname(tmp)}:
            self.fs.makedirs(folder, exist_ok=True)
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
        tmp = self._remote_temp(dest)
        for folder in {posixpath.dirname(dest), posixpath.dirname(tmp)}:
            self.fs.makedirs(folder, exist_ok=True)
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

    def _put(self, src: Path, rpath: str, callback: Callback, *,
             checksum: bool = True) -> int | None:
        """Upload one file with the backend's byte path (which stores fsblob's
        checksum and verifies the upload), else the filesystem's ``put_file``.
        ``checksum=False``: the caller keeps the checksum (a tree's manifest), so a
        backend whose ``put_file`` sends the bytes alone may skip storing it.
        Returns the CRC32 of the bytes stored where the byte path took it from
        them (:attr:`Store.upload`), else ``None``."""
        if self.store.upload is not None and (checksum or self.store.put_file is None):
            try:
                return self.store.upload(self.fs, str(src), rpath, callback, self.settings)
            except chunks.RangeMismatch as exc:  # the public type, from the public module
                raise BlobIntegrityError(f"{self.backend}: {exc}") from None
        if self.store.put_file is not None:
            return self.store.put_file(self.fs, str(src), rpath, callback)
        self.fs.put_file(str(src), rpath, callback=callback)
        return None

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

    def _start(self, path: str, unless_etag: str = "") -> Start | None:
        """One GET that stats ``path`` and reads its first bytes, where the store
        can (:attr:`Store.read_start`); ``None`` where it cannot, or where there is
        no object (a directory, or nothing: the stat tells which)."""
        if self.store.read_start is None:
            return None
        try:
            return self.store.read_start(self.fs, path, FIRST_READ, unless_etag,
                                         self.settings.first_read_within(FIRST_READ))
        except FileNotFoundError:
            return None

    def _download(self, path: str, tmp: Path, meta: integrity.Meta, callback: Callback,
                  *, ranged: bool = True, start: Start | None = None) -> None:
        """Fetch one object into ``tmp``, checked as it streams past (see
        :mod:`fsblob.integrity`): one version of it, or raise. ``ranged=False``: in
        one stream (the caller runs many files at once). ``start``: its first bytes,
        already read; the rest comes from the same answer where it is left open and
        one stream is best (a link fast enough gets one stream:
        :meth:`TransferSettings.streams`), else in ranges after them, the first of
        which reads that answer on (see :func:`_after`)."""
        uri = self.store.uri(path)
        size = meta.size or 0
        part = self.settings.part_size(size)
        check = integrity.choose(meta, fsblob_part=max(part, 5 * 2**20))
        ranges = [(0, size)]
        if ranged and self.store.ranged_reads and self.settings.splits(size) and check.ranged:
            rate = start.rate if start is not None else None
            if self.settings.streams(size, rate):
                log.info("%s: the first MiB came at %.0f MiB/s: the rest in one stream",
                         uri, (rate or 0) / 2**20)
            else:
                ranges = self._ranges(meta, check)
        try:
            what = self._read_checked(path, tmp, meta, check, ranges, callback, start)
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
                      ranges: list[tuple[int, int]], callback: Callback,
                      start: Start | None = None) -> str:
        uri = self.store.uri(path)
        read = self._reader(path, meta)
        if start is not None:
            read = _after(start, read, meta.size or 0)
        hashes = chunks.fetch(read, str(tmp), ranges, check.hasher, self.settings, callback, uri)
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

    def _remove_tree(self, dest: str) -> None:
        """Remove the plain files below ``dest`` (and directory markers), not a file
        ``dest``."""
        below = {p for p in self._find(dest, withdirs=True) if p.rstrip("/") != dest.rstrip("/")}
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

    def _exists(self, path: str) -> bool:
        """Like ``fs.exists``, but an unreachable store raises instead of saying no."""
        self.fs.invalidate_cache(path)
        try:
            self.fs.info(path)
        except Exception as exc:
            if is_not_found(exc) or isinstance(exc, NotADirectoryError):  # below a file
                return False
            raise
        return True

    def _remote_temp(self, dest: str) -> str:
        """A fresh temporary path for ``dest``, in fsblob's own folder of the root
        (so nothing outside it is ever taken for a temporary)."""
        name = posixpath.basename(dest.rstrip("/"))
        return (f"{versions.tmp_dir(self.root)}/{local_copy.fitted(name)}."
                f"{_random.token_hex(6)}{local_copy.PART_SUFFIX}")

    def _discard(self, path: str) -> None:
        """Remove a remote temporary if it is still there; never raise. Its requests
        have a short budget of their own (:func:`fsblob.stall.cleanup`)."""
        try:
            with stall.cleanup():
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


def _after(first: Start, read: chunks.Reader, size: int) -> chunks.Reader:
    """A reader that takes the bytes ``first`` kept from it; the range that goes on
    from them from ``first.rest`` (once: the same answer read on, on its warm
    connection, then let go where the range ends before the object does); and
    anything else from ``read``."""
    head, rest = first.data, [first.rest] if first.rest is not None else []

    def read_rest(start: int, end: int, feed: Callable[[bytes], None]) -> None:
        if start < len(head):
            feed(head[start:min(end, len(head))])
        if end > len(head):
            if rest and start <= len(head):
                rest.pop().read(feed, None if end == size else end - len(head))
            else:  # a range, or the rest again after a failure: a request of its own
                read(max(start, len(head)), end, feed)

    return read_rest


def _version(info: Mapping[str, Any]) -> str:
    """A string that changes when the remote object's content changes."""
    fields = {key: str(info[key]) for key in _VERSION_FIELDS if info.get(key) is not None}
    return json.dumps({"size": info.get("size"), **fields}, sort_keys=True)


def _tree_version(path: str, files: Mapping[str, Mapping[str, Any]]) -> str:
    return json.dumps(sorted((posixpath.relpath(p, path), _version(i)) for p, i in files.items()))


