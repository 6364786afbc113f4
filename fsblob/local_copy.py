"""Local copies of remote artifacts: locks, freshness records and temporary siblings.

For every destination path fsblob keeps, in its cache directory (never in the
destination directory):

* a lock file (``locks/<hash>.lock``), its ``flock`` held (:mod:`filelock` where
  there is no ``fcntl``) around the whole check-fetch-rename sequence, so threads
  and processes on one host fetch a file once. The hash is of the destination as
  resolved (its directory's symlinks and ``..`` followed), so every spelling of one
  place takes one lock. Lock files are never unlinked, which avoids the classic flock race where a waiter locks an
  inode that another process has already removed;
* a record (``state/<hash>.json``) of the remote version the copy came from and of
  the copy itself (size, mtime, inode, per file for a directory). A copy is reused
  only while both still match, so a truncated, edited or stale copy is fetched again.
  :func:`prune` removes the records of copies that are gone.

Temporaries (``.<name>.<random>.fsblob-part``) fit in 255 bytes whatever the name
(see :func:`fitted`), are created with the permissions the umask gives, as ``cp``
does, and those of killed transfers are removed by :func:`sweep`.

A cache directory that cannot be written is a :class:`~fsblob.errors.BlobConfigError`
naming it and ``cache_directory``.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover (Windows)
    fcntl = None  # type: ignore[assignment]

from filelock import FileLock
from fsspec.callbacks import Callback

from fsblob.errors import BlobConfigError

PART_SUFFIX = ".fsblob-part"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
#: Bytes of a name kept in a temporary's name: ``.`` + 100 + ``.`` + 8 random
#: + ``.fsblob-part`` is at most 122 bytes, well within a file name's 255.
NAME_BYTES = 100
#: Temporaries and records older than this (seconds) belong to no live transfer.
SAFE_AGE = 24 * 3600


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
        self._swept: set[str] = set()
        self._states = cache_dir / "state"
        #: The key of each destination whose lock this process holds: computed once
        #: per download (resolving the directory is most of a record's cost), and
        #: the record then follows the lock even if a symlink changes meanwhile.
        self._held: dict[Path, str] = {}

    def sweep_once(self, folder: Path) -> None:
        """:func:`sweep` ``folder`` the first time this process downloads there, so a
        download's cost does not grow with the number of files beside it."""
        key = os.path.realpath(folder)
        if key not in self._swept:
            self._swept.add(key)
            sweep(folder)

    def _key(self, dest: Path) -> str:
        held = self._held.get(dest)
        if held is not None:
            return held
        # The directory resolved, the name kept: a symlink planted at dest itself
        # must not redirect the lock (it is replaced, never written through).
        resolved = Path(os.path.realpath(dest.parent)) / dest.name
        return hashlib.sha256(os.fsencode(resolved)).hexdigest()[:32]

    @contextmanager
    def locked(self, dest: Path) -> Iterator[None]:
        """Hold the inter-process lock of ``dest`` for the duration of the block."""
        locks = self.cache_dir / "locks"
        key = self._key(dest)
        path = os.path.join(locks, f"{key}.lock")
        if fcntl is None:  # pragma: no cover (Windows: filelock's msvcrt locking)
            with self._writable(locks):
                locks.mkdir(parents=True, exist_ok=True)
                lock = FileLock(path)
                lock.acquire()
            try:
                with self._holding(dest, key):
                    yield
            finally:
                lock.release()
            return
        with self._writable(locks):
            fd = _flocked(path, locks)
        owner = os.getpid()
        try:
            with self._holding(dest, key):
                yield
        finally:
            try:
                if os.getpid() == owner:  # a forked child must not unlock its parent's lock
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    @contextmanager
    def _holding(self, dest: Path, key: str) -> Iterator[None]:
        """Remember ``key`` for ``dest`` while its lock is held (flock excludes every
        other holder of this destination, so one entry per destination suffices)."""
        self._held[dest] = key
        try:
            yield
        finally:
            self._held.pop(dest, None)

    def is_fresh(self, dest: Path, version: str) -> bool:
        """Whether ``dest`` is an untouched copy of remote ``version``."""
        try:
            record = json.loads(_read(self._state(dest)))
        except (OSError, ValueError):
            return False
        return record.get("version") == version and record.get("copy") == _snapshot(dest)

    def untouched(self, dest: Path, record: dict[str, Any]) -> bool:
        """Whether ``dest`` is still as ``record`` (what :meth:`recorded` read) found it."""
        return bool(record) and record.get("copy") == _snapshot(dest)

    def record(self, dest: Path, version: str) -> None:
        """Remember that ``dest`` (as it is now) is a copy of remote ``version``.

        Written in place (creating a file costs ~0.3 ms of kernel time on some
        filesystems, a temporary and a rename twice that): under the lock of
        ``dest``, and a record cut short by a crash is no JSON object, so it counts
        as none (one more fetch), like a record :meth:`forget` emptied."""
        state, states = self._state(dest), self._states
        text = json.dumps({"dest": os.fsdecode(dest), "version": version, "copy": _snapshot(dest)})
        with self._writable(states):
            try:
                fd = os.open(state, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW, 0o600)
            except FileNotFoundError:  # the first record of this cache directory
                states.mkdir(parents=True, exist_ok=True)
                fd = os.open(state, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW, 0o600)
            except OSError:  # not a regular file (a symlink planted there): replace it
                states.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=states, suffix=".tmp")
                _write_all(fd, text.encode())
                os.replace(tmp, state)
                return
            _write_all(fd, text.encode())

    def recorded(self, dest: Path) -> dict[str, Any] | None:
        """What :meth:`record` last wrote for ``dest`` (version and copy), if anything."""
        try:
            record = json.loads(_read(self._state(dest)))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def forget(self, dest: Path) -> None:
        """Drop the record of ``dest`` (before it is replaced): emptied in place, which
        reads as no record and spares :meth:`record` creating the file again."""
        state = self._state(dest)
        with self._writable(self._states):
            try:
                os.close(os.open(state, os.O_WRONLY | os.O_TRUNC | _NOFOLLOW))
            except FileNotFoundError:
                pass
            except OSError:  # not a regular file: remove it
                Path(state).unlink(missing_ok=True)

    @contextmanager
    def _writable(self, directory: Path) -> Iterator[None]:
        """Turn an OSError on the cache directory into one clear error."""
        try:
            yield
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise BlobConfigError(
                f"the cache directory {directory} cannot be written ({reason}); set "
                "cache_directory (or $FSBLOB_CACHE_DIR) to a directory this user can write"
            ) from None

    def _state(self, dest: Path) -> str:
        return os.path.join(self._states, self._key(dest) + ".json")


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _write_all(fd: int, data: bytes) -> None:
    """Write ``data`` to ``fd`` and close it."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _flocked(path: str, locks: Path) -> int:
    """A descriptor of the lock file ``path`` (created, with ``locks``, if missing),
    holding its exclusive ``flock``: blocks while another process or thread holds it.

    Each call opens its own descriptor, so threads of one process exclude each other
    too (a ``flock`` belongs to the open file). This is what :mod:`filelock` does on
    POSIX, at a twentieth of its cost per lock (its per-call fork and singleton
    bookkeeping, ~0.13 ms, was most of a cached re-download's own CPU).
    """
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except FileNotFoundError:  # the first lock of this cache directory
        locks.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, flags, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # releases the GIL while it waits
        return fd
    except BaseException:
        os.close(fd)
        raise


def _snapshot(path: Path) -> Any:
    """Size, mtime and inode of a regular file, or of every file below a directory.

    A symlink, or anything else that is neither, snapshots as ``None`` and so never
    counts as fresh.
    """
    try:
        st = path.lstat()
    except OSError:
        return None
    if stat.S_ISREG(st.st_mode):
        return [st.st_size, st.st_mtime_ns, st.st_ino]
    if not stat.S_ISDIR(st.st_mode):
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
    copied; in the kernel where it can (``copy_file_range``). The copy has the
    source's permissions less the umask, as ``cp`` gives a new file (so a script
    stays executable).

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
        os.fchmod(fd, src.stat().st_mode & 0o777 & ~umask())  # as cp makes a new file
    finally:
        os.close(fd)


def fitted(name: str, limit: int = NAME_BYTES) -> str:
    """``name`` cut to at most ``limit`` bytes, never inside a UTF-8 character.

    Temporaries are named ``.<fitted(name)>.<random>.fsblob-part``, so a name of
    the 255 bytes Linux allows (84 CJK characters) still gives a valid name.
    """
    encoded = os.fsencode(name)
    if len(encoded) <= limit:
        return name
    cut = encoded[:limit]
    for drop in range(4):  # a UTF-8 character is at most 4 bytes
        try:
            return cut[: len(cut) - drop].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return os.fsdecode(cut)  # not UTF-8 at all: keep the bytes as they are


def temp_sibling(dest: Path, *, directory: bool = False) -> Path:
    """Create a hidden temporary file (or directory) next to ``dest``, with the
    permissions the umask gives a new file (or directory), as ``cp`` does."""
    prefix = f".{fitted(dest.name)}."
    if directory:
        path = Path(tempfile.mkdtemp(prefix=prefix, suffix=PART_SUFFIX, dir=dest.parent))
        os.chmod(path, 0o777 & ~umask())
        return path
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):  # as mkstemp; the kernel applies the umask to 0o666, as for cp
        name = os.path.join(dest.parent, f"{prefix}{secrets.token_hex(4)}{PART_SUFFIX}")
        try:
            os.close(os.open(name, flags, 0o666))
        except FileExistsError:
            continue
        return Path(name)
    raise FileExistsError(f"no unused temporary name next to {dest}")


_UMASK_LOCK = threading.Lock()


def umask() -> int:
    """The process's umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:  # elsewhere: set and restore (other threads may see 0o077 briefly)
        current = os.umask(0o077)
        os.umask(current)
    return current


def sweep(folder: Path, older_than: float = SAFE_AGE) -> list[Path]:
    """Remove the temporaries (``.*.fsblob-part``) in ``folder`` that were last
    modified more than ``older_than`` seconds ago: those of killed transfers. A
    live transfer's temporary is younger (it is written to as it goes), so it
    stays. Returns what was removed; errors are ignored (another process may be
    sweeping too).
    """
    cutoff = time.time() - older_than
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not (entry.name.startswith(".") and entry.name.endswith(PART_SUFFIX)):
            continue
        if _newest_mtime(Path(entry.path)) >= cutoff:
            continue
        remove(Path(entry.path))
        removed.append(Path(entry.path))
    return removed


def _newest_mtime(path: Path) -> float:
    """The latest modification time of ``path`` or, for a directory, of anything
    below it (a directory's own mtime does not move while a file in it grows).
    An entry that cannot be read counts as new: it is left alone."""
    try:
        newest = path.lstat().st_mtime
        if path.is_dir() and not path.is_symlink():
            for dirpath, dirnames, filenames in os.walk(path):
                for name in (*dirnames, *filenames):
                    newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
    except OSError:
        return float("inf")
    return newest


def prune(cache_dir: Path, older_than: float = SAFE_AGE) -> list[Path]:
    """Remove the stale freshness records of a cache directory: those whose copy
    is gone, those untouched for ``older_than`` seconds, unreadable ones and
    leftover record temporaries. A pruned record only costs one more fetch.
    Lock files stay: they are empty, and removing one could let two processes
    each hold "the" lock. Returns what was removed.
    """
    cutoff = time.time() - older_than
    removed: list[Path] = []
    state = cache_dir / "state"
    for path in sorted(state.iterdir()) if state.is_dir() else []:
        try:
            stale = path.stat().st_mtime < cutoff or path.suffix != ".json"
            if not stale:
                dest = json.loads(path.read_text()).get("dest")
                stale = not dest or not os.path.lexists(dest)
        except (OSError, ValueError):
            stale = True
        if stale:
            try:
                path.unlink(missing_ok=True)
            except OSError:
                continue
            removed.append(path)
    return removed


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
