"""Tree versions as stored: where they live, their manifest, and the pointer of a name.

A directory artifact ``<root>/<name>`` is stored as immutable **versions**. Each
upload writes a new one and never touches an old one:

* ``<root>/.fsblob/trees/<name>/<version>/<relative path>``: the version's files,
  a plain directory that pandas, pyarrow and the aws CLI read as it is. Its URI
  is what ``upload(dir)`` returns; nothing below it ever changes.
* ``<root>/.fsblob/trees/<name>/<version>.json``: its **manifest** (every file's
  relative path, size, MD5, CRC32 and x bit), written only once every file is stored and
  checked. A version without a manifest is not a version (an upload in flight,
  or one that died).
* ``<root>/<name>``: the **pointer**, a small object naming the current version,
  written in one atomic write after the manifest. It is the only mutable thing. A
  file artifact is stored at the same path, so one read tells a file from a tree
  and a name switches kind in one write.

Everything fsblob keeps for itself lives below ``<root>/.fsblob/`` (remote
temporaries in ``.fsblob/tmp/``); the name ``.fsblob`` and the temporaries'
suffix are refused as artifact names. This module holds the formats and paths
only; :mod:`fsblob.trees` moves them.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import secrets
import stat
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fsblob import paths
from fsblob.local_copy import PART_SUFFIX
from fsblob.errors import InvalidPathError

#: The hidden folder below the root that holds everything fsblob keeps for itself.
CONTROL = ".fsblob"
MANIFEST_FORMAT = "fsblob-manifest/1"
#: The first bytes of a pointer object: nothing else fsblob stores starts with them.
POINTER_MAGIC = b"fsblob-tree-pointer/1\n"
_READ_SIZE = 2**20
_VERSION = re.compile(r"^[0-9a-f]{16}-[0-9a-f]{8}$")
_MD5 = re.compile(r"^[0-9a-f]{32}$")
#: The largest file a manifest may name (S3's own limit is 5 TiB).
MAX_FILE_SIZE = 2**50


@dataclass(frozen=True)
class Entry:
    """One file of a version: its size, the MD5 of its bytes (hex), whether it is
    executable (carried by the manifest, so every store keeps a script's x bit), and
    its CRC32 (which combines over ranges, so a large file downloads in parallel
    ranges checked as they stream; ``None`` in manifests that lack it)."""

    size: int
    md5: str
    executable: bool = False
    crc32: int | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """What identifies these bytes and this mode."""
        return self.md5 + (".x" if self.executable else "")


@dataclass(frozen=True)
class Manifest:
    """One complete version of a directory artifact."""

    name: str
    version: str
    created: float
    files: Mapping[str, Entry]

    def to_json(self) -> bytes:
        """The manifest as stored."""
        files = {rel: {"size": e.size, "md5": e.md5,
                       **({"crc32": e.crc32} if e.crc32 is not None else {}),
                       **({"x": True} if e.executable else {})}
                 for rel, e in sorted(self.files.items())}
        return json.dumps({"format": MANIFEST_FORMAT, "name": self.name, "version": self.version,
                           "created": self.created, "files": files}, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes, name: str, version: str, where: str) -> Manifest:
        """Parse and validate a stored manifest before anything it names is used:
        its name and version are the ones asked for, every path is confined below
        the version, every size is a whole number in range and every MD5 is 32 hex
        digits. A damaged one is a :class:`~fsblob.errors.InvalidPathError`."""
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
                raise ValueError("not an fsblob manifest")
            if doc.get("name") != name or doc.get("version") != version:
                raise ValueError(f"it describes {doc.get('name')!r} version {doc.get('version')!r}")
            files = {}
            for rel, entry in doc["files"].items():
                paths.check_segments(rel, what=f"file {rel!r}")
                size, md5 = entry["size"], entry["md5"]
                if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_FILE_SIZE:
                    raise ValueError(f"file {rel!r} has an invalid size {size!r}")
                if not isinstance(md5, str) or not _MD5.match(md5):
                    raise ValueError(f"file {rel!r} has an invalid MD5 {md5!r}")
                crc = entry.get("crc32")
                if crc is not None and (isinstance(crc, bool) or not isinstance(crc, int)
                                        or not 0 <= crc < 2**32):
                    raise ValueError(f"file {rel!r} has an invalid CRC32 {crc!r}")
                files[rel] = Entry(size, md5, entry.get("x") is True, crc)
            if not files:
                raise ValueError("it names no file")
            return cls(name, version, float(doc["created"]), files)
        except (ValueError, KeyError, TypeError, AttributeError, InvalidPathError) as exc:
            raise InvalidPathError(f"the manifest {where} is damaged ({_short(exc)}); "
                                   "upload the directory again to make a new version") from None


@dataclass(frozen=True)
class Pointer:
    """The current version of a tree name."""

    version: str

    def to_bytes(self) -> bytes:
        return POINTER_MAGIC + json.dumps({"version": self.version}).encode() + b"\n"

    @staticmethod
    def is_pointer(data: bytes) -> bool:
        """Whether ``data`` (a whole object, or its first bytes) is a pointer."""
        return data.startswith(POINTER_MAGIC)

    @classmethod
    def parse(cls, data: bytes, where: str) -> Pointer:
        """Parse a pointer; a damaged one is an :class:`~fsblob.errors.InvalidPathError`."""
        try:
            if not cls.is_pointer(data) or len(data) != POINTER_SIZE:
                raise ValueError("not an fsblob pointer")
            version = json.loads(data[len(POINTER_MAGIC):])["version"]
            if not isinstance(version, str) or not _VERSION.match(version):
                raise ValueError(f"invalid version {version!r}")
            return cls(version)
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidPathError(f"the tree pointer {where} is damaged ({_short(exc)}); "
                                   "upload the directory again (or delete the name)") from None


#: Every pointer has this size, so a stat tells which objects may be pointers.
POINTER_SIZE = len(Pointer("0" * 16 + "-" + "0" * 8).to_bytes())


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 160 else text[:157] + "..."


# -- versions ------------------------------------------------------------------------------


def new_version() -> str:
    """A fresh version id, ordered by time: ``<ns since epoch, hex>-<random>``."""
    return f"{time.time_ns():016x}-{secrets.token_hex(4)}"


def is_version(text: str) -> bool:
    """Whether ``text`` is a well-formed version id."""
    return bool(_VERSION.match(text))


def version_time(version: str) -> float:
    """When the upload that made ``version`` started (epoch seconds)."""
    return int(version.split("-", 1)[0], 16) / 1e9


# -- paths -----------------------------------------------------------------------------------


def control_dir(root: str) -> str:
    return f"{root.rstrip('/')}/{CONTROL}"


def trees_dir(root: str) -> str:
    """The folder holding every tree name's versions."""
    return f"{control_dir(root)}/trees"


def name_dir(root: str, name: str) -> str:
    """The folder holding the versions (and their manifests) of one name."""
    return f"{trees_dir(root)}/{name}"


def version_dir(root: str, name: str, version: str) -> str:
    """Where the files of one version live: its URI is what ``upload`` returns."""
    return f"{name_dir(root, name)}/{version}"


def manifest_path(root: str, name: str, version: str) -> str:
    """Where the manifest of one version lives (beside it, so the version's
    directory holds exactly the uploaded tree)."""
    return f"{name_dir(root, name)}/{version}.json"


def tmp_dir(root: str) -> str:
    """Where remote temporaries are written before being renamed into place."""
    return f"{control_dir(root)}/tmp"


def legacy_record_path(root: str, name: str) -> str:
    """Where fsblob 0.x kept a tree's commit record (read by nothing now, removed
    when the name is uploaded again or deleted, and by gc)."""
    return f"{control_dir(root)}/commits/{name}"


def is_reserved(name: str) -> bool:
    """Whether ``name`` belongs to fsblob itself and is no artifact name."""
    return name == CONTROL or name.startswith(CONTROL + ".") or name.endswith(PART_SUFFIX)


def is_control(root: str, path: str) -> bool:
    """Whether ``path`` is below fsblob's own folder of ``root``."""
    control = control_dir(root)
    return path.rstrip("/") == control or path.startswith(control + "/")


def name_of(root: str, path: str) -> str | None:
    """The artifact name if ``path`` is a top-level artifact of ``root``, else ``None``."""
    parent, name = posixpath.split(path.rstrip("/"))
    return name if parent.rstrip("/") == root.rstrip("/") and not is_reserved(name) else None


@dataclass(frozen=True)
class VersionPath:
    """A path inside a stored version: its name, version and the file below it
    (``""``: the whole version)."""

    name: str
    version: str
    rel: str


def parse_version_path(root: str, path: str) -> VersionPath | None:
    """The version ``path`` lies in, if it is one of fsblob's version paths."""
    prefix = trees_dir(root) + "/"
    if not path.startswith(prefix):
        return None
    parts = path[len(prefix):].strip("/").split("/", 2)
    if len(parts) < 2 or not is_version(parts[1]) or is_reserved(parts[0]):
        return None
    return VersionPath(parts[0], parts[1], parts[2] if len(parts) == 3 else "")


# -- local trees -------------------------------------------------------------------------------


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
            entry = Entry(entry.size, entry.md5, True, entry.crc32)
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
    digest, crc = hashlib.md5(usedforsecurity=False), 0
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_READ_SIZE):
            digest.update(chunk)
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
    return Entry(size, digest.hexdigest(), crc32=crc)


def file_md5(path: Path) -> str:
    """The MD5 (hex) of a local file's bytes."""
    return _entry(path).md5


def stamp() -> float:
    """Now, as a manifest's ``created`` time."""
    return time.time()
