"""Amazon S3 (and S3-compatible stores) through s3fs.

=======================  ==============================================  ========================
key                      meaning                                         s3fs argument
=======================  ==============================================  ========================
``bucket_name``          the bucket (required)                           first part of the root
``root_directory``       a key prefix inside the bucket (optional)       rest of the root
``service_name``         must be ``s3`` if given                         (checked only)
``region_name``          the region                                      ``client_kwargs``
``api_version``          the API version                                 ``client_kwargs``
``use_ssl``              use HTTPS                                       ``use_ssl``
``verify``               verify certificates: true/false or a CA bundle  ``client_kwargs``
``endpoint_url``         the endpoint, for S3-compatible stores          ``endpoint_url``
``access_key_id``        the access key id                               ``key``
``secret_access_key``    the secret key                                  ``secret``
``session_token``        a session token                                 ``token``
``config``               botocore ``Config`` options                     ``config_kwargs``
=======================  ==============================================  ========================

Keys left out fall back to the usual AWS credential chain (environment, profile);
the credentials it yields are kept out of logs and errors like configured ones.

fsblob's own filesystem instance gets botocore timeouts of the attempt's
connect timeout and ``stall_timeout`` (unless ``config`` sets
``connect_timeout``/``read_timeout``), no botocore retries (unless ``config`` sets
``retries``) and one try per s3fs call: fsblob's retry policy is the only one.
fsblob checks every download's bytes itself, so botocore does not CRC them again
(``response_checksum_validation: when_required`` unless ``config`` sets it; the
store's checksums are still asked for, by header). Its User-Agent is fixed
(``fsblob/<version> Botocore/<version> ...``, unless ``config`` sets ``user_agent``):
botocore rebuilds its default one twice per request. Every body it sends carries a
checksum the store checks, so over plain http it is not also hashed with SHA256 for
the signature (``s3: {payload_signing_enabled: false}``, as botocore does on https,
unless ``config`` sets ``s3.payload_signing_enabled`` or
``request_checksum_calculation: when_required``).
Its sockets count the bytes they move, and each of its calls is cut once they
stop moving (:func:`fsblob.backends.watch.run`).
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from fsspec.asyn import sync

from fsblob import integrity, logs, retry, stall
from fsblob.backends import keys, s3_upload, watch
from fsblob.chunks import CRC32, PIECE, ObjectChanged, RangeMismatch, Window, crc64nvme
from fsblob.errors import BlobConfigError
from fsblob.store import Start, Store, Upload

log = logging.getLogger("fsblob")

BACKEND = "s3"
KEYS = ("service_name", "region_name", "api_version", "use_ssl", "verify", "endpoint_url",
        "access_key_id", "secret_access_key", "session_token", "config", "bucket_name",
        "root_directory")


def store(config: Mapping[str, Any]) -> Store:
    """Map the S3 keys to a :class:`Store` on s3fs."""
    keys.check_keys(config, KEYS, BACKEND)
    service = keys.text(config, "service_name", BACKEND)
    if service not in (None, "s3"):
        raise BlobConfigError(
            f"{BACKEND}: service_name {service!r} is not supported; S3BlobManager stores "
            "in S3, so set service_name: s3 or leave it out"
        )
    root = keys.bucket_root(config, "bucket_name", BACKEND)
    key_id, secret = keys.pair(config, "access_key_id", "secret_access_key", BACKEND,
                               otherwise="to use the AWS credential chain")
    client: dict[str, Any] = {}
    for key in ("region_name", "api_version"):
        if keys.text(config, key, BACKEND):
            client[key] = keys.text(config, key, BACKEND)
    if config.get("verify") is not None:
        verify = config["verify"]
        is_flag = isinstance(verify, bool) or str(verify).strip().lower() in (
            "true", "false", "yes", "no", "on", "off", "0", "1")
        client["verify"] = keys.flag(config, "verify", BACKEND) if is_flag else str(verify)

    options: dict[str, Any] = {}
    if key_id:
        options.update(key=key_id, secret=secret)
    if keys.text(config, "session_token", BACKEND):
        options["token"] = keys.text(config, "session_token", BACKEND)
    if keys.text(config, "endpoint_url", BACKEND):
        options["endpoint_url"] = keys.url(config, "endpoint_url", BACKEND)
    if keys.flag(config, "use_ssl", BACKEND) is not None:
        options["use_ssl"] = keys.flag(config, "use_ssl", BACKEND)
    if client:
        options["client_kwargs"] = client
    if keys.mapping(config, "config", BACKEND):
        options["config_kwargs"] = keys.mapping(config, "config", BACKEND)
    given = keys.mapping(config, "config", BACKEND)
    # fsblob retries: botocore's own retries stay off unless `config` sets them.
    engine: dict[str, Any] = {} if "retries" in given else {
        "retries": {"total_max_attempts": 1, "mode": "standard"}}
    # fsblob checks every download's bytes itself (its CRC32, or the store's full-object
    # checksum the answer carries): botocore's own pass over the same bytes is not asked
    # for (see _ask_checksums).
    if "response_checksum_validation" not in given:
        engine["response_checksum_validation"] = "when_required"
    # Every body fsblob sends carries a checksum the store checks (its uploads: Content-MD5
    # and CRC32; botocore adds a CRC32 to the others), so no SHA256 of the body is
    # computed for the signature over plain http either, botocore's own rule on https:
    # that pass ran in the event loop's thread, one body after another (0.5 s per 256 MiB).
    s3_given = given["s3"] if isinstance(given.get("s3"), Mapping) else {}
    if ("payload_signing_enabled" not in s3_given
            and given.get("request_checksum_calculation") != "when_required"):
        engine["s3"] = {"payload_signing_enabled": False}
    return Store(
        protocol="s3",
        root=root,
        storage_options=options,
        md5_etag=True,
        get_options={"max_concurrency": 1},  # one streamed GET: fastest, and constant memory
        # its own instance: _prepare gives it this manager's timeouts and counting sockets
        engine_options={"config_kwargs": engine, "skip_instance_cache": True},
        list_uploads=_list_uploads,
        abort_upload=_abort_upload,
        meta=meta,
        read_range=read_range,
        read_start=read_start,
        upload=s3_upload.upload,
        upload_files=s3_upload.upload_files,
        atomic_writes=True,
        sign_expiry=(1, 7 * 86400),  # SigV4: 1 s to 7 days
        extra="s3",
        prepare=functools.partial(_prepare, bucket=root.split("/", 1)[0],
                                  ca_bundle=None if isinstance(client.get("verify"), (bool, type(None)))
                                  else client["verify"]),
    )


#: Server-side encryptions whose ETag is not the MD5 of the object's bytes.
OPAQUE_ETAG_ENCRYPTION = frozenset({"aws:kms", "aws:kms:dsse"})


def _head(fs: Any, path: str, **extra: Any) -> dict[str, Any] | None:
    """One HEAD (with checksums) of an object; ``None`` for a directory (a prefix)."""
    bucket, key, version = fs.split_path(path)
    if version:
        extra["VersionId"] = version
    try:
        return watch.run(fs, fs._call_s3, "head_object", fs.kwargs, Bucket=bucket, Key=key,
                         ChecksumMode="ENABLED", **extra)
    except FileNotFoundError:  # a directory (a prefix), or nothing: one listing tells
        below = watch.run(fs, fs._call_s3, "list_objects_v2", fs.kwargs, Bucket=bucket,
                     Prefix=key.rstrip("/") + "/", Delimiter="/", MaxKeys=1)
        if below.get("KeyCount") or below.get("Contents") or below.get("CommonPrefixes"):
            return None
        raise


def _opaque(head: Mapping[str, Any]) -> bool:
    """Whether the object's ETag is not the MD5 of its bytes (KMS or customer key)."""
    return (head.get("ServerSideEncryption") in OPAQUE_ETAG_ENCRYPTION
            or bool(head.get("SSECustomerAlgorithm")))


def meta(fs: Any, path: str) -> integrity.Meta:
    """What one HEAD tells of an object: fsblob's CRC32 (user metadata), the store's
    CRC32/CRC64NVME when it covers the whole object's bytes (``FULL_OBJECT``, or a
    single-part object's; never ``COMPOSITE``), and the ETag as an MD5 or a
    multipart ETag (unless encrypted with KMS or a customer key)."""
    _, key, _ = fs.split_path(path)
    if not key:
        return integrity.Meta(None, is_dir=True)
    head = _head(fs, path)
    if head is None:
        return integrity.Meta(None, is_dir=True)
    return _meta_of(fs, path, head, head["ContentLength"])


def read_start(fs: Any, path: str, limit: int, unless_etag: str,
               within: float | None = None) -> Start:
    """One ``GetObject`` of the whole object, whose answer tells what :func:`meta`
    tells; its first ``limit`` bytes are read (fewer once ``within`` seconds have
    passed since the headers), the rest is left in the answer for
    :class:`Start.rest` (or let go: see :class:`_Rest`). ``If-None-Match``
    ``unless_etag``: a 304 is ``Start(None)``. Raises ``FileNotFoundError`` for no
    object (or a prefix)."""
    bucket, key, version = fs.split_path(path)
    if not key:
        raise FileNotFoundError(path)
    pin = {"VersionId": version} if version else {}
    if unless_etag:
        pin["IfNoneMatch"] = f'"{unless_etag}"'
    answer, data, seconds, body = watch.run(fs, _get_start, fs, bucket, key, limit, pin, within)
    if answer is None:
        return Start(None)
    rest = _Rest(fs, body) if body is not None else None
    try:
        if answer.get("ContentLength") is None:  # a chunked answer, its end not reached
            found = meta(fs, path)  # the size from a HEAD, of the same version
            if found.etag != str(answer.get("ETag", "")).strip('"'):
                raise ObjectChanged(f"s3://{bucket}/{key} changed during the download")
        else:
            found = _meta_of(fs, path, answer, int(answer["ContentLength"]))
        size = found.size or 0
        if len(data) > min(size, limit) or (len(data) < min(size, limit) and rest is None):
            raise RangeMismatch(f"s3://{bucket}/{key}: received {len(data)} bytes of the first "
                                f"{min(size, limit)}")
        rate = len(data) / seconds if size > len(data) and seconds > 0 else None
        return Start(found, data, rate, rest)
    except BaseException:
        if rest is not None:
            rest.close()
        raise


class _Rest:
    """The bytes of a ``GetObject`` answer after those :func:`read_start` kept: read
    once (:meth:`read`), or let go (:meth:`close`, which drops the connection)."""

    def __init__(self, fs: Any, body: Any) -> None:
        self._fs, self._body = fs, body

    def read(self, feed: Callable[[bytes], None], limit: int | None = None) -> None:
        body, self._body = self._body, None
        if body is None:
            raise RuntimeError("the rest of this answer was already read or let go")
        watch.run(self._fs, _read_body, body, feed, limit)  # cut when it stops

    def close(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            from fsspec.asyn import sync

            sync(self._fs.loop, _close_body, body)  # aiohttp's, in its own loop


async def _read_body(body: Any, feed: Callable[[bytes], None], limit: int | None = None) -> None:
    """Feed ``body`` to its end, or its next ``limit`` bytes; then close it (an answer
    not read to its end drops its connection)."""
    from botocore.exceptions import FlexibleChecksumError

    left = limit
    try:
        while left is None or left > 0:
            piece = await body.read(PIECE if left is None else min(PIECE, left))
            if not piece:
                break
            feed(piece)
            if left is not None:
                left -= len(piece)
    except FlexibleChecksumError as exc:  # botocore checks a whole answer's CRC too
        raise RangeMismatch(f"GetObject: {exc}") from None
    finally:
        body.close()


async def _close_body(body: Any) -> None:
    body.close()


async def _get_start(fs: Any, bucket: str, key: str, limit: int, pin: dict[str, str],
                     within: float | None = None
                     ) -> tuple[dict[str, Any] | None, bytes, float, Any]:
    """The answer, its first ``limit`` bytes (fewer once ``within`` seconds have
    passed), the seconds they took from the headers on, and the body when more is
    left in it (else ``None``: closed)."""
    from botocore.exceptions import ClientError

    where = f"s3://{bucket}/{key}"
    await fs.set_session()
    s3 = await fs.get_s3(bucket)
    try:
        answer = await s3.get_object(Bucket=bucket, Key=key, **pin)  # see _ask_checksums
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 304:
            return None, b"", 0.0, None
        raise s3_upload.store_error("GetObject", where, exc) from None
    body, pieces, got = answer.pop("Body"), [], 0
    began = time.monotonic()  # the body's rate tells how fast this link is
    length = answer.get("ContentLength")  # none for a body sent in chunks
    want = limit if length is None else min(limit, int(length))
    ended = False
    try:
        while got < want:
            piece = await body.read(min(PIECE, want - got))
            if not piece:
                ended = True
                break
            pieces.append(piece)
            got += len(piece)
            if within is not None and time.monotonic() - began > within:
                break  # slower than the caller asked to know about: the rest stays
    except BaseException:
        body.close()
        raise
    if length is None and ended:  # the body ended first: that was all of it
        answer["ContentLength"] = length = got
    if length is not None and got >= int(length):
        body.close()
        body = None
    return answer, b"".join(pieces), time.monotonic() - began, body


def _meta_of(fs: Any, path: str, head: Mapping[str, Any], size: int) -> integrity.Meta:
    """The :class:`~fsblob.integrity.Meta` of a HEAD's (or GET's) answer."""
    etag = str(head.get("ETag", "")).strip('"')
    fields: dict[str, Any] = integrity.etag_meta(etag, md5=not _opaque(head))
    kind_name = head.get("ChecksumType")
    if kind_name != "COMPOSITE" and (kind_name == "FULL_OBJECT" or "-" not in etag):
        for field_name, kind in (("ChecksumCRC32", CRC32), ("ChecksumCRC64NVME", None)):
            value = head.get(field_name)
            if value and "-" not in value:
                fields["store_crc"] = (kind or crc64nvme(),
                                       int.from_bytes(base64.b64decode(value), "big"))
                break
    crc = integrity.decode_crc((head.get("Metadata") or {}).get(integrity.META_KEY))
    if crc is None and "store_crc" not in fields and "multipart_etag" in fields:
        fields["part_size"] = _part_size(fs, path, size, fields["multipart_etag"][1])
    return integrity.Meta(size, etag=etag, version=str(head.get("VersionId") or ""), crc32=crc,
                          pinned=True, info={"LastModified": str(head.get("LastModified"))},
                          **fields)


def _part_size(fs: Any, path: str, size: int, count: int) -> int | None:
    """The first part's size of a multipart object (HEAD with ``partNumber=1``), when
    the store tells it (S3, MinIO, Ceph do; some emulators answer the whole object)."""
    try:
        head = _head(fs, path, PartNumber=1)
    except Exception as exc:  # noqa: BLE001 (not every store knows partNumber)
        log.debug("%s: HEAD partNumber=1 failed: %s", path, type(exc).__name__)
        return None
    if head is None:
        return None
    if count == 1 or (head.get("PartsCount") == count and head["ContentLength"] < size):
        return int(head["ContentLength"])
    return None


def read_range(fs: Any, path: str, meta: integrity.Meta, start: int, end: int,
               feed: Callable[[bytes], None]) -> None:
    """``GetObject`` of bytes ``start`` to ``end`` of the version ``meta`` describes
    (``If-Match`` its ETag, or its ``VersionId``), streamed to ``feed``."""
    watch.run(fs, _read_range, fs, path, meta, start, end, feed)  # cut when it stops


async def _read_range(fs: Any, path: str, meta: integrity.Meta, start: int, end: int,
                      feed: Callable[[bytes], None]) -> None:
    from botocore.exceptions import ClientError

    bucket, key, version = fs.split_path(path)
    where = f"s3://{bucket}/{key}"
    await fs.set_session()
    s3 = await fs.get_s3(bucket)
    pin = ({"VersionId": version} if version else
           {"IfMatch": f'"{meta.etag}"'} if meta.etag else {})
    whole = start == 0 and end == meta.size
    extra = {} if whole else {"Range": f"bytes={start}-{end - 1}"}
    if end <= start and not whole:
        return
    error: Exception | None = None
    try:
        answer = await s3.get_object(Bucket=bucket, Key=key, **pin, **extra)
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412:
            raise ObjectChanged(f"{where} changed during the download") from None
        error = s3_upload.store_error("GetObject", where, exc)
    if error is not None:
        raise error
    body = answer["Body"]
    window = Window(feed, start, end, whole=bool(extra) and not answer.get("ContentRange"))
    try:
        while not window.full and (piece := await body.read(PIECE)):
            window(piece)
    finally:
        body.close()


def _prepare(fs: Any, *, bucket: str, ca_bundle: str | None) -> None:
    """Open fsblob's s3fs instance: the CA bundle must exist, the attempt's connect
    timeout and ``stall_timeout`` as botocore's (unless ``config`` sets them), sockets
    that count their bytes and calls cut when they stop (see
    :mod:`fsblob.backends.watch`), one try per s3fs call (fsblob retries), no
    waiting for "100 Continue", the credentials the client resolved (environment,
    profile, role) kept out of logs and errors (only when no keys are configured:
    configured keys are used as they are, with no walk of the credential chain), and
    the bucket must exist."""
    from botocore.handlers import add_expect_header

    if ca_bundle is not None and not os.path.isfile(os.path.expanduser(ca_bundle)):
        raise BlobConfigError(
            f"{BACKEND}: verify {ca_bundle!r} is neither true/false nor an existing CA bundle "
            "file; give the path of a PEM bundle, or true to use the system's"
        )
    fs.retries = 1
    given = stall.limits()
    config = dict(fs.config_kwargs)
    config.setdefault("connect_timeout", given.connect)
    # a backstop: the watcher ends a silent call after stall_timeout, naming the setting
    config.setdefault("read_timeout", 2 * given.stall)
    # A fixed User-Agent: botocore otherwise rebuilds its default one from a dozen
    # sanitized components twice per request (13% of a small PUT's client CPU).
    config.setdefault("user_agent", _user_agent())
    meter = stall.Meter()
    config["connector_args"] = {**config.get("connector_args", {}),
                                "socket_factory": watch.socket_factory(meter)}
    fs.config_kwargs = config
    watch.watch_async(fs, meter, watch.endpoint_of(fs.endpoint_url) if fs.endpoint_url
                         else "AWS S3")
    client = sync(fs.loop, fs.set_session)
    # botocore asks for "Expect: 100-continue" on every upload, and aiohttp then waits
    # for the "100 Continue" with no timeout at all: a stuck server hung uploads forever.
    for events in (fs.session, client.meta.events):
        events.unregister("before-call.s3", add_expect_header)
    client.meta.events.register("before-call.s3.GetObject", _ask_checksums,
                                unique_id="fsblob-checksum-mode")
    # Configured keys are used as they are: asking the session for its credentials
    # would walk the whole AWS chain (profiles, the EC2 metadata address) first.
    configured = bool(getattr(fs, "key", None) and getattr(fs, "secret", None))
    credentials = None if configured else sync(fs.loop, fs.session.get_credentials)
    if credentials is not None:
        frozen = sync(fs.loop, credentials.get_frozen_credentials)
        found = [v for v in (frozen.access_key, frozen.secret_key, frozen.token) if v]
        logs.hide_secrets(found)  # also percent-encoded: see fsblob.errors.redact
    try:  # a missing bucket is a misconfiguration, not a missing artifact
        watch.run(fs, client.head_bucket, Bucket=bucket)
    except Exception as exc:
        if retry.is_not_found(exc):
            raise BlobConfigError(
                f"{BACKEND}: bucket_name {bucket!r}: no such bucket at "
                f"{fs.endpoint_url or 'AWS S3'}; create the bucket, or correct bucket_name "
                "(and endpoint_url)") from None
        if retry.is_transient(exc) or retry.is_tls_failure(exc):
            raise
        # e.g. 403: this role may not list the bucket; its objects will tell


def _user_agent() -> str:
    """``fsblob/<version>``, then the client libraries' names and versions."""
    import platform

    import aiobotocore
    import botocore

    from fsblob import __version__

    return (f"fsblob/{__version__} Botocore/{botocore.__version__} "
            f"aiobotocore/{aiobotocore.__version__} Python/{platform.python_version()}")


def _ask_checksums(params: dict[str, Any], **_: Any) -> None:
    """Ask for the store's checksums with every GetObject call (``x-amz-checksum-mode``),
    as a header: botocore's ``ChecksumMode`` parameter would also make it compute
    the CRC32 of the body a second time, beside fsblob's own check of the same
    bytes (0.03 s per 128 MiB, in the event loop's thread). A call's event, not a
    signing one: a presigned URL (:meth:`sign`) must not require the header of
    whoever fetches it."""
    params.setdefault("headers", {})["x-amz-checksum-mode"] = "ENABLED"


def _list_uploads(fs: Any, root: str) -> list[Upload]:
    """The unfinished multipart uploads below ``root`` (an abort that failed during
    an outage leaves one, and S3 bills its parts until it is aborted)."""
    bucket, prefix, _ = fs.split_path(root)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    found: list[Upload] = []
    marker: dict[str, str] = {}
    while True:
        page = watch.run(fs, fs._call_s3, "list_multipart_uploads", fs.kwargs, Bucket=bucket,
                    Prefix=prefix, **marker)
        for item in page.get("Uploads", []):
            started = item.get("Initiated")
            found.append(Upload(f"{bucket}/{item['Key']}", item["UploadId"],
                                started.timestamp() if hasattr(started, "timestamp") else 0.0))
        if not page.get("IsTruncated"):
            return found
        marker = {"KeyMarker": page.get("NextKeyMarker", ""),
                  "UploadIdMarker": page.get("NextUploadIdMarker", "")}


def _abort_upload(fs: Any, upload: Upload) -> None:
    bucket, key, _ = fs.split_path(upload.path)
    watch.run(fs, fs._call_s3, "abort_multipart_upload", fs.kwargs, Bucket=bucket, Key=key,
              UploadId=upload.id)
