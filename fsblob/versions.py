"""Commit records: what makes a stored directory tree one version, whole or not at all.

A directory artifact ``<root>/<name>`` is stored three ways at once:

* **objects**: each file's bytes, once, under its MD5 in ``<root>/.fsblob/objects/``
  (content-addressed, immutable, shared by every version and artifact that holds
  the same bytes, like a DVC or git cache);
* **the record** ``<root>/.fsblob/commits/<name>`` (JSON): the version (an id, a time)
  and every file's relative path, size and MD5. It is written last, in one atomic
  write, and *is* the commit: a version exists once its record does;
* **the plain tree** ``<root>/<name>/<relative path>``: a copy of the committed
  version's files where other tools (pandas, the aws CLI) read them. fsblob writes
  it after the commit, server-side where the store can copy (S3, OSS, memory),
  as hard links on a Local root, and from the local files elsewhere.

fsblob's own readers read a record and then the objects it names, each verified
against its size and MD5, so they get exactly one committed version whatever
writers do at the same time. A failed upload has written only objects that no
record names yet, so the previous version stays whole. Concurrent uploaders each
write complete objects before their record, so the last record written names one
uploader's complete version. Re-uploads send only objects the store lacks.

A directory without a record (written by another tool, or by fsblob before
records existed) is read from its plain files, checked to be unchanged from the
first listing to the last. Objects that no record names are removed by
:meth:`fsblob.FsspecBlobManager.gc`, once older than its grace period.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import secrets
import stat
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from fsblob import paths
from fsblob.errors import InvalidPathError

#: The hidden folder below the root that holds records and objects.
CONTROL = ".fsblob"
FORMAT = "fsblob-tree/1"
_READ_SIZE = 2**20


@dataclass(frozen=True)
class Entry:
    """One file of a version: its size, the MD5 of its bytes (hex), and whether it
    is executable (carried by the record, so every store keeps a script's x bit)."""

    size: int
    md5: str
    executable: bool = False

    @property
    def key(self) -> str:
        """The name of the object holding these bytes (and this mode)."""
        return self.md5 + (".x" if self.executable else "")


@dataclass(frozen=True)
class Record:
    """One committed version of a directory artifact."""

    version: str
    created: float
    files: Mapping[str, Entry]

    def to_json(self) -> bytes:
        """The record as stored."""
        files = {rel: {"size": e.size, "md5": e.md5, **({"x": True} if e.executable else {})}
                 for rel, e in sorted(self.files.items())}
        return json.dumps({"format": FORMAT, "version": self.version, "created": self.created,
                           "files": files}, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Record:
        """Parse a stored record; a malformed one is an :class:`InvalidPathError`."""
        try:
            doc = json.loads(data)
            if doc.get("format") != FORMAT:
                raise ValueError(f"format {doc.get('format')!r}")
            files = {}
            for rel, entry in doc["files"].items():
                paths.check_segments(rel, what=f"file {rel!r} of the record {where}")
                files[rel] = Entry(int(entry["size"]), str(entry["md5"]), bool(entry.get("x")))
            return cls(str(doc["version"]), float(doc["created"]), files)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidPathError(f"the commit record {where} is damaged ({exc}); "
                                   "upload the artifact again") from None

    def digest(self) -> str:
        """A string that changes when the version's content changes."""
        return json.dumps({"version": self.version,
                           "files": {rel: e.key for rel, e in sorted(self.files.items())}})


def new_version() -> str:
    """A fresh version id, ordered by time: ``<ns since epoch, hex>-<random>``."""
    return f"{time.time_ns():x}-{secrets.token_hex(4)}"


def record_path(root: str, name: str) -> str:
    """Where the record of artifact ``name`` lives."""
    return f"{root.rstrip('/')}/{CONTROL}/commits/{name}"  # fits wherever the name does


def records_dir(root: str) -> str:
    """The folder of every record below ``root``."""
    return f"{root.rstrip('/')}/{CONTROL}/commits"


def object_path(root: str, key: str) -> str:
    """Where the object ``key`` (:attr:`Entry.key`) lives, fanned out by its first
    two digits."""
    return f"{root.rstrip('/')}/{CONTROL}/objects/{key[:2]}/{key}"


def objects_dir(root: str) -> str:
    """The folder of every object below ``root``."""
    return f"{root.rstrip('/')}/{CONTROL}/objects"


def is_control(root: str, path: str) -> bool:
    """Whether ``path`` is fsblob's own bookkeeping below ``root``."""
    return path.rstrip("/") == f"{root.rstrip('/')}/{CONTROL}" or path.startswith(
        f"{root.rstrip('/')}/{CONTROL}/")


def name_of(root: str, path: str) -> str | None:
    """The artifact name if ``path`` is a top-level artifact of ``root``, else ``None``."""
    parent, name = posixpath.split(path.rstrip("/"))
    return name if parent.rstrip("/") == root.rstrip("/") and name != CONTROL else None


@dataclass(frozen=True)
class LocalFile:
    """A file of a directory being uploaded."""

    path: Path
    entry: Entry


def scan(src: Path) -> dict[str, LocalFile]:
    """Every file below ``src`` by relative path, with its size and MD5.

    Symbolic links are followed, to files and to directories, as ``cp -rL`` and
    ``aws s3 sync`` do: the tree stored is the tree a program reading ``src`` sees.
    A link loop, a dangling link, or anything other than a regular file (a FIFO,
    a socket, a device) is refused, naming it.
    """
    found: dict[str, LocalFile] = {}
    for path, rel in _walk(src, src, frozenset()):
        paths.check_segments(rel, what=f"file {rel!r} in {src}")
        entry = _entry(path)
        if path.stat().st_mode & 0o111:
            entry = Entry(entry.size, entry.md5, executable=True)
        found[rel] = LocalFile(path, entry)
    return found


def _walk(top: Path, base: Path, ancestors: frozenset[str]) -> Iterator[tuple[Path, str]]:
    real = os.path.realpath(top)
    if real in ancestors:
        raise InvalidPathError(f"{top} is a symbolic link to a directory that contains it "
                               "(a loop); remove the link or upload another directory")
    try:
        children = sorted(os.scandir(top), key=lambda e: e.name)
    except OSError as exc:
        raise InvalidPathError(f"cannot read directory {top}: {exc.strerror}") from None
    for child in children:
        path = Path(child.path)
        try:
            st = path.stat()  # follows links
        except OSError:
            raise InvalidPathError(f"{path} is a broken symbolic link; remove it or fix "
                                   "its target, then upload again") from None
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(path, base, ancestors | {real})
        elif stat.S_ISREG(st.st_mode):
            yield path, path.relative_to(base).as_posix()
        else:
            raise InvalidPathError(f"{path} is not a regular file (a pipe, socket or device); "
                                   "fsblob stores only regular files")


def _entry(path: Path) -> Entry:
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_READ_SIZE):
            digest.update(chunk)
            size += len(chunk)
    return Entry(size, digest.hexdigest())


def file_md5(path: Path) -> str:
    """The MD5 (hex) of a local file's bytes."""
    return _entry(path).md5


def stamp() -> float:
    """Now, as a record's ``created`` time."""
    return time.time()
