"""Uploads to S3 streamed from the file, in bounded memory.

s3fs's ``put_file`` reads a file under 100 MiB into memory whole and sends larger
ones as 50 MiB parts, ten held in memory at once (577 MiB of RSS for a 256 MiB
file, measured). fsblob instead hands botocore a seekable window on the file, so
aiohttp streams it: one ``PutObject`` below ``multipart_threshold``, and from it
on a multipart upload whose parts (``multipart_chunksize``) are windows too,
``max_concurrency`` in flight (see :class:`fsblob.chunks.TransferSettings`).

Integrity: botocore sends a CRC32 of every ``PutObject`` and part body, which S3
checks on arrival. A multipart upload is created as a ``FULL_OBJECT`` CRC32
upload: fsblob computes each part's CRC32 from the bytes it reads, combines them
into the whole file's CRC32, sends that with ``CompleteMultipartUpload`` (S3
refuses to complete an object whose bytes do not match it) and compares it with
the checksum the store then reports. A failed upload is aborted.

Calls go straight to s3fs's aiobotocore client, outside s3fs's retry loop,
which would resend a half-read body; fsblob's engine retries the whole upload.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import mimetypes
import os
from typing import Any

from fsspec.callbacks import Callback

from fsblob import stall
from fsblob.backends import watch
from fsblob.chunks import CRC32, RangeMismatch, TransferSettings, s3_checksum_b64

log = logging.getLogger("fsblob")

MiB = 2**20
SINGLE_PUT_LIMIT = 5 * 2**30  # S3's PutObject limit
MIN_PART = 5 * MiB  # S3's smallest part (but the last)
MAX_PARTS = 10_000


class FileWindow(io.RawIOBase):
    """A seekable, read-only view of ``length`` bytes of a file from ``start``.

    botocore takes its Content-Length from ``len()``, hashes the body and seeks
    back (on plain http), and rewinds it to retry; aiohttp then streams it. No
    ``fileno()``, or aiohttp would size the whole file.
    """

    def __init__(self, path: str, start: int, length: int, callback: Callback) -> None:
        super().__init__()
        self._fd = os.open(path, os.O_RDONLY)
        self._start, self._length, self._pos, self._reported = start, length, 0, 0
        self._callback = callback

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, base + offset)
        self._report()
        return self._pos

    def __len__(self) -> int:
        return max(self._length - self._pos, 0)

    def __bool__(self) -> bool:  # botocore tests "if body"; an exhausted window is still a body
        return True

    def read(self, size: int | None = -1) -> bytes:
        size = len(self) if size is None or size < 0 else min(size, len(self))
        data = os.pread(self._fd, size, self._start + self._pos) if size else b""
        self._pos += len(data)
        self._report()
        return data

    def _report(self) -> None:
        """Progress counts the bytes handed to the connection, and never goes back.

        botocore reads the whole body in the event loop's thread to checksum and
        sign it (over plain http), rewinding it after each pass; nothing is sent
        then. aiohttp sends the body by reading it in executor threads, where no
        event loop runs: only those reads are counted, up to the furthest position
        reached, so a rewind never moves the bar back.
        """
        try:
            asyncio.get_running_loop()
            return  # a pass of botocore's in the loop's thread: not on the wire
        except RuntimeError:
            pass
        sent = min(self._pos, self._length)
        if sent > self._reported:
            self._callback.relative_update(sent - self._reported)
            self._reported = sent

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def put_file(fs: Any, lpath: str, rpath: str, callback: Callback, *,
             settings: TransferSettings | None = None) -> None:
    """Upload ``lpath`` to ``rpath`` on the s3fs filesystem ``fs``, streamed; in
    parts from ``settings.multipart_threshold`` on (default settings if ``None``)."""
    watch.run(fs, _put_file, fs, lpath, rpath, callback, settings or TransferSettings())
    fs.invalidate_cache(rpath)


async def _put_file(fs: Any, lpath: str, rpath: str, callback: Callback,
                    settings: TransferSettings) -> None:
    from s3fs.errors import translate_boto_error

    bucket, key, _ = fs.split_path(rpath)
    size = os.path.getsize(lpath)
    callback.set_size(size)
    extra = {}
    content_type, _ = mimetypes.guess_type(lpath)
    if content_type:
        extra["ContentType"] = content_type
    await fs.set_session()
    s3 = await fs.get_s3(bucket)
    part_size = max(settings.part_size(size), MIN_PART)
    try:
        if size <= SINGLE_PUT_LIMIT and (size < settings.multipart_threshold or size <= part_size):
            with FileWindow(lpath, 0, size, callback) as body:
                await s3.put_object(Bucket=bucket, Key=key, Body=body, **extra)
        else:
            await _put_multipart(s3, bucket, key, lpath, size, callback, part_size,
                                 settings.max_concurrency, extra)
    except RangeMismatch:
        raise
    except Exception as exc:
        translated = translate_boto_error(exc)  # ClientError -> FileNotFoundError etc., as s3fs does
        if translated is exc:
            raise
        raise translated from exc


async def _put_multipart(s3: Any, bucket: str, key: str, lpath: str, size: int,
                         callback: Callback, part_size: int, in_flight: int,
                         extra: dict[str, str]) -> None:
    while math.ceil(size / part_size) > MAX_PARTS:
        part_size *= 2
    upload = await s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="CRC32",
                                              ChecksumType="FULL_OBJECT", **extra)
    upload_id = upload["UploadId"]
    slots = asyncio.Semaphore(in_flight)
    crcs: dict[int, tuple[int, int]] = {}

    async def send(number: int) -> dict[str, Any]:
        start = (number - 1) * part_size
        length = min(part_size, size - start)
        async with slots:
            # the part's CRC32, in a thread (zlib lets go of the GIL), given to botocore
            # so that it does not hash the part again in the event loop; S3 checks it
            crc = await asyncio.to_thread(_crc32_of, lpath, start, length)
            with FileWindow(lpath, start, length, callback) as body:
                answer = await s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id,
                                              PartNumber=number, Body=body,
                                              ChecksumCRC32=s3_checksum_b64(crc))
        crcs[number] = (crc, length)
        return {"PartNumber": number, "ETag": answer["ETag"], "ChecksumCRC32": s3_checksum_b64(crc)}

    tasks = [asyncio.ensure_future(send(n)) for n in range(1, math.ceil(size / part_size) + 1)]
    try:
        parts = await asyncio.gather(*tasks)
        whole = s3_checksum_b64(CRC32.of_ranges(crcs[n] for n in sorted(crcs)))
        await s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts},
            ChecksumCRC32=whole, ChecksumType="FULL_OBJECT", MpuObjectSize=size)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:  # a budget of its own, also after a stall
            short = stall.limits().cleanup
            await asyncio.wait_for(
                s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id),
                short.stall + short.connect)
        except Exception as exc:  # the upload's own error is the one to raise
            log.warning("could not abort multipart upload of %s/%s: %s", bucket, key,
                        type(exc).__name__)
        raise
    await _check_stored(s3, bucket, key, size, whole)


def _crc32_of(path: str, start: int, length: int) -> int:
    """The CRC32 of ``length`` bytes of a file from ``start``, read 1 MiB at a time."""
    crc = 0
    with open(path, "rb", buffering=0) as f:
        f.seek(start)
        while length > 0:
            data = f.read(min(MiB, length))
            if not data:
                raise RangeMismatch(f"{path} shrank while it was being uploaded")
            crc, length = CRC32.update(data, crc), length - len(data)
    return crc


async def _check_stored(s3: Any, bucket: str, key: str, size: int, crc: str) -> None:
    """Compare what the store now holds with the file: size, and the full-object
    CRC32 where the store reports one. (S3 checks the CRC32 sent with
    ``CompleteMultipartUpload`` itself; moto does not, but computes the stored
    object's checksum from its bytes, so this catches a bad store as well.)"""
    head = await s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    stored = head.get("ChecksumCRC32")
    if head.get("ContentLength") != size or (stored is not None and stored != crc):
        raise RangeMismatch(
            f"s3://{bucket}/{key} holds {head.get('ContentLength')} bytes with CRC32 {stored} "
            f"after the upload; the file has {size} bytes with CRC32 {crc}")
