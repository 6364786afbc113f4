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
from collections.abc import Callable, Mapping
from typing import Any

from fsblob import integrity, retry
from fsblob.backends import keys, oss_upload, timeouts
from fsblob.chunks import PIECE, ObjectChanged, crc64ecma
from fsblob.errors import BlobConfigError, StoreError
from fsblob.store import Store, Upload

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
    headers = head.headers
    etag = str(headers.get("etag") or "").strip('"')
    fields: dict[str, Any] = integrity.etag_meta(
        etag, md5=headers.get("x-oss-server-side-encryption") != "KMS")
    crc64 = headers.get("x-oss-hash-crc64ecma")
    if crc64 and crc64.isdigit():
        fields["store_crc"] = (crc64ecma(), int(crc64))
    return integrity.Meta(head.content_length, etag=etag,
                          version=str(headers.get("x-oss-version-id") or ""),
                          crc32=integrity.decode_crc(headers.get(oss_upload.META_HEADER)),
                          pinned=bool(etag), info={"last-modified": headers.get("last-modified")},
                          **fields)


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
    with answer:
        while piece := answer.read(PIECE):
            feed(piece)


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
