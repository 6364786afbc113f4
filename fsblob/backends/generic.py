"""Any fsspec protocol: ``root_directory`` as a URL, plus ``protocol`` and ``storage_options``.

=====================  =============================================================
key                    meaning
=====================  =============================================================
``root_directory``     where artifacts go: a local path or a URL such as
                       ``memory://artifacts`` or ``gs://bucket/prefix``
``protocol``           the fsspec protocol, when ``root_directory`` carries none
``storage_options``    keyword arguments for the fsspec filesystem
=====================  =============================================================

Protocols that need a hand:

* ``http``/``https``: a server may send ``Last-Modified`` (or ``Content-MD5``,
  ``Digest``) and no ETag; ``ftp``: ``info()`` has only ``modify`` and ``unique``
  (device and inode on the server). Those fields are the version of a file there
  (:data:`VERSION_FIELDS`), so a same-size change is fetched again.
* ``ftp``: fsspec's ``rm(path, recursive=True)`` on a *file* lists the file as if
  it were a directory and deletes ``<file>/<file>`` (``550 Not a directory``):
  fsblob's instance removes a file as a file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import fsspec
from fsspec.core import split_protocol

from fsblob import uris
from fsblob.backends import keys, local
from fsblob.errors import BlobConfigError
from fsblob.store import Store

BACKEND = "fsspec"
KEYS = ("root_directory", "protocol", "storage_options")
#: ``info()`` fields that change with a file's content on protocols whose info has
#: no ETag (HTTP servers without one, FTP).
VERSION_FIELDS = ("ETag", "Last-Modified", "Content-MD5", "Digest", "modify", "unique")
_VERSIONED_BY_FIELDS = frozenset({"http", "https", "ftp"})
#: Protocols whose single-object writes are atomic (an object appears whole or not
#: at all), so fsblob writes there directly. Elsewhere it writes a temporary
#: sibling and renames it into place.
ATOMIC_PUT_PROTOCOLS = frozenset(
    {"s3", "s3a", "oss", "gs", "gcs", "az", "abfs", "abfss", "adl", "memory"}
)
#: Protocols of this host's own filesystem.
LOCAL_PROTOCOLS = frozenset({"file", "local"})
#: The extra that installs a protocol's client library.
EXTRAS = {"s3": "s3", "s3a": "s3", "oss": "oss", "hdfs": "hdfs", "arrow_hdfs": "hdfs",
          "webhdfs": "hdfs"}
#: The shortest and longest life of a signed URL (SigV4 and GCS V4: 7 days).
SIGN_EXPIRY = {p: (1, 7 * 86400) for p in ("s3", "s3a", "gs", "gcs")}


def store(config: Mapping[str, Any]) -> Store:
    """Map the generic keys to a :class:`Store` of any fsspec protocol."""
    keys.check_keys(config, KEYS, BACKEND)
    root = keys.required(config, "root_directory", BACKEND,
                         fix="set it to a directory or URL, e.g. 'memory://artifacts' or 's3://bucket/prefix'")
    options = keys.mapping(config, "storage_options", BACKEND)
    given = keys.text(config, "protocol", BACKEND)
    in_url, _ = split_protocol(root)
    if given and in_url and given != in_url:
        raise BlobConfigError(
            f"{BACKEND}: protocol {given!r} contradicts root_directory {root!r}; "
            "drop the 'protocol' key or the protocol in root_directory"
        )
    protocol = in_url or given or "file"
    if protocol not in uris.known_protocols():
        raise BlobConfigError(f"{BACKEND}: root_directory {root!r}: {uris.unknown_protocol(protocol)}")
    try:
        fs_class = fsspec.get_filesystem_class(protocol)
    except (ValueError, ImportError) as exc:
        raise BlobConfigError(
            f"{BACKEND}: protocol {protocol!r} of root_directory is not available: {exc}"
        ) from None
    if protocol in ("file", "local") and not in_url:
        root = os.path.abspath(os.path.expanduser(root))
    url_options = fs_class._get_kwargs_from_urls(root) if in_url else {}
    url_prefix = None
    if url_options and in_url:  # the server is in the URL: keep it (without a password)
        parts = urlsplit(root)
        user = f"{parts.username}@" if parts.username else ""
        port = f":{parts.port}" if parts.port else ""
        url_prefix = f"{protocol}://{user}{parts.hostname}{port}"
    return Store(
        protocol=protocol,
        root=uris.strip_protocol(protocol, root).rstrip("/") or "/",
        storage_options={**url_options, **options},
        url_prefix=url_prefix,
        etag=_version_fields if protocol in _VERSIONED_BY_FIELDS else None,
        prepare=_ftp_prepare if protocol == "ftp" else None,
        sign_expiry=SIGN_EXPIRY.get(protocol),
        extra=EXTRAS.get(protocol, ""),
        **(local.CAPABILITIES if protocol in LOCAL_PROTOCOLS else
           {"atomic_writes": protocol in ATOMIC_PUT_PROTOCOLS}),
    )


def _version_fields(fs: Any, path: str) -> str:
    """The fields of ``info()`` that stand for the file's version there."""
    info = fs.info(path)
    return json.dumps({k: str(info[k]) for k in VERSION_FIELDS if info.get(k)}, sort_keys=True)


def _ftp_prepare(fs: Any) -> None:
    """Make ``rm`` remove a file as a file on fsblob's FTP instance."""
    if getattr(fs, "_fsblob_rm", None) is not None:
        return
    fs._fsblob_rm = whole_rm = fs.rm

    def rm(path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        if isinstance(path, str) and fs.isfile(path):
            fs.rm_file(path)
        else:
            whole_rm(path, recursive=recursive, maxdepth=maxdepth)

    fs.rm = rm
