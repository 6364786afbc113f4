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

from collections.abc import Mapping
from typing import Any

from fsblob import paths
from fsblob.backends import keys
from fsblob.errors import BlobConfigError
from fsblob.store import Store

BACKEND = "oss"
KEYS = ("access_key_id", "access_key_secret", "endpoint", "bucket", "root_directory")


def store(config: Mapping[str, Any]) -> Store:
    """Map the OSS keys to a :class:`Store` on ossfs."""
    keys.check_keys(config, KEYS, BACKEND)
    endpoint = keys.text(config, "endpoint", BACKEND,
                         required="set it to the OSS endpoint, e.g. https://oss-cn-hangzhou.aliyuncs.com")
    bucket = keys.text(config, "bucket", BACKEND, required="set it to the OSS bucket to store in")
    if "/" in bucket or "." in bucket:
        raise BlobConfigError(
            f"{BACKEND}: bucket {bucket!r} is not a bucket name; give the bare name, "
            "and put a directory in root_directory"
        )
    prefix = (keys.text(config, "root_directory", BACKEND) or "").strip("/")
    if prefix:
        paths.check_segments(prefix, what="oss: root_directory")
    key_id = keys.text(config, "access_key_id", BACKEND)
    secret = keys.text(config, "access_key_secret", BACKEND)
    if bool(key_id) != bool(secret):
        missing = "access_key_secret" if key_id else "access_key_id"
        raise BlobConfigError(
            f"{BACKEND}: blob_manager_config key {missing!r} is missing; give access_key_id "
            "and access_key_secret together"
        )
    options: dict[str, Any] = {"endpoint": endpoint}
    if key_id:
        options.update(key=key_id, secret=secret)
    host = endpoint.split("://", 1)[-1].rstrip("/")
    return Store(
        protocol="oss",
        root=f"{bucket}/{prefix}" if prefix else bucket,
        storage_options=options,
        legacy_prefixes={f"{bucket}.{host}": bucket},
        etag=_etag,
    )


def _etag(fs: Any, path: str) -> str:
    """The object's ETag (ossfs's ``info`` leaves it out), from one HEAD request."""
    bucket, key = fs.split_path(path)
    return fs._call_oss("get_object_meta", key, bucket=bucket).etag
