"""What fsblob knows of a stored object's bytes, and the check a download makes.

**fsblob's own checksum.** Every single object fsblob writes carries the CRC32 of
its bytes where the store keeps user data: object metadata on S3 and OSS
(``x-amz-meta-fsblob-crc32``, ``x-oss-meta-fsblob-crc32``), an extended
attribute (``user.fsblob.crc32``) on HDFS (WebHDFS ``SETXATTR``) and on a Local
root (where the filesystem has user xattrs). A CRC32 combines over byte ranges,
so parallel ranged downloads are checked against it without a second read.

**A backend describes an object** with a :class:`Meta`: size, ETag, a version
token, fsblob's CRC32, a full-object checksum the store keeps *and that covers
the bytes* (S3 ``FULL_OBJECT`` or single-part CRC32/CRC64NVME, OSS CRC64), a
whole-object MD5 (a single-part MD5 ETag), or a multipart ETag
(``md5-of-part-md5s-N``) with its part size.

**A download makes the first check that applies** (:func:`choose`): fsblob's
CRC32; the store's full-object CRC; the multipart ETag recomputed from per-part
MD5s (ranges aligned to the parts); the MD5 ETag; otherwise none, and it says
so: "verified" is logged only when bytes were checked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fsblob.chunks import CRC32, CrcKind, RangeMismatch

log = logging.getLogger("fsblob")

#: The name of fsblob's checksum in a store's user metadata (S3/OSS: after the
#: ``x-amz-meta-``/``x-oss-meta-`` prefix; xattrs: ``user.fsblob.crc32``).
META_KEY = "fsblob-crc32"
XATTR = "user.fsblob.crc32"
MiB = 2**20
#: Part sizes other tools commonly use, tried for a multipart ETag whose part size
#: the store does not tell (AWS CLI/boto3: 8 MiB; S3's minimum; s3fs: 50 MiB).
COMMON_PART_SIZES = (8 * MiB, 5 * MiB, 16 * MiB, 15 * MiB, 50 * MiB, 64 * MiB, 100 * MiB)


def encode_crc(crc: int) -> str:
    """fsblob's CRC32 as stored: 8 lowercase hex digits."""
    return f"{crc:08x}"


def decode_crc(value: Any) -> int | None:
    """A stored fsblob CRC32, or ``None`` if absent or malformed."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    value = value.strip().strip('"').lower().removeprefix("0x")
    if len(value) != 8 or any(c not in "0123456789abcdef" for c in value):
        return None
    return int(value, 16)


@dataclass(frozen=True)
class Meta:
    """What a backend's stat says of one stored object (or that it is a directory).

    Attributes:
        size: bytes.
        etag: the ETag without quotes ("" when the store has none).
        version: a token that changes whenever the content does (ETag, version id,
            modification time, file id...): a download is of one version.
        crc32: fsblob's own CRC32, read from the object's metadata or xattr.
        store_crc: a full-object checksum the store keeps that covers the bytes
            (never a COMPOSITE one): (kind, value).
        md5: the MD5 of the whole object (a single-part ETag that is an MD5).
        multipart_etag: (MD5 of the parts' MD5s as hex, number of parts).
        part_size: the multipart object's part size, when the store says it.
        pinned: the backend's ranged reads are pinned to ``version`` (If-Match):
            otherwise the engine re-reads the stat at the end and compares.
        is_dir: a directory (a prefix), not an object.
        info: the raw fields, for messages.
    """

    size: int | None
    etag: str = ""
    version: str = ""
    crc32: int | None = None
    store_crc: tuple[CrcKind, int] | None = None
    md5: str | None = None
    multipart_etag: tuple[str, int] | None = None
    part_size: int | None = None
    pinned: bool = False
    is_dir: bool = False
    info: Mapping[str, Any] = field(default_factory=dict)

    def token(self) -> str:
        """The version of the content, for freshness records of local copies."""
        return json.dumps({"size": self.size, "etag": self.etag, "version": self.version,
                           "crc32": self.crc32}, sort_keys=True)


def etag_meta(etag: str, *, md5: bool) -> dict[str, Any]:
    """The MD5 or multipart-ETag fields a store's ETag gives (``md5``: its ETags are
    MD5s of the bytes: no KMS or customer-key encryption)."""
    etag = etag.strip().strip('"').lower()
    if not md5:
        return {}
    if len(etag) == 32 and _hex(etag):
        return {"md5": etag}
    head, _, count = etag.partition("-")
    if len(head) == 32 and _hex(head) and count.isdigit() and int(count) > 0:
        return {"multipart_etag": (head, int(count))}
    return {}


#: Info fields that change when an object's content changes, across filesystems.
VERSION_FIELDS = ("ETag", "etag", "md5", "LastModified", "last_modified", "mtime",
                  "modificationTime", "created", "generation", "ino", "checksum", "fileId")


def from_info(info: Mapping[str, Any], *, md5_etag: bool = False) -> Meta:
    """A :class:`Meta` from an fsspec ``info()`` dict (any filesystem): its size, a
    version from the fields that change with the content, and an MD5 where the
    filesystem gives one (``md5``, ``Content-MD5``, GCS's ``md5Hash``, or the ETag
    where the backend says it is one)."""
    if info.get("type") == "directory":
        return Meta(None, is_dir=True, info=info)
    etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
    fields: dict[str, Any] = etag_meta(etag, md5=md5_etag)
    for key in ("md5", "Content-MD5", "md5Hash"):
        value = info.get(key)
        if isinstance(value, str) and value:
            digest = value.lower() if len(value) == 32 and _hex(value.lower()) else _b64_hex(value)
            if digest is not None:
                fields = {"md5": digest}
                break
    version = json.dumps({k: str(info[k]) for k in VERSION_FIELDS if info.get(k) is not None},
                         sort_keys=True)
    size = info.get("size")
    return Meta(int(size) if size is not None else None, etag=etag, version=version, info=info,
                **fields)


def _b64_hex(value: str) -> str | None:
    import base64
    import binascii

    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 16 else None


def _hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


# -- checks ---------------------------------------------------------------------------


class RangeHash:
    """The running digest of one range's bytes."""

    def update(self, data: bytes) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class _Crc(RangeHash):
    def __init__(self, kind: CrcKind) -> None:
        self.kind, self.crc, self.length = kind, 0, 0

    def update(self, data: bytes) -> None:
        self.crc = self.kind.update(data, self.crc)
        self.length += len(data)


class _Md5(RangeHash):
    def __init__(self) -> None:
        self.md5 = hashlib.md5()

    def update(self, data: bytes) -> None:
        self.md5.update(data)


class _PartMd5s(RangeHash):
    """Per-part MD5s of a range that starts on a part boundary."""

    def __init__(self, part_size: int) -> None:
        self.part_size, self._current, self._left = part_size, hashlib.md5(), part_size
        self.digests: list[bytes] = []

    def update(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            take = min(self._left, len(view))
            self._current.update(view[:take])
            view, self._left = view[take:], self._left - take
            if not self._left:
                self.digests.append(self._current.digest())
                self._current, self._left = hashlib.md5(), self.part_size

    def finish(self) -> list[bytes]:
        if self._left != self.part_size:
            self.digests.append(self._current.digest())
            self._current, self._left = hashlib.md5(), self.part_size
        return self.digests


class _Nothing(RangeHash):
    def update(self, data: bytes) -> None:
        pass


class Check:
    """One way to check a download's bytes. ``ranged``: it can be checked over
    parallel ranges in one read (a whole-object MD5 cannot)."""

    name = "size only"
    ranged = True
    verifies = False

    def hasher(self) -> RangeHash:
        return _Nothing()

    def ranges(self, size: int, part: int) -> list[tuple[int, int]]:
        return [(start, min(start + part, size)) for start in range(0, size, part)] or [(0, 0)]

    def verify(self, hashes: Sequence[RangeHash], what: str) -> str:
        """Raise :class:`RangeMismatch` if the bytes do not match; return what was checked."""
        return self.name


@dataclass
class CrcCheck(Check):
    kind: CrcKind
    expected: int
    source: str
    ranged = True
    verifies = True

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{self.source} {self.kind.name}"

    def hasher(self) -> RangeHash:
        return _Crc(self.kind)

    def verify(self, hashes: Sequence[RangeHash], what: str) -> str:
        got = self.kind.of_ranges((h.crc, h.length) for h in hashes)  # type: ignore[attr-defined]
        if got != self.expected:
            raise RangeMismatch(f"the bytes received for {what} do not match {self.name} "
                                f"({got:#x} != {self.expected:#x})")
        return self.name


@dataclass
class Md5Check(Check):
    expected: str
    name = "the MD5 ETag"
    ranged = False
    verifies = True

    def hasher(self) -> RangeHash:
        return _Md5()

    def verify(self, hashes: Sequence[RangeHash], what: str) -> str:
        digest = hashes[0].md5.hexdigest()  # type: ignore[attr-defined]
        if len(hashes) != 1 or digest != self.expected:
            raise RangeMismatch(f"the bytes received for {what} do not match the store's MD5 "
                                f"ETag ({digest} != {self.expected})")
        return self.name


@dataclass
class PartsCheck(Check):
    """A multipart ETag: the MD5 of the parts' MD5s, recomputed from per-part MD5s
    taken as the bytes stream past (ranges start on part boundaries). ``sure``:
    the store told the part size; a guessed one that does not match says "not
    verified" rather than refusing an object it cannot judge."""

    expected: str
    count: int
    part_size: int
    sure: bool
    ranged = True
    verifies = True

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"the multipart ETag (MD5 of {self.count} part MD5s)"

    def hasher(self) -> RangeHash:
        return _PartMd5s(self.part_size)

    def ranges(self, size: int, part: int) -> list[tuple[int, int]]:
        step = max(1, part // self.part_size) * self.part_size
        return super().ranges(size, step)

    def verify(self, hashes: Sequence[RangeHash], what: str) -> str:
        digests = [d for h in hashes for d in h.finish()]  # type: ignore[attr-defined]
        got = hashlib.md5(b"".join(digests)).hexdigest()
        if len(digests) == self.count and got == self.expected:
            return self.name
        mismatch = (f"the bytes received for {what} do not match the store's multipart ETag "
                    f"({got}-{len(digests)} != {self.expected}-{self.count}")
        if self.sure:
            raise RangeMismatch(mismatch + ")")
        # A guessed part size: damage, or another part size? The first time, read again;
        # the same bytes twice are the object's, of a part size fsblob cannot know.
        key = (what, self.expected)
        with _SUSPECT_LOCK:
            seen = _SUSPECT.pop(key, None)
            if seen != got:
                if len(_SUSPECT) > 1000:
                    _SUSPECT.clear()
                _SUSPECT[key] = got
        if seen != got:
            raise RangeMismatch(mismatch + f" for parts of {self.part_size} bytes, a guess: "
                                "reading again to tell damage from another part size)")
        log.warning("%s: not verified: the same bytes twice do not match its multipart ETag "
                    "for parts of %d bytes, and the store does not tell the part size", what,
                    self.part_size)
        return "size only (a multipart ETag of unknown part size)"


_SUSPECT: dict[tuple[str, str], str] = {}
_SUSPECT_LOCK = threading.Lock()


def choose(meta: Meta, *, fsblob_part: int | None = None) -> Check:
    """The check a download of ``meta``'s object makes (see the module docstring)."""
    if meta.crc32 is not None:
        return CrcCheck(CRC32, meta.crc32, "fsblob's")
    if meta.store_crc is not None:
        return CrcCheck(meta.store_crc[0], meta.store_crc[1], "the store's full-object")
    if meta.multipart_etag is not None and meta.size:
        md5, count = meta.multipart_etag
        if meta.part_size:
            return PartsCheck(md5, count, meta.part_size, True)
        for part in (fsblob_part, *COMMON_PART_SIZES):
            if part and (count - 1) * part < meta.size <= count * part:
                return PartsCheck(md5, count, part, False)
    if meta.md5 is not None:
        return Md5Check(meta.md5)
    return Check()


# -- uploads --------------------------------------------------------------------------


@dataclass(frozen=True)
class FileDigest:
    """A local file's CRC32, and each part's CRC32 and MD5, from one read."""

    size: int
    crc32: int
    parts: tuple[tuple[int, bytes, int], ...]  # (crc32, md5 digest, length) per part

    @property
    def multipart_etag(self) -> str:
        return f"{hashlib.md5(b''.join(md5 for _, md5, _ in self.parts)).hexdigest()}-{len(self.parts)}"

    @property
    def md5(self) -> str:
        """The whole file's MD5 (one part only)."""
        assert len(self.parts) == 1
        return self.parts[0][1].hex()


def digest_file(path: str, part_size: int | None = None, threads: int = 4, *,
                md5: bool = True) -> FileDigest:
    """Read ``path`` once: its CRC32, and per ``part_size`` part (default: one part)
    the CRC32 and (unless ``md5`` is false: ``b""``) MD5, parts hashed in threads
    (zlib and hashlib let go of the GIL)."""
    size = os.path.getsize(path)
    part = part_size or max(size, 1)
    spans = [(start, min(part, size - start)) for start in range(0, size, part)] or [(0, 0)]

    def one(span: tuple[int, int]) -> tuple[int, bytes, int]:
        start, length = span
        crc, md5s, left = 0, hashlib.md5() if md5 else None, length
        with open(path, "rb", buffering=0) as f:
            f.seek(start)
            while left > 0:
                data = f.read(min(MiB, left))  # 1 MiB held per thread: trees hash many at once
                if not data:
                    raise RangeMismatch(f"{path} shrank while it was being uploaded")
                crc, left = CRC32.update(data, crc), left - len(data)
                if md5s is not None:
                    md5s.update(data)
        return crc, md5s.digest() if md5s is not None else b"", length

    if len(spans) == 1:
        parts = [one(spans[0])]
    else:
        with ThreadPoolExecutor(min(threads, len(spans)), thread_name_prefix="fsblob-hash") as pool:
            parts = list(pool.map(one, spans))
    whole = CRC32.of_ranges((crc, length) for crc, _, length in parts)
    return FileDigest(size, whole, tuple(parts))


def hash_span(path: str, start: int, length: int) -> tuple[int, bytes]:
    """The CRC32 and MD5 of ``length`` bytes of ``path`` from ``start`` (a part's,
    just before it is sent)."""
    crc, md5, left = 0, hashlib.md5(), length
    fd = os.open(path, os.O_RDONLY)
    try:
        while left > 0:
            data = os.pread(fd, min(MiB, left), start + length - left)
            if not data:
                raise RangeMismatch(f"{path} shrank while it was being uploaded")
            crc, left = CRC32.update(data, crc), left - len(data)
            md5.update(data)
    finally:
        os.close(fd)
    return crc, md5.digest()


def composite_crc32(digest: FileDigest) -> int:
    """S3's COMPOSITE CRC32 of a multipart object: the CRC32 of the parts' CRC32s."""
    return CRC32.update(b"".join(crc.to_bytes(4, "big") for crc, _, _ in digest.parts), 0)
