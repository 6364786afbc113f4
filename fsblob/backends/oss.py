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

from fsblob.backends import keys, timeouts
from fsblob.store import Store

BACKEND = "oss"
KEYS = ("access_key_id", "access_key_secret", "endpoint", "bucket", "root_directory")


def store(config: Mapping[str, Any]) -> Store:
    """Map the OSS keys to a :class:`Store` on ossfs."""
    keys.check_keys(config, KEYS, BACKEND)
    endpoint = keys.required(config, "endpoint", BACKEND,
                             fix="set it to the OSS endpoint, e.g. https://oss-cn-hangzhou.aliyuncs.com")
    root = keys.bucket_root(config, "bucket", BACKEND)
    key_id, secret = keys.pair(config, "access_key_id", "access_key_secret", BACKEND,
                               otherwise="for anonymous access")
    options: dict[str, Any] = {"endpoint": endpoint}
    if key_id:
        options.update(key=key_id, secret=secret)
    host = endpoint.split("://", 1)[-1].rstrip("/")
    bucket = root.split("/", 1)[0]
    return Store(
        protocol="oss",
        root=root,
        storage_options=options,
        legacy_prefixes={f"{bucket}.{host}": bucket},
        etag=_etag,
        prepare=_prepare,
    )


def _prepare(fs: Any) -> None:
    """Request timeouts on fsblob's ossfs instance (oss2 waits 60 s per request and
    retries, as ossfs does around it): see :mod:`fsblob.backends.timeouts`."""
    timeouts.mount(fs._session.session)


def _etag(fs: Any, path: str) -> str:
    """The object's ETag (ossfs's ``info`` leaves it out), from one HEAD request."""
    bucket, key = fs.split_path(path)
    return fs._call_oss("get_object_meta", key, bucket=bucket).etag
