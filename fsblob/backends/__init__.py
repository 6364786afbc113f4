"""Backends: each maps its documented ``blob_manager_config`` keys to a :class:`Store`.

A backend is a function ``(config: Mapping[str, Any]) -> Store``. The built-in ones
are ``local``, ``s3``, ``oss``, ``hdfs`` and ``fsspec`` (any fsspec protocol). A
package adds its own without touching fsblob, either by calling
:func:`register_backend` or by declaring an entry point::

    [options.entry_points]
    fsblob.backends =
        mystore = mypackage.blob:mystore_backend

and then ``blob_manager_config: {backend: mystore, ...its keys...}`` with
``blob_manager_class: fsblob.FsspecBlobManager``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

from fsblob.errors import BlobConfigError
from fsblob.store import Store

Backend = Callable[[Mapping[str, Any]], Store]

ENTRY_POINT_GROUP = "fsblob.backends"

_BUILTIN = {
    "fsspec": "fsblob.backends.generic:store",
    "local": "fsblob.backends.local:store",
    "s3": "fsblob.backends.s3:store",
    "oss": "fsblob.backends.oss:store",
    "hdfs": "fsblob.backends.hdfs:store",
}
_registered: dict[str, Backend] = {}


def register_backend(name: str, backend: Backend) -> None:
    """Make ``backend`` available as ``name``, replacing any earlier registration."""
    if not name or not callable(backend):
        raise TypeError("register_backend needs a name and a callable (config) -> Store")
    _registered[name] = backend


def get_backend(name: str) -> Backend:
    """The backend registered, built in, or declared by an entry point as ``name``."""
    if name in _registered:
        return _registered[name]
    if name in _BUILTIN:
        module, _, attr = _BUILTIN[name].partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as exc:  # a package its extra brings (requests for oss, hdfs)
            if not exc.name or exc.name.partition(".")[0] == "fsblob":
                raise
            raise BlobConfigError(
                f"{name}: the {name!r} backend needs the package {exc.name!r}, which is not "
                f"installed; pip install 'fsblob[{name}]'") from None
    found = entry_points(group=ENTRY_POINT_GROUP, name=name)
    for entry_point in found:
        return entry_point.load()
    known = sorted({*_BUILTIN, *_registered, *(e.name for e in entry_points(group=ENTRY_POINT_GROUP))})
    raise BlobConfigError(
        f"no fsblob backend named {name!r}; known backends: {', '.join(known)}. "
        "Register one with fsblob.register_backend() or an 'fsblob.backends' entry point, "
        "or leave out 'backend' and give root_directory as a URL of any fsspec protocol"
    )
