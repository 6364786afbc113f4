"""Uploads to S3 streamed from the file, in bounded memory.

s3fs's ``put_file`` reads a file under 100 MiB into memory whole and sends larger
ones as 50 MiB parts, ten held in memory at once (577 MiB of RSS for a 256 MiB
file, measured). fsblob instead hands botocore a seekable window on the file, so
aiohttp streams it: one ``PutObject`` below ``multipart_threshold``, and from it
on a multipart upload whose parts (``multipart_chunksize``) are windows too,
``max_concurrency`` in flight (see :class:`fsblob.chunks.TransferSettings`).

Integrity, on any S3-compatible store, whatever checksums it keeps: the file is
read once before sending, for its CRC32 (and a single PUT's MD5). The CRC32 goes
in the object's metadata (``x-amz-meta-fsblob-crc32``: fsblob's own checksum,
which every download checks). Each part is hashed (CRC32, MD5) again just before
it is sent, beside the other parts' sends; the parts' CRC32s must combine into
the file's, or the file changed meanwhile. Each body goes with its MD5
(``Content-MD5``) and CRC32, which the store checks on arrival. The upload is verified before it is reported done, by
what does not depend on the store checking anything: the ETag the store answers
for a ``PutObject`` or a part is its MD5 of the bytes it received, compared with
the file's (unless KMS or customer-key encryption makes ETags opaque); a
multipart object's ETag is compared with the MD5 of the parts' MD5s; then (unless
a single ``PutObject`` was answered with the MD5 sent, which already proves the
bytes: one request per small upload) a HEAD compares size, fsblob's CRC32 and the
store's own CRC32 (``FULL_OBJECT`` with the file's, ``COMPOSITE`` with the CRC32
of the parts' CRC32s). A failed upload
is aborted. An error answer keeps the store's code and the operation
(``CompleteMultipartUpload: InvalidPart: ...``).

Calls go straight to s3fs's aiobotocore client, outside s3fs's retry loop,
which would resend a half-read body; fsblob's engine retries the whole upload.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import logging
import math
import mimetypes
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

from fsspec.callbacks import Callback

from fsblob import integrity, stall
from fsblob.backends import watch
from fsblob.chunks import CRC32, RangeMismatch, TransferSettings, run, s3_checksum_b64
from fsblob.errors import BlobIntegrityError, StoreError

T = TypeVar("T")

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
        self.error: Exception | None = None  # what the callback raised

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
            try:
                self._callback.relative_update(sent - self._reported)
            except Exception as exc:  # the HTTP client may swallow it: kept for :func:`_sent`
                self.error = exc
                raise
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
    parts from ``settings.multipart_threshold`` on (default settings if ``None``);
    verified before it returns (see the module docstring)."""
    settings = settings or TransferSettings()
    bucket, key, _ = fs.split_path(rpath)
    size = os.path.getsize(lpath)
    callback.set_size(size)
    part_size = max(settings.part_size(size), MIN_PART)
    while math.ceil(size / part_size) > MAX_PARTS:
        part_size *= 2
    single = size <= SINGLE_PUT_LIMIT and (size < settings.multipart_threshold or size <= part_size)
    # fsblob's CRC32 goes in the object's metadata (a header, so it must be known
    # before sending): one read of the file first. A single PUT's MD5 (Content-MD5) is
    # taken in the same read; a part's MD5 just before the part is sent, beside the
    # other parts' sends (see _part).
    digest = integrity.digest_file(lpath, None if single else part_size, settings.max_concurrency,
                                   md5=single)
    extra: dict[str, Any] = {"Metadata": {integrity.META_KEY: integrity.encode_crc(digest.crc32)}}
    s3 = watch.run(fs, _client, fs, bucket)
    where = f"s3://{bucket}/{key}"
    checked: list[str] = []
    ours: str | None = None  # the ETag the store answered for this upload
    if single:
        content_type, _ = mimetypes.guess_type(lpath)
        if content_type:
            extra["ContentType"] = content_type

        def put(share: Callback) -> str | None:
            with FileWindow(lpath, 0, size, share) as body:
                answer = watch.run(fs, call, "PutObject", where, s3.put_object(
                    Bucket=bucket, Key=key, Body=body, ContentMD5=_b64(digest.parts[0][1]),
                    ChecksumCRC32=s3_checksum_b64(digest.crc32), **extra))
            _check_put(answer, where, digest, checked)
            return answer.get("ETag")

        ours = run([put], settings, callback, where, lambda _: "PutObject")[0]
    else:
        plan = _Plan(lpath, bucket, key, _Known(size, "", digest.crc32), part_size, extra)
        _send_plans(fs, s3, [plan], callback, settings)
        digest = integrity.FileDigest(size, digest.crc32, tuple(
            (r["crc"], r["md5"], r["length"]) for r in plan.results))
        if all(r["md5_etag"] for r in plan.results):
            checked.append(f"{len(plan.results)} part MD5 ETags")
        if plan.etag:
            checked.append("multipart ETag")
        ours = plan.answered
    if not (single and checked == ["MD5 ETag"]):  # a PUT answered with the MD5 sent is checked
        watch.run(fs, _check_stored, s3, bucket, key, digest, checked, ours)
    fs.invalidate_cache(rpath)


def upload(fs: Any, lpath: str, rpath: str, callback: Callback, settings: TransferSettings) -> None:
    """The backend's upload of one file (:attr:`fsblob.store.Store.upload`)."""
    put_file(fs, lpath, rpath, callback, settings=settings)


def _b64(digest: bytes) -> str:
    """Content-MD5: a store that checks it refuses a damaged body before storing it."""
    return base64.b64encode(digest).decode()


async def _client(fs: Any, bucket: str) -> Any:
    await fs.set_session()
    return await fs.get_s3(bucket)


def _check_put(answer: Mapping[str, Any], where: str, digest: integrity.FileDigest,
               checked: list[str]) -> None:
    etag = _md5_etag(answer, answer.get("ETag", ""))
    if etag is not None:
        _compare("PutObject", where, "ETag (the MD5 of the bytes stored)", etag, digest.md5)
        checked[:] = ["MD5 ETag"]


def _md5_etag(answer: Mapping[str, Any], etag: str) -> str | None:
    """The ETag of an answer when it is an MD5 (or an MD5-of-MD5s ``-N``): not under
    KMS or customer-key encryption."""
    if answer.get("ServerSideEncryption") in ("aws:kms", "aws:kms:dsse") or answer.get(
            "SSECustomerAlgorithm"):
        return None
    etag = str(etag).strip().strip('"').lower()
    head = etag.partition("-")[0]
    return etag if len(head) == 32 and all(c in "0123456789abcdef" for c in head) else None


def _compare(operation: str, where: str, what: str, stored: Any, sent: Any) -> None:
    if stored != sent:
        raise RangeMismatch(f"{operation}: {where}: the store's {what} is {stored}, the file "
                            f"sent has {sent}: the bytes were damaged on the way")


async def call(operation: str, where: str, request: Awaitable[T]) -> T:
    """Await one S3 request; a refusal keeps the store's code and the operation."""
    from botocore.exceptions import ClientError

    try:
        return await request
    except ClientError as exc:
        error = store_error(operation, where, exc)
    raise error  # outside the except: the client's error is not its context


def store_error(operation: str, where: str, exc: Any) -> Exception:
    """An S3 error answer as fsblob raises it: ``"<Operation>: <Code>: <message>"``.
    Only a read of a missing object is "not found"; an upload's ``NoSuchUpload``
    is a failed upload."""
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = error.get("Code") or f"HTTP {status}"
    message = f"{operation}: {code}: {error.get('Message') or 'no message'} ({where})"
    if code == "BadDigest":  # the body did not match its Content-MD5: damaged on the way
        return RangeMismatch(message)
    if operation in ("GetObject", "HeadObject") and status == 404 and code != "NoSuchBucket":
        return FileNotFoundError(message)
    if status == 403 or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return PermissionError(message)  # the manager says "access denied" and the fix
    return StoreError(message, operation=operation, code=code, status=status)


async def _check_stored(s3: Any, bucket: str, key: str, digest: integrity.FileDigest,
                        checked: list[str], etag: str | None) -> None:
    """Compare what the store now holds with the file, before the upload is reported
    done: its size, fsblob's CRC32 in its metadata, and the store's own CRC32 where
    it reports one: ``FULL_OBJECT`` (or a single part's) against the file's CRC32,
    ``COMPOSITE`` (``"...-N"``) against the CRC32 of the parts' CRC32s. A store that
    accepted a wrong CRC32 without checking it is caught by the part ETags above.
    ``If-Match`` the ETag the store answered: another upload that replaced the
    object meanwhile is no failure of this one."""
    where = f"s3://{bucket}/{key}"
    try:
        head = await call("HeadObject", where, s3.head_object(
            Bucket=bucket, Key=key, ChecksumMode="ENABLED", **({"IfMatch": etag} if etag else {})))
    except StoreError as exc:
        if exc.http_status != 412:
            raise
        log.info("%s was replaced by another upload right after this one (checked: %s)",
                 where, ", ".join(checked) or "nothing")
        return
    if head.get("ContentLength") != digest.size:
        raise RangeMismatch(f"{where} holds {head.get('ContentLength')} bytes after the upload; "
                            f"the file has {digest.size}")
    stored_meta = integrity.decode_crc((head.get("Metadata") or {}).get(integrity.META_KEY))
    if stored_meta is None:
        log.warning("%s: the store did not keep fsblob's checksum (metadata %s); downloads "
                    "fall back to the store's own checks", where, integrity.META_KEY)
    elif stored_meta != digest.crc32:
        raise RangeMismatch(f"{where}: another upload replaced the object meanwhile (its "
                            f"fsblob CRC32 is {stored_meta:08x}, this file's {digest.crc32:08x})")
    stored = head.get("ChecksumCRC32")
    if stored:
        composite = "-" in stored or head.get("ChecksumType") == "COMPOSITE"
        if composite:
            expected = (f"{s3_checksum_b64(integrity.composite_crc32(digest))}"
                        f"-{len(digest.parts)}")
            if len(digest.parts) == 1:
                expected = s3_checksum_b64(digest.crc32)
            if stored.partition("-")[0] != expected.partition("-")[0]:
                raise RangeMismatch(f"{where} holds COMPOSITE CRC32 {stored} after the upload; "
                                    f"the file's parts give {expected}")
            checked.append("COMPOSITE CRC32")
        else:
            _compare("HeadObject", where, "full-object CRC32", stored, s3_checksum_b64(digest.crc32))
            checked.append("FULL_OBJECT CRC32")
    log.info("uploaded %s (%d bytes), checked: %s", where, digest.size,
             ", ".join(["size", *checked]) if checked else "size only")


def upload_files(fs: Any, files: Sequence[tuple[str, str, Any]], callback: Callback,
                 settings: TransferSettings) -> dict[str, str]:
    """Upload many files (a tree's) whose size, MD5 and CRC32 the caller already
    knows and keeps (``(lpath, rpath, entry)``, ``entry`` with ``size``, ``md5``
    hex and ``crc32``: a manifest's), under one budget of ``max_concurrency``
    requests, as s3transfer does: every file's parts and single PUTs are tasks of
    one :func:`fsblob.chunks.run` (a failed one sent again alone).

    A file in one ``PutObject`` is only read to be sent, with the known MD5 as
    Content-MD5 (small files in groups of :data:`SMALL_GROUP` concurrent PUTs, one
    task each); a part is hashed (MD5, CRC32) just before it is sent (the page
    cache then serves its send), with its MD5 as Content-MD5. The store's
    ETag of each PUT or part is compared with that MD5, and a multipart object's
    ETag (from CompleteMultipartUpload) with the MD5 of its parts' MD5s; the
    parts' CRC32s must combine into the known CRC32, or the file changed after it
    was hashed. No fsblob metadata (the manifest keeps the checksum) and no HEAD:
    returns ``{rpath: ETag}`` of the objects whose ETag is an MD5 (or MD5 of MD5s),
    for the caller's one listing to compare. Unfinished multipart uploads are
    aborted on failure."""
    s3: Any = None
    plans = []
    # A file goes in one PUT (checked by the MD5 already known: no hashing of
    # parts) unless it is larger than half of what each connection carries of
    # the whole batch: the connections then stay as busy as with parts (the last
    # wave ends at most half a share late), and only files that would hold the
    # batch up are split.
    share = sum(entry.size for _, _, entry in files) / (2 * settings.max_concurrency)
    for lpath, rpath, entry in sorted(files, key=lambda f: -f[2].size):  # largest first
        bucket, key, _ = fs.split_path(rpath)
        part_size = max(settings.part_size(entry.size), MIN_PART)
        while math.ceil(entry.size / part_size) > MAX_PARTS:
            part_size *= 2
        single = entry.size <= SINGLE_PUT_LIMIT and (
            entry.size < settings.multipart_threshold or entry.size <= part_size
            or entry.size <= share)
        plans.append(_Plan(lpath, bucket, key, entry, None if single else part_size))
        if s3 is None:
            s3 = watch.run(fs, _client, fs, bucket)
    if not plans:
        return {}
    callback.set_size(sum(p.entry.size for p in plans))
    _send_plans(fs, s3, plans, callback, settings)
    return {f"{p.bucket}/{p.key}": p.etag for p in plans if p.etag}


def _send_plans(fs: Any, s3: Any, plans: Sequence[_Plan], callback: Callback,
                settings: TransferSettings) -> None:
    """Every plan's parts and PUTs as tasks of one :func:`fsblob.chunks.run` (a
    failed one sent again alone), the multipart uploads created before and
    completed after; unfinished ones aborted on failure."""
    multi = [p for p in plans if p.part_size is not None]
    try:
        ids = run([_create(fs, s3, p) for p in multi], settings, Callback(),
                  "tree upload", lambda i: f"CreateMultipartUpload of {multi[i].where}")
        for p, upload_id in zip(multi, ids):
            p.upload_id = upload_id
        tasks: list[Callable[[Callback], Any]] = []  # the largest first
        names: list[str] = []
        firsts = []  # each multipart file's first part's index
        for p in multi:
            firsts.append(len(tasks))
            step = p.part_size
            assert step is not None
            for number, start in enumerate(range(0, p.entry.size, step), 1):
                tasks.append(_part(fs, s3, p, number, start, min(step, p.entry.size - start)))
                names.append(f"part {number} of {p.where}")
        small = [p for p in plans if p.part_size is None and p.entry.size <= SMALL_FILE]
        for p in plans:
            if p.part_size is None and p.entry.size > SMALL_FILE:
                tasks.append(_single(fs, s3, p))
                names.append(p.where)
        for i in range(0, len(small), SMALL_GROUP):  # small files: a group a task
            tasks.append(_small(fs, s3, small[i:i + SMALL_GROUP]))
            names.append(f"{len(small[i:i + SMALL_GROUP])} files from {small[i].where}")
        sent = run(tasks, settings, callback, "tree upload", lambda i: names[i])
        for p, first in zip(multi, firsts):
            p.results = sent[first:first + math.ceil(p.entry.size / p.part_size)]
        run([_complete(fs, s3, p) for p in multi], settings, Callback(), "tree upload",
            lambda i: f"CompleteMultipartUpload of {multi[i].where}")
    except BaseException:
        with stall.cleanup():  # a budget of its own, also after a stall
            for p in multi:
                if p.upload_id is not None and not p.completed:
                    try:
                        watch.run(fs, s3.abort_multipart_upload, Bucket=p.bucket, Key=p.key,
                                  UploadId=p.upload_id)
                    except Exception as exc:  # the upload's own error is the one to raise
                        log.warning("could not abort multipart upload of %s: %s", p.where,
                                    type(exc).__name__)
        raise
    for p in plans:
        fs.invalidate_cache(f"{p.bucket}/{p.key}")


class _Known(NamedTuple):
    """What is known of a file before it is sent (a manifest entry has these)."""

    size: int
    md5: str  # hex; "" when only its parts are sent (each hashed just before)
    crc32: int


class _Plan:
    """One file to send: where it goes, and what its sends answered."""

    def __init__(self, lpath: str, bucket: str, key: str, entry: Any,
                 part_size: int | None, extra: Mapping[str, Any] | None = None) -> None:
        self.lpath, self.bucket, self.key, self.entry = lpath, bucket, key, entry
        self.part_size = part_size
        self.where = f"s3://{bucket}/{key}"
        self.upload_id: str | None = None
        self.results: list[dict[str, Any]] = []
        self.etag = ""  # the store's ETag when it is an MD5, checked
        self.answered: str | None = None  # the ETag the store answered, whatever it is
        self.completed = False
        content_type, _ = mimetypes.guess_type(lpath)
        self.extra = {**({"ContentType": content_type} if content_type else {}), **(extra or {})}


#: Files up to this size go in groups of :data:`SMALL_GROUP`, read whole and sent
#: concurrently by one task (a thread per request costs more than the request).
SMALL_FILE = 256 * 1024
SMALL_GROUP = 16


def _small(fs: Any, s3: Any, group: list[_Plan]) -> Callable[[Callback], None]:
    """One task of small files, each one ``PutObject`` of its bytes with the known
    MD5 as Content-MD5; on a retry only those not yet stored are sent again."""
    left = list(group)

    async def put(p: _Plan) -> None:
        with open(p.lpath, "rb") as f:
            data = f.read(p.entry.size + 1)
        if len(data) != p.entry.size:
            raise RangeMismatch(f"{p.lpath} changed size while it was being uploaded")
        answer = await call("PutObject", p.where, s3.put_object(
            Bucket=p.bucket, Key=p.key, Body=data, ContentMD5=_b64(bytes.fromhex(p.entry.md5)),
            ChecksumCRC32=s3_checksum_b64(p.entry.crc32), **p.extra))
        etag = _md5_etag(answer, answer.get("ETag", ""))
        if etag is not None:
            _compare("PutObject", p.where, "ETag (the MD5 of the bytes stored)", etag, p.entry.md5)
            p.etag = etag

    async def put_all() -> list[Any]:
        return await asyncio.gather(*(put(p) for p in left), return_exceptions=True)

    def send(share: Callback) -> None:
        outcomes = watch.run(fs, put_all)
        failed = [(p, o) for p, o in zip(left, outcomes) if isinstance(o, BaseException)]
        share.relative_update(sum(p.entry.size for p, o in zip(left, outcomes)
                                  if not isinstance(o, BaseException)))
        left[:] = [p for p, _ in failed]
        if failed:
            raise failed[0][1]

    return send


def _create(fs: Any, s3: Any, p: _Plan) -> Callable[[Callback], str]:
    def create(_: Callback) -> str:
        answer = watch.run(fs, call, "CreateMultipartUpload", p.where,
                           s3.create_multipart_upload(
                               Bucket=p.bucket, Key=p.key, ChecksumAlgorithm="CRC32",
                               ChecksumType="FULL_OBJECT", **p.extra))
        return answer["UploadId"]

    return create


def _single(fs: Any, s3: Any, p: _Plan) -> Callable[[Callback], dict[str, Any]]:
    def put(share: Callback) -> dict[str, Any]:
        with FileWindow(p.lpath, 0, p.entry.size, share) as body:
            answer = _sent(body, lambda: watch.run(fs, call, "PutObject", p.where, s3.put_object(
                Bucket=p.bucket, Key=p.key, Body=body,
                ContentMD5=_b64(bytes.fromhex(p.entry.md5)),
                ChecksumCRC32=s3_checksum_b64(p.entry.crc32), **p.extra)))
        etag = _md5_etag(answer, answer.get("ETag", ""))
        if etag is not None:  # a file changed since it was hashed fails here (or BadDigest)
            _compare("PutObject", p.where, "ETag (the MD5 of the bytes stored)", etag, p.entry.md5)
            p.etag = etag
        return {}

    return put


def _part(fs: Any, s3: Any, p: _Plan, number: int, start: int,
          length: int) -> Callable[[Callback], dict[str, Any]]:
    def send(share: Callback) -> dict[str, Any]:
        crc, md5 = integrity.hash_span(p.lpath, start, length)
        with FileWindow(p.lpath, start, length, share) as body:
            answer = _sent(body, lambda: watch.run(
                fs, call, f"UploadPart {number}", p.where, s3.upload_part(
                    Bucket=p.bucket, Key=p.key, UploadId=p.upload_id, PartNumber=number,
                    Body=body, ContentMD5=_b64(md5), ChecksumCRC32=s3_checksum_b64(crc))))
        etag = _md5_etag(answer, answer.get("ETag", ""))
        if etag is not None:  # the store's MD5 of the part it received: the part arrived whole
            _compare(f"UploadPart {number}", p.where, "part ETag", etag, md5.hex())
        return {"PartNumber": number, "ETag": answer["ETag"], "ChecksumCRC32":
                s3_checksum_b64(crc), "crc": crc, "md5": md5, "length": length,
                "md5_etag": etag is not None}

    return send


def _sent(body: FileWindow, request: Callable[[], T]) -> T:
    """Send ``body`` with ``request``; what the progress callback raised meanwhile
    (the caller's abort) is raised, whatever the HTTP client made of it."""
    try:
        answer = request()
    except Exception:
        if body.error is not None:
            raise body.error from None
        raise
    if body.error is not None:
        raise body.error
    return answer


def _complete(fs: Any, s3: Any, p: _Plan) -> Callable[[Callback], None]:
    def complete(_: Callback) -> None:
        crc = CRC32.of_ranges((r["crc"], r["length"]) for r in p.results)
        if crc != p.entry.crc32:
            raise BlobIntegrityError(  # not retried here: the whole tree upload is
                f"{p.where}: {p.lpath} changed while it was being uploaded (the CRC32 of the "
                f"bytes sent is {crc:08x}, of the file when it was hashed {p.entry.crc32:08x})")
        parts = [{k: r[k] for k in ("PartNumber", "ETag", "ChecksumCRC32")} for r in p.results]
        answer = watch.run(fs, call, "CompleteMultipartUpload", p.where,
                           s3.complete_multipart_upload(
                               Bucket=p.bucket, Key=p.key, UploadId=p.upload_id,
                               MultipartUpload={"Parts": parts},
                               ChecksumCRC32=s3_checksum_b64(p.entry.crc32),
                               ChecksumType="FULL_OBJECT", MpuObjectSize=p.entry.size))
        p.completed = True
        p.answered = answer.get("ETag")
        etag = _md5_etag(answer, answer.get("ETag", ""))
        if etag is not None and "-" in etag and all(r["md5_etag"] for r in p.results):
            expected = (f"{hashlib.md5(b''.join(r['md5'] for r in p.results)).hexdigest()}"
                        f"-{len(p.results)}")
            _compare("CompleteMultipartUpload", p.where, "multipart ETag", etag, expected)
            p.etag = etag

    return complete
