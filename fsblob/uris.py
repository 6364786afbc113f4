"""From a URI (or a path) to the filesystem path it names, confined to the root.

Every path a caller hands to a manager is resolved here, before any I/O, and
refused unless it lies below the store's root (see :mod:`fsblob.paths` for the
lexical rules). The forms accepted, on every backend:

* a URI that the store's :meth:`Store.uri` makes, or a legacy manager's URI
  (``store.legacy_prefixes``, e.g. OSS's ``<bucket>.<endpoint>/<key>``);
* a URI of the store's protocol, under any name its filesystem class is
  registered as (``countmem://...`` for a class registered as ``countmem``);
* an absolute path (``/path/file1``): a path in the store's own namespace, as
  AIFlow's HDFS manager returned them. It is accepted as it is when it lies
  below the root and refused otherwise; it is never re-rooted;
* a relative path: below the root.
"""

from __future__ import annotations

import os
import posixpath

import fsspec
from fsspec.core import split_protocol

from fsblob import paths
from fsblob.errors import PathOutsideRootError
from fsblob.store import Store

WHAT = "remote_file_path"


def resolve(store: Store, text: str, backend: str, *, relative_root: str | None = None) -> str:
    """The filesystem path that ``text`` names in ``store``, confined to its root.

    ``relative_root`` is the ``root_directory`` as configured when it was a
    relative local path (resolved against a working directory): a path outside
    the root only because another process resolved it from another directory is
    then refused with both roots named.

    Raises:
        InvalidPathError: the path is malformed.
        PathOutsideRootError: it lies outside the root.
    """
    try:
        return _resolve(store, text, backend)
    except PathOutsideRootError as exc:
        other = other_root(store, text, relative_root)
        if other is None:
            raise
        raise PathOutsideRootError(
            f"{WHAT} {text!r} is outside this store's root {store.uri(store.root)} only because "
            f"the roots differ: it lies below {other}, which is what root_directory "
            f"{relative_root!r}, a relative path, becomes in another working directory. "
            "Give root_directory as an absolute path (a project file read by fsblob takes it "
            "relative to the file itself), so that every process uses the same root"
        ) from exc


def other_root(store: Store, text: str, relative_root: str | None) -> str | None:
    """The root another working directory makes of ``relative_root``, if ``text``
    (an absolute local path) lies below such a root; else ``None``."""
    if not relative_root or not store.local_paths:
        return None
    scheme, rest = split_protocol(text)
    if (scheme is not None and scheme not in protocol_names(store.protocol)) or not rest.startswith("/"):
        return None
    tail = [s for s in os.path.normpath(os.path.expanduser(relative_root)).split("/")
            if s not in ("", ".")]
    segments = [s for s in posixpath.normpath(rest).split("/") if s]
    if not tail:
        return None
    for end in range(len(segments) - 1, len(tail) - 1, -1):  # the deepest match first
        if segments[end - len(tail):end] == tail:
            return "/" + "/".join(segments[:end])
    return None


def _resolve(store: Store, text: str, backend: str) -> str:
    root, where = store.root, store.uri(store.root)
    prefixes = dict(store.legacy_prefixes)
    if store.url_prefix:
        prefixes[store.url_prefix] = ""
    for prefix, stands_for in prefixes.items():
        if text.startswith(prefix + "/"):
            path = stands_for + text[len(prefix):]
            return _confine(store, paths.require_under(root, path, what=WHAT, where=where))
    protocol, rest = split_protocol(text)
    if protocol:
        if store.url_prefix or protocol not in protocol_names(store.protocol):
            raise PathOutsideRootError(
                f"{WHAT} {text!r} is not in this store; {backend} stores under {where}"
            )
        paths.check_segments(rest, what=WHAT)
        path = strip_protocol(store.protocol, text)
        return _confine(store, paths.require_under(root, path, what=WHAT, where=where))
    if text.startswith("/"):
        return _confine(store, paths.require_under(root, text, what=WHAT, where=where))
    return _confine(store, paths.join_under(root, text, what=WHAT))


def protocol_names(protocol: str) -> tuple[str, ...]:
    """``protocol`` and the names its filesystem class gives itself."""
    own = fsspec.get_filesystem_class(protocol).protocol
    return (protocol, *((own,) if isinstance(own, str) else own))


def strip_protocol(protocol: str, url: str) -> str:
    """The filesystem path of ``url`` on the filesystem registered as ``protocol``.

    A filesystem class strips only the protocol names it knows itself; one
    registered under another name (``fsspec.register_implementation("countmem",
    MyMemoryFS)``) would keep ``countmem://`` in the path. Such a URL is handed to
    the class under its own first name.

    A class may also inherit another protocol's ``_strip_protocol`` that knows only
    that protocol's name (a ``MemoryFileSystem`` subclass with ``protocol =
    "countmem"`` strips ``memory://`` only). When the scheme survives stripping,
    the path after the scheme is handed to it instead, so that every URI the store
    makes names the path it was made from.
    """
    fs_class = fsspec.get_filesystem_class(protocol)
    scheme, rest = split_protocol(url)
    names = protocol_names(protocol)[1:]
    if scheme and names and scheme not in names:
        url = f"{names[0]}://{rest}"
    path = fs_class._strip_protocol(url)
    used = split_protocol(url)[0]
    if used and f"{used}:" in path and used not in _stripper_names(fs_class):
        path = fs_class._strip_protocol(rest)
    return path


def _stripper_names(fs_class: type) -> tuple[str, ...]:
    """The protocol names of the class that defines ``fs_class._strip_protocol``
    (an HTTP filesystem keeps its scheme in paths on purpose; it knows its names)."""
    for klass in fs_class.__mro__:
        if "_strip_protocol" in vars(klass):
            own = getattr(klass, "protocol", ())
            return (own,) if isinstance(own, str) else tuple(own)
    return ()


def known_protocols() -> set[str]:
    """The protocols fsspec knows: built in, declared by entry points, or registered
    in this process (``fsspec.register_implementation``)."""
    return {*fsspec.available_protocols(), *fsspec.registry}


def unknown_protocol(protocol: str) -> str:
    """The end of an error for a protocol fsspec does not know: the known ones, and
    how to add one."""
    known = ", ".join(sorted(known_protocols()))
    return (f"protocol {protocol!r} is not a known fsspec protocol; known protocols: {known}. "
            "A filesystem of your own is registered with fsspec.register_implementation() "
            "(for the fsblob command, in a module named with --plugin MODULE) or an "
            "'fsspec.specs' entry point")


def _confine(store: Store, path: str) -> str:
    """On a local root, also refuse a path that a symlink takes outside it."""
    if store.local_paths:
        real_root = os.path.realpath(store.root)
        real = os.path.realpath(path)
        if not real.startswith(real_root.rstrip("/") + "/"):
            raise PathOutsideRootError(
                f"{WHAT} {path!r} leads outside the store's root "
                f"{store.uri(store.root)} through a symbolic link"
            )
    return path
