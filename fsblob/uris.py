"""From a URI (or a path relative to the root) to the filesystem path it names.

Every path a caller hands to a manager is resolved here, before any I/O, and
refused unless it lies below the store's root: see :mod:`fsblob.paths` for the
lexical rules, and :func:`resolve` for the URI forms accepted.
"""

from __future__ import annotations

import os

import fsspec
from fsspec.core import split_protocol

from fsblob import paths
from fsblob.errors import PathOutsideRootError
from fsblob.store import Store

WHAT = "remote_file_path"


def resolve(store: Store, text: str, backend: str) -> str:
    """The filesystem path that ``text`` names in ``store``, confined to its root.

    Accepted: a URI that the store's :meth:`Store.uri` makes, a legacy manager's
    URI (``store.legacy_prefixes``), a URI of the store's protocol, an absolute
    local path below a Local root, or a path relative to the root.

    Raises:
        InvalidPathError: the path is malformed.
        PathOutsideRootError: it lies outside the root.
    """
    root, where = store.root, store.uri(store.root)
    prefixes = dict(store.legacy_prefixes)
    if store.url_prefix:
        prefixes[store.url_prefix] = ""
    for prefix, stands_for in prefixes.items():
        if text.startswith(prefix + "/"):
            path = stands_for + text[len(prefix):]
            return _confine(store, paths.require_under(root, path, what=WHAT, where=where))
    protocol, _ = split_protocol(text)
    if protocol:
        fs_class = fsspec.get_filesystem_class(store.protocol)
        names = (fs_class.protocol,) if isinstance(fs_class.protocol, str) else fs_class.protocol
        if protocol not in (store.protocol, *names) or store.url_prefix:
            raise PathOutsideRootError(
                f"{WHAT} {text!r} is not in this store; {backend} stores under {where}"
            )
        paths.check_segments(text.split("://", 1)[1], what=WHAT)
        path = fs_class._strip_protocol(text)
        return _confine(store, paths.require_under(root, path, what=WHAT, where=where))
    if store.url_prefix == "" and text.startswith("/"):
        return _confine(store, paths.require_under(root, text, what=WHAT, where=where))
    return _confine(store, paths.join_under(root, text, what=WHAT))


def _confine(store: Store, path: str) -> str:
    """On a local root, also refuse a path that a symlink takes outside it."""
    if store.protocol in ("file", "local"):
        real_root = os.path.realpath(store.root)
        real = os.path.realpath(path)
        if not real.startswith(real_root.rstrip("/") + "/"):
            raise PathOutsideRootError(
                f"{WHAT} {path!r} leads outside the store's root "
                f"{store.uri(store.root)} through a symbolic link"
            )
    return path
