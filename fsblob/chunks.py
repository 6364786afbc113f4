"""Parallel byte ranges and multipart parts, bounded in memory; CRCs that combine.

A real object store gives each connection tens of MB/s and tens of ms to the
first byte; a client wins by running several connections at once. Above
``multipart_threshold`` fsblob downloads an object as concurrent byte-range
reads, ``max_concurrency`` in flight, each written at its offset into the
(hidden, temporary) destination file (:func:`fetch`); S3 and OSS uploads go as
multipart uploads with as many parts in flight (see the backends). Ranges and
parts are sized so that each connection gets about one
(:meth:`TransferSettings.part_size`).

On moto (the test and benchmark S3 server) every ranged GET costs a read of the
whole object (a 1-byte range of 128 MiB: 108 ms; of 1 KiB: 8 ms), so on bare
loopback ranges lose to one stream there; real S3 serves a range for its bytes.

This module names no store: a backend hands :func:`fetch` its reader of one
range (S3 ``GetObject`` with ``Range`` and ``If-Match``, OSS ``get_object``,
WebHDFS ``OPEN`` with offset and length, fsspec's ranged ``cat_file``), and the
engine hands it a hasher per range (see :mod:`fsblob.integrity`): each range's
digest is taken as its bytes stream past, so the bytes are read once. A range
that fails alone (a reset connection, a short answer) is read again alone; one
whose object changed (:class:`ObjectChanged`) fails the download.
"""

from __future__ import annotations

import base64
import contextvars
import logging
import os
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar

from fsspec.callbacks import Callback

from fsblob.errors import BlobConfigError, BlobIntegrityError

log = logging.getLogger("fsblob")

MiB = 2**20
#: Bytes a streamed range reader holds at once.
PIECE = MiB

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


class RangeMismatch(BlobIntegrityError):
    """A range or the whole object did not match what the store says it holds
    (short range, changed object, checksum mismatch); retried like any
    :class:`~fsblob.errors.BlobIntegrityError`."""


# -- settings -------------------------------------------------------------------------


@dataclass(frozen=True)
class TransferSettings:
    """How large transfers are split, named as boto3's ``TransferConfig`` names it.

    Attributes:
        multipart_threshold: objects of this many bytes or more are transferred
            in parts (uploads, on S3) or ranges (downloads, on every store with
            ranged reads). Default 8 MiB.
        multipart_chunksize: the smallest part or range. Default 8 MiB. Parts
            and ranges grow up to 8 times this so that each connection gets about
            one (see :meth:`part_size`); S3 parts are at least 5 MiB, and grow so
            that an object has at most 10,000.
        max_concurrency: parts or ranges in flight at once. Default 10.
        one_stream_rate: bytes per second: a download whose first read arrived
            at least this fast, and whose whole would take under a second at that
            rate, is read in one stream although it could be split (see
            :meth:`streams`). Default 512 MiB/s; 0: never.
    """

    multipart_threshold: int = 8 * MiB
    multipart_chunksize: int = 8 * MiB
    max_concurrency: int = 10
    one_stream_rate: int = 512 * MiB

    #: The ``blob_manager_config`` keys read here.
    KEYS = ("multipart_threshold", "multipart_chunksize", "max_concurrency", "one_stream_rate")

    @classmethod
    def from_config(cls, config: Mapping[str, Any], backend: str) -> TransferSettings:
        """Read the three keys (absent ones keep their defaults) from a config.

        Sizes are whole numbers of bytes or strings such as ``"8MiB"``, ``"16 MB"``
        or ``"512KiB"`` (KB/MB/GB count in powers of 1024, as the AWS CLI does).

        Raises:
            BlobConfigError: a value is malformed or out of range; the message
                names the key, the backend and what is accepted.
        """
        default = cls()
        threshold = _size(config, "multipart_threshold", backend, default.multipart_threshold)
        chunksize = _size(config, "multipart_chunksize", backend, default.multipart_chunksize)
        if chunksize < 1:
            raise BlobConfigError(
                f"{backend}: blob_manager_config key 'multipart_chunksize' must be at least "
                f"1 byte, not {config['multipart_chunksize']!r}; e.g. '8MiB'"
            )
        value = config.get("max_concurrency", default.max_concurrency)
        concurrency = 0
        if isinstance(value, int) and not isinstance(value, bool):
            concurrency = value
        elif isinstance(value, str) and value.strip().isdigit():
            concurrency = int(value)
        if not 1 <= concurrency <= 64:
            raise BlobConfigError(
                f"{backend}: blob_manager_config key 'max_concurrency' must be a whole number "
                f"from 1 to 64 (parts or ranges in flight), not {value!r}"
            )
        one_stream = _size(config, "one_stream_rate", backend, default.one_stream_rate)
        return cls(threshold, chunksize, concurrency, one_stream)

    def part_size(self, size: int) -> int:
        """Bytes per range or part for an object of ``size`` bytes: enough that each
        of ``max_concurrency`` connections gets about one (one wave: no connection
        waits for a second while others idle), but at least ``multipart_chunksize``
        and at most 8 times it, rounded up to a whole KiB."""
        share = -(-size // self.max_concurrency)
        chunk = min(max(share, self.multipart_chunksize), 8 * self.multipart_chunksize)
        return -(-chunk // 1024) * 1024

    def splits(self, size: int | None) -> bool:
        """Whether an object of ``size`` bytes goes in parts (and more than one)."""
        return size is not None and size >= self.multipart_threshold and (
            size > self.multipart_chunksize) and self.max_concurrency > 1

    def first_read_within(self, first: int) -> float:
        """Seconds after which reading the ``first`` bytes of a download can stop:
        once they can no longer arrive at ``one_stream_rate``, :meth:`streams` says
        no whatever comes next, and the ranges need not wait for the rest of them
        (at 12 MiB/s the first MiB takes 83 ms; this is 2 ms)."""
        return first / self.one_stream_rate if self.one_stream_rate > 0 else 0.0

    def streams(self, size: int, rate: float | None) -> bool:
        """Whether a download of ``size`` bytes whose first read arrived at ``rate``
        bytes per second is read in one stream although it :meth:`splits`: a link
        this fast (the store on this host, or a fast LAN) brings the whole within a
        second, so more connections could save less than that second, and each
        costs the store a request (some, moto among them, read the whole object
        for every range)."""
        return rate is not None and 0 < self.one_stream_rate <= rate and size <= rate


def _size(config: Mapping[str, Any], key: str, backend: str, default: int) -> int:
    value = config.get(key, default)
    number = -1
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and (match := _SIZE.match(value)):
        amount, unit, tail = match.groups()
        if not (tail and tail.lower() == "i"):  # "8Mi" without the B is a typo; say so
            number = int(float(amount) * _UNITS[unit.lower()])
    if number < 0:
        raise BlobConfigError(
            f"{backend}: blob_manager_config key {key!r} must be a size in bytes, as a whole "
            f"number or a string such as '8MiB' or '16MB', not {value!r}"
        )
    return number


# -- CRCs that combine ------------------------------------------------------------------


@dataclass(frozen=True)
class CrcKind:
    """A reflected CRC (init and final XOR all ones), computed in pieces and combined.

    Attributes:
        name: the store's name for it (``"CRC32"``, ``"CRC64NVME"``, ``"CRC64ECMA"``).
        width: bits.
        poly: the reflected polynomial.
        update: ``update(data, crc) -> crc``, the CRC of what came before ``data``
            followed by ``data``.
    """

    name: str
    width: int
    poly: int
    update: Callable[[bytes, int], int]

    def combine(self, crc1: int, crc2: int, len2: int) -> int:
        """The CRC of A+B from CRC(A), CRC(B) and len(B) (zlib's ``crc32_combine``,
        for any width): CRC(A) times x^(8*len2) modulo the polynomial, XOR CRC(B)."""
        return self._multmod(self._x2nmod(len2, 3), crc1) ^ crc2

    def of_ranges(self, crcs: Iterable[tuple[int, int]]) -> int:
        """The CRC of consecutive ranges, given each one's (CRC, length)."""
        total: int | None = None
        for crc, length in crcs:
            total = crc if total is None else self.combine(total, crc, length)
        return 0 if total is None else total

    def _multmod(self, a: int, b: int) -> int:
        """a times b modulo the polynomial, both reflected."""
        m, product = 1 << (self.width - 1), 0
        while m:
            if a & m:
                product ^= b
            b = (b >> 1) ^ self.poly if b & 1 else b >> 1
            m >>= 1
        return product

    def _x2nmod(self, n: int, k: int) -> int:
        """x^(n * 2^k) modulo the polynomial."""
        p = 1 << (self.width - 1)  # x^0
        power = 1 << (self.width - 2)  # x^1
        for _ in range(k):
            power = self._multmod(power, power)
        while n:
            if n & 1:
                p = self._multmod(power, p)
            n >>= 1
            power = self._multmod(power, power)
        return p


def _reflect(value: int, width: int) -> int:
    return int(f"{value:0{width}b}"[::-1], 2)


def _crcmod64(poly: int) -> Callable[[bytes, int], int]:
    import crcmod  # a dependency of oss2, with a C extension

    fn = crcmod.mkCrcFun(poly, initCrc=0, xorOut=0xFFFFFFFFFFFFFFFF, rev=True)
    return lambda data, crc: fn(data, crc)


CRC32 = CrcKind("CRC32", 32, 0xEDB88320, lambda data, crc: zlib.crc32(data, crc))


def crc64nvme() -> CrcKind:
    """S3's CRC64NVME (crcmod's table implementation)."""
    return CrcKind("CRC64NVME", 64, _reflect(0xAD93D23594C93659, 64),
                   _crcmod64(0x1AD93D23594C93659))


def crc64ecma() -> CrcKind:
    """OSS's CRC64 (CRC-64/XZ, ECMA-182 reflected), as oss2 computes it."""
    return CrcKind("CRC64ECMA", 64, _reflect(0x42F0E1EBA9EA3693, 64),
                   _crcmod64(0x142F0E1EBA9EA3693))


# -- writing ranges into a file ---------------------------------------------------------


def plan(size: int, chunksize: int) -> list[tuple[int, int]]:
    """Consecutive (start, end) ranges, end exclusive, covering ``size`` bytes."""
    return [(start, min(start + chunksize, size)) for start in range(0, size, chunksize)]


class Window:
    """A range's feed for an answer that may hold the whole object: a server (or a
    cache) that ignores ``Range`` answers 200 with every byte. Given ``whole``
    (the answer has no ``Content-Range`` though a range was asked for), only bytes
    ``start`` to ``end`` are passed on; :attr:`full` says when to stop reading."""

    def __init__(self, feed: Callable[[bytes], None], start: int, end: int, whole: bool) -> None:
        self._feed = feed
        self._skip, self._left = (start, end - start) if whole else (0, None)  # type: tuple[int, int | None]

    @property
    def full(self) -> bool:
        return self._left == 0

    def __call__(self, piece: bytes) -> None:
        if self._skip:
            cut = min(self._skip, len(piece))
            piece, self._skip = piece[cut:], self._skip - cut
        if self._left is not None:
            piece, self._left = piece[:self._left], self._left - min(self._left, len(piece))
        if piece:
            self._feed(piece)


# -- the runner -----------------------------------------------------------------------

#: Tries of one range or part before the transfer fails (it fails alone: the others go on).
PART_TRIES = 3
RANGE_TRIES = PART_TRIES

T = TypeVar("T")


class ObjectChanged(RangeMismatch):
    """The object was replaced while it was being read: the whole download is retried."""


class FileChanged(BlobIntegrityError):
    """A local file of a tree changed while the tree was being uploaded: the bytes
    stored are not those its manifest describes. Not retried (another try would
    send the same manifest with other bytes): nothing is committed, and the caller
    uploads again once nothing is writing to the directory."""

    transient = False


class Share(Callback):
    """One task's progress inside a shared callback (thread-safe), which a failed
    try takes back before the task runs again."""

    def __init__(self, target: Callback, lock: threading.Lock) -> None:
        super().__init__()
        self._target, self._lock, self.sent = target, lock, 0

    def relative_update(self, inc: int | None = 1) -> None:
        with self._lock:  # fsspec callbacks (tqdm) are not thread-safe
            try:
                self._target.relative_update(inc or 0)
            except Exception as exc:  # the caller's own error (an abort): never retried
                exc.fsblob_callback = True  # type: ignore[attr-defined]
                raise
            self.sent += inc or 0

    def take_back(self) -> None:
        with self._lock:
            if self.sent:
                self._target.relative_update(-self.sent)
            self.sent = 0


def run(tasks: Sequence[Callable[[Share], T]], settings: TransferSettings, callback: Callback,
        what: str, name: Callable[[int], str]) -> list[T]:
    """Run ``tasks`` (ranges of a download, parts of an upload), ``max_concurrency``
    at once, each given its :class:`Share` of ``callback``; return their results in
    order. A task that fails with a transient error or a mismatch (a short range, a
    part damaged on the way) runs again alone, up to :data:`PART_TRIES` times; any
    other failure, or :class:`ObjectChanged`, cancels the rest and is raised."""
    from fsblob import stall
    from fsblob.retry import is_transient

    until = stall.limits().retry_until  # the retry deadline bounds these tries too

    lock = threading.Lock()

    def one(index: int) -> T:
        for attempt in range(1, PART_TRIES + 1):
            share = Share(callback, lock)
            try:
                return tasks[index](share)
            except ObjectChanged:
                raise
            except Exception as exc:
                share.take_back()
                pause = 0.1 * 2**attempt
                if (attempt == PART_TRIES or getattr(exc, "fsblob_callback", False)
                        or not (is_transient(exc) or isinstance(exc, RangeMismatch))
                        or (until is not None and time.monotonic() + pause > until)):
                    raise
                log.info("%s: %s failed (%s), trying it again alone", what, name(index),
                         type(exc).__name__)
                time.sleep(pause)
        raise AssertionError("unreachable")

    if len(tasks) <= 1:
        return [one(0)] if tasks else []
    with ThreadPoolExecutor(min(settings.max_concurrency, len(tasks)),
                            thread_name_prefix="fsblob-part") as pool:
        # each in the attempt's context: its limits (fsblob.stall)
        jobs = [pool.submit(contextvars.copy_context().run, one, index)
                for index in range(len(tasks))]
        finished, _ = wait(jobs, return_when=FIRST_EXCEPTION)
        failed = [job for job in finished if job.exception() is not None]
        if failed:
            for job in jobs:
                job.cancel()
            raise failed[0].exception()  # type: ignore[misc]
        return [job.result() for job in jobs]


#: ``read(start, end, feed)``: send the bytes ``start`` to ``end`` (exclusive) of one
#: version of the object to ``feed``, in pieces; raise :class:`ObjectChanged` if the
#: version is gone.
Reader = Callable[[int, int, Callable[[bytes], None]], None]


def fetch(read: Reader, lpath: str, ranges: list[tuple[int, int]], hasher: Callable[[], Any],
          settings: TransferSettings, callback: Callback, what: str) -> list[Any]:
    """Read ``ranges`` with ``read`` (through :func:`run`), each written at its offset
    into the existing file ``lpath`` and hashed by its own ``hasher()`` as it streams
    past; return the hashers, in order."""
    callback.set_size(sum(end - start for start, end in ranges))
    # No O_TRUNC (the engine made the file, empty): on ext4 a file truncated and
    # then rewritten is flushed to disk at close. A new file gets what the umask
    # leaves of 0o666, as cp gives one.
    fd = os.open(lpath, os.O_WRONLY | os.O_CREAT, 0o666)

    def task(start: int, end: int) -> Callable[[Share], Any]:
        def read_one(share: Share) -> Any:
            received, digest = 0, hasher()

            def feed(data: bytes) -> None:
                nonlocal received
                if received + len(data) > end - start:
                    raise RangeMismatch(f"{what}: bytes {start}-{end - 1}: the store sent "
                                        "more bytes than the range holds")
                digest.update(data)
                view, offset = memoryview(data), start + received
                while view:
                    written = os.pwrite(fd, view, offset)
                    offset, view = offset + written, view[written:]
                received += len(data)
                share.relative_update(len(data))

            read(start, end, feed)
            if received != end - start:
                raise RangeMismatch(f"{what}: bytes {start}-{end - 1}: received {received} "
                                    f"of {end - start}")
            return digest

        return read_one

    try:
        return run([task(start, end) for start, end in ranges], settings, callback, what,
                   lambda i: f"bytes {ranges[i][0]}-{ranges[i][1] - 1}")
    finally:
        os.close(fd)


def s3_checksum_b64(value: int, kind: CrcKind = CRC32) -> str:
    """A CRC as S3 writes it: big-endian bytes, base64."""
    return base64.b64encode(value.to_bytes(kind.width // 8, "big")).decode()


__all__ = [
    "CRC32",
    "CrcKind",
    "ObjectChanged",
    "RangeMismatch",
    "TransferSettings",
    "crc64ecma",
    "crc64nvme",
    "fetch",
    "plan",
    "run",
    "s3_checksum_b64",
]
