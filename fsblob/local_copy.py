"""Local copies of remote artifacts: locks, freshness records and temporary siblings.

For every destination path fsblob keeps, in its cache directory (never in the
destination directory):

* a lock file (``locks/<hash>.lock``), taken with :mod:`filelock` around the whole
  check-fetch-rename sequence, so threads and processes on one host fetch a file
  once. Lock files are never unlinked, which avoids the classic flock race where a
  waiter locks an inode that another process has already removed;
* a record (``state/<hash>.json``) of the remote version the copy came from and of
  the copy itself (size, mtime, inode, per file for a directory). A copy is reused
  only while both still match, so a truncated, edited or stale copy is fetched again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock
from fsspec.callbacks import Callback

PART_SUFFIX = ".fsblob-part"


def default_cache_dir() -> Path:
    """``$FSBLOB_CACHE_DIR``, else ``$XDG_CACHE_HOME/fsblob``, else ``~/.cache/fsblob``."""
    if os.environ.get("FSBLOB_CACHE_DIR"):
        return Path(os.environ["FSBLOB_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fsblob"


class LocalCopies:
    """Locks and freshness records for local copies, kept under ``cache_dir``."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir

    def _key(self, dest: Path) -> str:
        return hashlib.sha256(os.fsencode(dest)).hexdigest()[:32]

    @contextmanager
    def locked(self, dest: Path) -> Iterator[None]:
        """Hold the inter-process lock of ``dest`` for the duration of the block."""
        locks = self.cache_dir / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        with FileLock(locks / f"{self._key(dest)}.lock"):
            yield

    def is_fresh(self, dest: Path, version: str) -> bool:
        """Whether ``dest`` is an untouched copy of remote ``version``."""
        try:
            record = json.loads((self._state(dest)).read_text())
        except (OSError, ValueError):
            return False
        return record.get("version") == version and record.get("copy") == _snapshot(dest)

    def record(self, dest: Path, version: str) -> None:
        """Remember that ``dest`` (as it is now) is a copy of remote ``version``."""
        state = self._state(dest)
        state.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"dest": os.fsdecode(dest), "version": version, "copy": _snapshot(dest)})
        fd, tmp = tempfile.mkstemp(dir=state.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, state)

    def recorded(self, dest: Path) -> dict[str, Any] | None:
        """What :meth:`record` last wrote for ``dest`` (version and copy), if anything."""
        try:
            record = json.loads(self._state(dest).read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def forget(self, dest: Path) -> None:
        """Drop the record of ``dest`` (before it is replaced)."""
        self._state(dest).unlink(missing_ok=True)

    def _state(self, dest: Path) -> Path:
        return self.cache_dir / "state" / f"{self._key(dest)}.json"


def _snapshot(path: Path) -> Any:
    """Size, mtime and inode of a regular file, or of every file below a directory.

    A symlink, or anything else that is neither, snapshots as ``None`` and so never
    counts as fresh.
    """
    try:
        st = path.lstat()
    except OSError:
        return None
    if path.is_symlink():
        return None
    if path.is_file():
        return [st.st_size, st.st_mtime_ns, st.st_ino]
    if not path.is_dir():
        return None
    files = {}
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath, name)
            files[full.relative_to(path).as_posix()] = _snapshot(full)
    return files


def snapshot(path: Path) -> Any:
    """The size, mtime and inode of a file (per file for a directory) that
    freshness records compare; ``None`` for anything else."""
    return _snapshot(path)


def copy_file(src: Path, dest: Path, callback: Callback, *, step: int = 64 * 2**20) -> None:
    """Copy a local file's bytes into ``dest``, telling ``callback`` of the bytes
    copied; in the kernel where it can (``copy_file_range``).

    ``dest`` is opened without ``O_TRUNC`` (a fresh temporary is empty anyway):
    on ext4 a file truncated and then rewritten is flushed to disk when closed.
    """
    size = src.stat().st_size
    callback.set_size(size)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT, 0o666)
    try:
        with open(src, "rb") as fin:
            done = 0
            while done < size:
                try:
                    moved = os.copy_file_range(fin.fileno(), fd, min(step, size - done))
                except OSError:  # not between these filesystems: copy in user space
                    moved = os.pwrite(fd, os.pread(fin.fileno(), min(step, size - done), done), done)
                    os.lseek(fd, done + moved, os.SEEK_SET)
                    fin.seek(done + moved)
                if moved == 0:
                    break  # the source shrank while it was copied; the size check will say so
                done += moved
                callback.relative_update(moved)
        if os.fstat(fd).st_size > done:
            os.ftruncate(fd, done)
    finally:
        os.close(fd)


def temp_sibling(dest: Path, *, directory: bool = False) -> Path:
    """Create a hidden temporary file (or directory) next to ``dest``."""
    prefix = f".{dest.name[:100]}."
    if directory:
        return Path(tempfile.mkdtemp(prefix=prefix, suffix=PART_SUFFIX, dir=dest.parent))
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=PART_SUFFIX, dir=dest.parent)
    os.close(fd)
    return Path(name)


def remove(path: Path) -> None:
    """Remove a file, symlink or directory tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def replace(src: Path, dest: Path) -> None:
    """Move ``src`` into place at ``dest``, replacing what is there.

    A file replaces a file or symlink atomically (``rename``); a file never
    replaces a directory (``IsADirectoryError``). A directory cannot replace a
    directory atomically on POSIX: the old one is renamed aside, then removed.
    """
    if not src.is_dir():
        os.replace(src, dest)
        return
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.is_dir():
        aside = temp_sibling(dest, directory=True)
        os.rename(dest, aside / "old")
        os.rename(src, dest)
        remove(aside)
        return
    os.rename(src, dest)
