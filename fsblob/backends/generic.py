"""Any fsspec protocol: ``root_directory`` as a URL, plus ``protocol`` and ``storage_options``.

=====================  =============================================================
key                    meaning
=====================  =============================================================
``root_directory``     where artifacts go: a local path or a URL such as
                       ``memory://artifacts`` or ``gs://bucket/prefix``
``protocol``           the fsspec protocol, when ``root_directory`` carries none
``storage_options``    keyword arguments for the fsspec filesystem
=====================  =============================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import fsspec
from fsspec.core import split_protocol

from fsblob import uris
from fsblob.backends import keys
from fsblob.errors import BlobConfigError
from fsblob.store import Store

BACKEND = "fsspec"
KEYS = ("root_directory", "protocol", "storage_options")


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
    )
