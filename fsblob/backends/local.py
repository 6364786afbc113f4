"""The local filesystem, for a client, server and workers on one host.

====================  ==========================================  =================
key                   meaning                                     fsspec
====================  ==========================================  =================
``root_directory``    the directory that holds the artifacts      ``file`` root
====================  ==========================================  =================

URIs are plain absolute paths, as the legacy ``LocalBlobManager`` returned.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from fsblob.backends import keys
from fsblob.store import Store

BACKEND = "local"
KEYS = ("root_directory",)


def store(config: Mapping[str, Any]) -> Store:
    """Map the Local keys to a :class:`Store` on the ``file`` protocol."""
    keys.check_keys(config, KEYS, BACKEND)
    root = keys.required(config, "root_directory", BACKEND,
                         fix="set it to the directory that should hold the artifacts")
    if root.startswith("file://"):
        root = root[len("file://"):]
    return Store(
        protocol="file",
        root=os.path.realpath(os.path.expanduser(root)),
        url_prefix="",
    )
