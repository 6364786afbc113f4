"""Alibaba Cloud OSS through ossfs.

=======================  ==============================================  =================
key                      meaning                                         ossfs argument
=======================  ==============================================  =================
``access_key_id``        the AccessKey id                                ``key``
``access_key_secret``    the AccessKey secret                            ``secret``
``endpoint``             the access domain name or CNAME (required)      ``endpoint``
``bucket``               the bucket (required)                           first part of the root
``root_directory``       the logical directory in the bucket             rest of the root
=======================  ==============================================  =================

URIs are ``oss://<bucket>/<root>/<name>``. The legacy manager's URIs,
``<bucket>.<endpoint>/<key>``, still download.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from fsblob import integrity, retry
from fsblob.backends import keys, oss_upload, timeouts
from fsblob.chunks import PIECE, ObjectChanged, RangeMismatch, Window, crc64ecma
from fsblob.errors import BlobConfigError, StoreError
from fsblob.store import Start, Store, Upload

BACKEND = "oss"
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?/?$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
KEYS = ("access_key_id", "access_key_secret", "endpoint", "bucket", "root_directory")


def store(config: Mapping[str, Any]) -> Store:
    """Map the OSS keys to a :class:`Store` on ossfs."""
    keys.check_keys(config, KEYS, BACKEND)
    endpoint = keys.required(config, "endpoint", BACKEND,
                             fix="set it to the OSS endpoint, e.g. https://oss-cn-hangzhou.aliyuncs.com")
    root = keys.bucket_root(config, "bucket", BACKEND)
    bucket = root.split("/", 1)[0]
    if not _BUCKET.match(bucket):
        raise BlobConfigError(
            f"{BACKEND}: bucket {bucket!r} is not a valid OSS bucket name: 3 to 63 lowercase "
            "letters, digits and hyphens, starting and ending with a letter or digit"
        )
    if "://" in endpoint:
        keys.url(config, "endpoint", BACKEND)
    elif not _HOST.match(endpoint):  # the documented bare domain: oss2 adds http://
        raise BlobConfigError(
            f"{BACKEND}: endpoint {endpoint!r} is not a domain name or an http(s):// URL; "
            "give e.g. https://oss-cn-hangzhou.aliyuncs.com"
        )
    key_id, secret = keys.pair(config, "access_key_id", "access_key_secret", BACKEND,
                               otherwise="for anonymous access")
    options: dict[str, Any] = {"endpoint": endpoint}
    if key_id:
        options.update(key=key_id, secret=secret)
    host = endpoint.split("://", 1)[-1].rstrip("/")
    return Store(
        protocol="oss",
        root=root,
        storage_options=options,
        legacy_prefixes={f"{bucket}.{host}": bucket},
        list_uploads=_list_uploads,
        abort_upload=_abort_upload,
        prepare=functools.partial(_prepare, bucket=bucket),
        meta=meta,
        read_range=read_range,
        read_start=read_start,
        upload=oss_upload.upload,
        atomic_writes=True,
        extra="oss",
    )


def meta(fs: Any, path: str) -> integrity.Meta:
    """What one HEAD tells of an object: fsblob's CRC32 (``x-oss-meta-fsblob-crc32``),
    OSS's CRC64 of the whole object (``x-oss-hash-crc64ecma``, multipart too) and the
    ETag (an MD5, or a multipart ETag, unless encrypted with KMS)."""
    bucket_name, key = fs.split_path(path)
    if not key:
        return integrity.Meta(None, is_dir=True)
    bucket = fs._get_bucket(bucket_name)
    try:
        head = oss_upload.call("HeadObject", f"oss://{bucket_name}/{key}",
                               lambda: bucket.head_object(key))
    except FileNotFoundError:  # a directory (a prefix), or nothing: one listing tells
        below = oss_upload.call("ListObjects", f"oss://{bucket_name}/{key}", lambda: (
            bucket.list_objects(prefix=key.rstrip("/") + "/", delimiter="/", max_keys=1)))
        if below.object_list or below.prefix_list:
            return integrity.Meta(None, is_dir=True)
        raise
    return _meta_of(head.headers, head.content_length)


def _meta_of(headers: Mapping[str, str], size: int | None) -> integrity.Meta:
    """The :class:`~fsblob.integrity.Meta` of a HEAD's (or GET's) answer headers."""
    etag = str(headers.get("etag") or "").strip('"')
    fields: dict[str, Any] = integrity.etag_meta(
        etag, md5=headers.get("x-oss-server-side-encryption") != "KMS")
    crc64 = headers.get("x-oss-hash-crc64ecma")
    if crc64 and crc64.isdigit():
        fields["store_crc"] = (crc64ecma(), int(crc64))
    return integrity.Meta(size, etag=etag,
                          version=str(headers.get("x-oss-version-id") or ""),
                          crc32=integrity.decode_crc(headers.get(oss_upload.META_HEADER)),
                          pinned=bool(etag), info={"last-modified": headers.get("last-modified")},
                          **fields)


def read_start(fs: Any, path: str, limit: int, unless_etag: str,
               within: float | None = None) -> Start:
    """One ``GetObject`` of the whole object, whose answer tells what :func:`meta`
    tells; its first ``limit`` bytes are read (fewer once ``within`` seconds have
    passed since the headers), the rest is left in the answer for
    :attr:`Start.rest`, bounded by the same request's meter wherever it is read.
    ``If-None-Match`` ``unless_etag``: a 304 is ``Start(None)``. Raises
    ``FileNotFoundError`` for no object (or a prefix)."""
    bucket_name, key = fs.split_path(path)
    if not key:
        raise FileNotFoundError(path)
    bucket = fs._get_bucket(bucket_name)
    where = f"oss://{bucket_name}/{key}"
    headers = {"If-None-Match": f'"{unless_etag}"'} if unless_etag else None
    try:
        answer = oss_upload.call("GetObject", where, lambda: bucket.get_object(key, headers=headers))
    except StoreError as exc:
        if exc.http_status == 304:
            return Start(None)
        raise
    body = _Rest(answer, timeouts.carried())
    rest: _Rest | None = body
    try:
        length = answer.content_length  # none for a body sent in chunks
        want = limit if length is None else min(limit, length)
        pieces, got, began = [], 0, time.monotonic()  # the body's rate: how fast this link is
        ended = False
        while got < want:  # timed: what has arrived (a read of n waits for all n)
            piece = _read(answer, min(PIECE, want - got), arrived=within is not None)
            if not piece:
                ended = True
                break
            pieces.append(piece)
            got += len(piece)
            if within is not None and time.monotonic() - began > within:
                break  # slower than the caller asked to know about: the rest stays
        seconds, data = time.monotonic() - began, b"".join(pieces)
        if length is None and ended:  # the body ended first: that was all of it
            length = got
        if length is None:  # the size from a HEAD, of the same version
            found = meta(fs, path)
            if found.etag != str(answer.headers.get("etag") or "").strip('"'):
                raise ObjectChanged(f"{where} changed during the download")
        else:
            found = _meta_of(answer.headers, length)
        size = found.size or 0
        if got > min(size, limit) or (got < min(size, limit) and ended):
            raise RangeMismatch(f"{where}: received {got} bytes of the first {min(size, limit)}")
        if got >= size:
            body.close()
            rest = None
        rate = got / seconds if size > got and seconds > 0 else None
        return Start(found, data, rate, rest)
    except BaseException:
        body.close()
        raise


class _Rest:
    """The bytes of a ``GetObject`` answer after those :func:`read_start` kept: read
    once (:meth:`read`), or let go (:meth:`close`, which drops the connection)."""

    def __init__(self, answer: Any, request: timeouts.Carried | None) -> None:
        self._answer, self._request = answer, request

    def read(self, feed: Callable[[bytes], None], limit: int | None = None) -> None:
        answer, self._answer = self._answer, None
        if answer is None:
            raise RuntimeError("the rest of this answer was already read or let go")
        left = limit
        with answer, timeouts.reading(self._request):  # cut when it stops, as its request
            while left is None or left > 0:
                piece = _read(answer, PIECE if left is None else min(PIECE, left))
                if not piece:
                    break
                feed(piece)
                if left is not None:
                    left -= len(piece)

    def close(self) -> None:
        answer, self._answer = self._answer, None
        if answer is not None:
            answer.close()


def read_range(fs: Any, path: str, meta: integrity.Meta, start: int, end: int,
               feed: Callable[[bytes], None]) -> None:
    """oss2 ``get_object`` of bytes ``start`` to ``end`` (ossfs's ranged ``cat_file``
    returns one byte too many), ``If-Match`` the ETag ``meta`` holds."""
    bucket_name, key = fs.split_path(path)
    bucket = fs._get_bucket(bucket_name)
    where = f"oss://{bucket_name}/{key}"
    whole = start == 0 and end == meta.size
    if end <= start and not whole:
        return
    try:
        answer = oss_upload.call("GetObject", where, lambda: bucket.get_object(
            key, byte_range=None if whole else (start, end - 1),
            headers={"If-Match": f'"{meta.etag}"'} if meta.etag else None))
    except StoreError as exc:
        if exc.code == "PreconditionFailed" or exc.http_status == 412:
            raise ObjectChanged(f"{where} changed during the download") from None
        raise
    window = Window(feed, start, end, whole=not whole and not answer.content_range)
    with answer:
        while not window.full and (piece := _read(answer, PIECE)):
            window(piece)


def _read(answer: Any, size: int, *, arrived: bool = False) -> bytes:
    """Up to ``size`` bytes of an oss2 answer's body, from its urllib3 response:
    all ``size`` unless the body ends first, or (``arrived``) those that have come,
    at least one (a read of its own on the socket: on a slow link it returns soon,
    on a fast one with as much as has come, so a timed read counts time, not
    calls). (oss2's own ``read(n)`` starts a new ``iter_content`` generator for
    every call, and on a body sent in chunks the generator left behind drops the
    connection: the next read finds the body cut short. fsblob checks the bytes
    itself.)"""
    raw = answer.resp.response.raw
    return bytes(raw.read1(size, decode_content=True) if arrived
                 else raw.read(size, decode_content=True))


def _prepare(fs: Any, *, bucket: str) -> None:
    """fsblob's ossfs instance: every request cut when it stops making progress
    (oss2 waits 60 s per request: see :mod:`fsblob.backends.timeouts`), one try per
    ossfs call (ossfs retries each three times; fsblob retries), and the bucket
    must exist."""
    timeouts.mount(fs._session.session)
    fs._call_oss = functools.partial(type(fs)._call_oss, fs, retry=1)
    try:
        fs._call_oss("get_bucket_info", bucket=bucket)
    except Exception as exc:
        if retry.is_not_found(exc):
            raise BlobConfigError(
                f"{BACKEND}: bucket {bucket!r}: no such bucket at {fs._endpoint}; create the "
                "bucket, or correct bucket (and endpoint)") from None
        if retry.is_transient(exc) or retry.is_tls_failure(exc):
            raise
        # e.g. 403: this key may not read the bucket's info; its objects will tell


def _list_uploads(fs: Any, root: str) -> list[Upload]:
    """The unfinished multipart uploads below ``root``."""
    import oss2

    bucket_name, prefix = fs.split_path(root)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    bucket = fs._get_bucket(bucket_name)
    return [Upload(f"{bucket_name}/{u.key}", u.upload_id, float(u.initiation_date))
            for u in oss2.MultipartUploadIterator(bucket, prefix=prefix)]


def _abort_upload(fs: Any, upload: Upload) -> None:
    bucket_name, key = fs.split_path(upload.path)
    fs._get_bucket(bucket_name).abort_multipart_upload(key, upload.id)
