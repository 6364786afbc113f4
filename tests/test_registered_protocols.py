"""Any protocol registered by name round-trips: a URI that ``upload()`` returned
always resolves in ``download()``, ``exists()``, ``ls()`` and ``delete()``.

Covers filesystem classes that inherit another protocol's ``_strip_protocol``
(a ``MemoryFileSystem`` subclass with ``protocol = "countmem"``, whose inherited
method strips ``memory://`` only), classes registered under a name they do not
know themselves, and a ``LocalFileSystem`` subclass.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from fsblob import FsspecBlobManager, PathOutsideRootError


class CountMem(MemoryFileSystem):
    """Counts opens; keeps MemoryFileSystem's ``_strip_protocol`` (``memory://`` only)."""

    protocol = "countmem"
    opened = 0

    def _open(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        CountMem.opened += 1
        return super()._open(*args, **kwargs)


class TwoNames(MemoryFileSystem):
    protocol = ("twonames", "twonames2")


class Aliased(MemoryFileSystem):
    """Registered as ``aliasedmem``, knows itself as ``memory``."""


class CountFile(LocalFileSystem):
    protocol = "countfile"


fsspec.register_implementation("countmem", CountMem, clobber=True)
fsspec.register_implementation("twonames", TwoNames, clobber=True)
fsspec.register_implementation("aliasedmem", Aliased, clobber=True)
fsspec.register_implementation("countfile", CountFile, clobber=True)


def _roots(tmp_path: Path) -> list[str]:
    tag = uuid.uuid4().hex[:8]
    return [f"countmem://{tag}/a", f"countmem:///{tag}/b", f"twonames://{tag}/c",
            f"aliasedmem://{tag}/d", f"aliasedmem:///{tag}/e", f"countfile://{tmp_path}/f"]


@pytest.mark.parametrize("index", range(6))
def test_uploaded_uri_resolves_everywhere(index: int, tmp_path: Path) -> None:
    root = _roots(tmp_path)[index]
    manager = FsspecBlobManager({"root_directory": root})
    assert "://" not in manager.root_url.split("://", 1)[1], manager.root_url
    src = tmp_path / "x.bin"
    src.write_bytes(b"payload" * 300)
    uri = manager.upload(src)
    assert uri == f"{manager.root_url}/x.bin"
    assert Path(manager.download(uri, tmp_path / "out")).read_bytes() == src.read_bytes()
    assert manager.exists(uri) and manager.exists("x.bin")
    assert manager.ls() == [uri]
    with pytest.raises(PathOutsideRootError):
        manager.download(manager.root_url + "2/x.bin", tmp_path / "out2")
    manager.delete(uri)
    assert not manager.exists(uri)


def test_countmem_reads_through_its_own_class(tmp_path: Path) -> None:
    manager = FsspecBlobManager({"root_directory": f"countmem://{uuid.uuid4().hex[:8]}"})
    src = tmp_path / "y.bin"
    src.write_bytes(b"y" * 1000)
    before = CountMem.opened
    uri = manager.upload(src)
    assert uri.startswith("countmem:///")
    assert Path(manager.download(uri, tmp_path / "o")).read_bytes() == src.read_bytes()
    assert CountMem.opened > before
