"""Uploads to OSS: one PutObject, or multipart with several parts in flight, streamed.

The file is read once before sending, for its CRC32 (stored as the object's
metadata ``x-oss-meta-fsblob-crc32``, which every download checks) and each
part's MD5, compared with the ETag OSS answers for what it received. A single
PutObject answered with the MD5 sent is checked by that (one request); otherwise
(multipart, or an ETag that is no MD5) a HEAD after the upload compares size and
fsblob's CRC32.

ossfs's ``put_file`` sends a file below 100 MiB as one ``PutObject`` and larger
ones through oss2's resumable upload, one part at a time, leaving a checkpoint
and the unfinished upload behind when it fails. From ``multipart_threshold`` on,
fsblob sends the parts itself with oss2's primitives: ``max_concurrency`` parts
in flight (threads: oss2 is synchronous), each read from its window of the file
as it is sent. oss2 computes each part's CRC64 as it streams and checks it
against the one OSS answers; ``CompleteMultipartUpload``'s answer carries the
whole object's CRC64, which oss2 checks against the parts' CRCs combined. A
failed upload is aborted, so no parts are left behind.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

from fsspec.callbacks import Callback

from fsblob import integrity, stall
from fsblob.chunks import RangeMismatch, TransferSettings, run
from fsblob.errors import BlobIntegrityError, StoreError

T = TypeVar("T")
#: fsblob's CRC32 in the object's user metadata.
META_HEADER = f"x-oss-meta-{integrity.META_KEY}"

log = logging.getLogger("fsblob")

MAX_PARTS = 10_000
SINGLE_PUT_LIMIT = 5 * 2**30  # OSS's PutObject limit
#: OSS's smallest part (but the last) is 100 KiB; S3-compatible gateways want 5 MiB.
MIN_PART = 5 * 2**20


def upload(fs: Any, lpath: str, rpath: str, callback: Callback, settings: TransferSettings) -> int:
    """The backend's upload of one file (:attr:`fsblob.store.Store.upload`)."""
    return put_file(fs, lpath, rpath, callback, settings)


def put_file(fs: Any, lpath: str, rpath: str, callback: Callback,
             settings: TransferSettings) -> int:
    """Upload ``lpath`` to ``rpath`` on the ossfs filesystem ``fs``: one PutObject,
    or from ``multipart_threshold`` on parallel parts; verified before it returns.
    Returns the CRC32 of the bytes stored (the store checked each body against
    the MD5 taken with it: Content-MD5)."""
    import oss2

    bucket_name, key = fs.split_path(rpath)
    bucket = fs._get_bucket(bucket_name)
    where = f"oss://{bucket_name}/{key}"
    size = os.path.getsize(lpath)
    callback.set_size(size)
    part_size = max(settings.part_size(size), MIN_PART)
    while -(-size // part_size) > MAX_PARTS:
        part_size *= 2
    single = (not settings.splits(size) or size <= part_size) and size <= SINGLE_PUT_LIMIT
    # fsblob's CRC32 goes in the object's metadata: one read of the file first (with a
    # single PUT's MD5); a part's MD5 is taken just before it is sent (see part).
    digest = integrity.digest_file(lpath, None if single else part_size, settings.max_concurrency,
                                   md5=single)
    headers = {META_HEADER: integrity.encode_crc(digest.crc32)}
    checked: list[str] = []

    def progress_of(share: Callback) -> Callable[[int, int | None], None]:
        sent = 0

        def progress(consumed: int, _total: int | None) -> None:
            nonlocal sent
            share.relative_update(consumed - sent)
            sent = consumed

        return progress

    if single:
        def put(share: Callback) -> Any:
            with open(lpath, "rb") as f:
                answer = call("PutObject", where, lambda: bucket.put_object(
                    key, oss2.utils.SizedFileAdapter(f, size),
                    headers={**headers, "Content-MD5": _b64(digest.parts[0][1])},
                    progress_callback=progress_of(share)))
            return answer, _check_etag("PutObject", where, answer.etag, digest.md5)

        answer, proven = run([put], settings, callback, where, lambda _: "PutObject")[0]
        ours = answer.etag
        checked.append("MD5 ETag")
        if proven:  # the store's MD5 of what it stored is the file's: checked in one request
            fs.invalidate_cache(rpath)
            log.info("uploaded %s (%d bytes), checked: MD5 ETag", where, size)
            return digest.crc32
    else:
        upload_id = call("InitiateMultipartUpload", where,
                         lambda: bucket.init_multipart_upload(key, headers=headers)).upload_id

        def part(number: int) -> Callable[[Callback], Any]:
            def send(share: Callback) -> Any:
                crc_before, _, length = digest.parts[number - 1]
                crc, md5 = integrity.hash_span(lpath, (number - 1) * part_size, length)
                if crc != crc_before:
                    raise BlobIntegrityError(
                        f"{where}: {lpath} changed while it was being uploaded (part {number}'s "
                        f"CRC32 is {crc:08x}, {crc_before:08x} when the file was hashed)")
                with open(lpath, "rb") as f:
                    f.seek((number - 1) * part_size)
                    answer = call(f"UploadPart {number}", where, lambda: bucket.upload_part(
                        key, upload_id, number, oss2.utils.SizedFileAdapter(f, length),
                        headers={"Content-MD5": _b64(md5)},
                        progress_callback=progress_of(share)))
                _check_etag(f"UploadPart {number}", where, answer.etag, md5.hex())
                return oss2.models.PartInfo(number, answer.etag, size=length, part_crc=answer.crc)

            return send

        try:
            parts = run([part(n) for n in range(1, len(digest.parts) + 1)], settings, callback,
                        where, lambda i: f"part {i + 1}")
            ours = call("CompleteMultipartUpload", where,
                        lambda: bucket.complete_multipart_upload(key, upload_id, parts)).etag
        except BaseException:
            try:
                with stall.cleanup():  # a budget of its own, also after a stall
                    bucket.abort_multipart_upload(key, upload_id)
            except Exception as exc:  # noqa: BLE001 (the upload's own error is the one to raise)
                log.warning("could not abort multipart upload of %s: %s", where, type(exc).__name__)
            raise
        checked.append(f"{len(parts)} part MD5 ETags")
    fs.invalidate_cache(rpath)
    try:  # If-Match this upload's ETag: a later upload's object is no failure of this one
        head = call("HeadObject", where, lambda: bucket.head_object(
            key, headers={"If-Match": f'"{ours}"'} if ours else None))
    except StoreError as exc:
        if exc.http_status != 412:
            raise
        log.info("%s was replaced by another upload right after this one", where)
        return digest.crc32
    if head.content_length != size:
        raise RangeMismatch(f"{where} holds {head.content_length} bytes after the upload; "
                            f"the file has {size}")
    stored = integrity.decode_crc(head.headers.get(META_HEADER))
    if stored is None:
        log.warning("%s: the store did not keep fsblob's checksum (%s)", where, META_HEADER)
    elif stored != digest.crc32:
        raise RangeMismatch(f"{where}: another upload replaced the object meanwhile (its "
                            f"fsblob CRC32 is {stored:08x}, this file's {digest.crc32:08x})")
    if head.headers.get("x-oss-hash-crc64ecma"):
        checked.append("CRC64 (by oss2)")
    log.info("uploaded %s (%d bytes), checked: %s", where, size, ", ".join(["size", *checked]))
    return digest.crc32


def _b64(digest: bytes) -> str:
    """Content-MD5: OSS refuses a damaged body (BadDigest) before storing it."""
    return base64.b64encode(digest).decode()


def _check_etag(operation: str, where: str, etag: str, md5: str) -> bool:
    """The ETag OSS answers for a PutObject or a part is the MD5 of what it received
    (unless encrypted with KMS: then not 32 hex digits, and not compared). Whether
    it was compared (and equal)."""
    etag = str(etag or "").strip('"').lower()
    if len(etag) != 32 or not all(c in "0123456789abcdef" for c in etag):
        return False
    if etag != md5:
        raise RangeMismatch(f"{operation}: {where}: the store's ETag (the MD5 of the bytes "
                            f"stored) is {etag}, the file sent has {md5}: the bytes were "
                            "damaged on the way")
    return True


def call(operation: str, where: str, request: Callable[[], T]) -> T:
    """Run one oss2 request; a refusal keeps the store's code and the operation."""
    import oss2

    try:
        return request()
    except oss2.exceptions.ServerError as exc:
        error = store_error(operation, where, exc)
    raise error  # outside the except: the client's error is not its context


def store_error(operation: str, where: str, exc: Any) -> Exception:
    """An OSS error answer as fsblob raises it: ``"<Operation>: <Code>: <message>"``;
    only a read of a missing object is "not found"."""
    status = getattr(exc, "status", None)
    code = getattr(exc, "code", "") or f"HTTP {status}"
    message = f"{operation}: {code}: {getattr(exc, 'message', '') or 'no message'} ({where})"
    if code == "BadDigest":  # the body did not match its Content-MD5: damaged on the way
        return RangeMismatch(message)
    if operation in ("GetObject", "HeadObject") and status == 404 and code != "NoSuchBucket":
        return FileNotFoundError(message)
    if status == 403:
        return PermissionError(message)  # the manager says "access denied" and the fix
    return StoreError(message, operation=operation, code=code,
                          status=status if isinstance(status, int) else None)
