"""The local filesystem, for a client, server and workers on one host.

====================  ==========================================  =================
key                   meaning                                     fsspec
====================  ==========================================  =================
``root_directory``    the directory that holds the artifacts      ``file`` root
====================  ==========================================  =================

URIs are plain absolute paths, as the legacy ``LocalBlobManager`` returned.

Integrity: an upload copies the file once, computing its CRC32 on the way, and
stores it as the extended attribute ``user.fsblob.crc32`` of the new file (kept
by the rename into place). A download reads the file once, from one open file
(so one version of it), computing the CRC32 and comparing it with that
attribute. On a filesystem without user xattrs (some tmpfs, NFS) the attribute
is left out and downloads check the size only, and say so.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from fsspec.callbacks import Callback

from fsblob import integrity, local_copy
from fsblob.backends import keys
from fsblob.chunks import CRC32, PIECE, RangeMismatch
from fsblob.store import Store

log = logging.getLogger("fsblob")

BACKEND = "local"
KEYS = ("root_directory",)


def store(config: Mapping[str, Any]) -> Store:
    """Map the Local keys to a :class:`Store` on the ``file`` protocol."""
    keys.check_keys(config, KEYS, BACKEND)
    root = keys.required(config, "root_directory", BACKEND,
                         fix="set it to the directory that should hold the artifacts")
    if root.startswith("file://"):
        root = root[len("file://"):]
    return Store(
        protocol="file",
        root=os.path.realpath(os.path.expanduser(root)),
        url_prefix="",
        **CAPABILITIES,
    )


def meta(fs: Any, path: str) -> integrity.Meta:
    """``os.stat`` of a file, with fsblob's CRC32 from its xattr."""
    st = os.stat(path)
    if os.path.isdir(path):
        return integrity.Meta(None, is_dir=True)
    return integrity.Meta(st.st_size, version=f"{st.st_ino}:{st.st_mtime_ns}:{st.st_ctime_ns}",
                          crc32=_read_xattr(path), pinned=False,
                          info={"ino": st.st_ino, "mtime": st.st_mtime})


def _read_xattr(path: str | int) -> int | None:
    try:
        return integrity.decode_crc(os.getxattr(path, integrity.XATTR))
    except OSError:  # no such attribute, or no xattrs on this filesystem
        return None


def read_range(fs: Any, path: str, meta: integrity.Meta, start: int, end: int,
               feed: Callable[[bytes], None]) -> None:
    """Bytes ``start`` to ``end`` of the file, from one open file."""
    with open(path, "rb", buffering=0) as f:
        f.seek(start)
        left = end - start
        while left > 0:
            piece = f.read(min(PIECE * 4, left))
            if not piece:
                break  # shrank: the range's length check says so
            feed(piece)
            left -= len(piece)


def upload(fs: Any, lpath: str, rpath: str, callback: Callback, settings: Any) -> int:
    """Copy ``lpath`` to ``rpath`` (a fresh temporary), computing its CRC32 on the
    way, and store it as the ``user.fsblob.crc32`` xattr of the copy; return it."""
    size = os.path.getsize(lpath)
    callback.set_size(size)
    crc = done = 0
    fd = os.open(rpath, os.O_WRONLY | os.O_CREAT, 0o666)
    try:
        with open(lpath, "rb", buffering=0) as fin:
            while data := fin.read(4 * PIECE):
                crc = CRC32.update(data, crc)
                view = memoryview(data)
                while view:
                    view = view[os.pwrite(fd, view, done + len(data) - len(view)):]
                done += len(data)
                callback.relative_update(len(data))
        if os.fstat(fd).st_size > done:
            os.ftruncate(fd, done)
        os.fchmod(fd, os.stat(lpath).st_mode & 0o777 & ~local_copy.umask())  # as cp
        if done != size:
            raise RangeMismatch(f"{lpath} changed size while it was being uploaded")
        try:
            os.setxattr(fd, integrity.XATTR, integrity.encode_crc(crc).encode())
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.ENOSPC,
                                 errno.E2BIG):
                raise
            log.info("%s: no user xattrs on this filesystem: fsblob's checksum is not "
                     "stored (downloads check the size only)", rpath)
    finally:
        os.close(fd)
    return crc


#: What a Local root is: files of this host, one stream beats ranges.
CAPABILITIES: dict[str, Any] = {"meta": meta, "read_range": read_range, "upload": upload,
                                "ranged_reads": False, "local_paths": True,
                                "atomic_writes": False}
