"""URI resolution: absolute paths are paths in the store's namespace, and URIs of
filesystems registered under other protocol names resolve.

An absolute path below the root is accepted as it is (AIFlow's HDFS manager
returned such paths, and AIFlow persisted them); anywhere else it is refused
before any I/O, never re-rooted below the root.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from fsblob import FsspecBlobManager, PathOutsideRootError
from tests.conftest import Case, Meter
from tests.test_contract import _file


def _absolute(manager, *names: str) -> str:
    """``names`` below the root, as an absolute path in the store's own namespace."""
    return "/" + "/".join([manager._store.root.strip("/"), *names])


def test_absolute_path_below_the_root_downloads_that_file(case: Case, tmp_path: Path) -> None:
    """Not ``<root>/<root>/file1``, even when such a file exists."""
    manager = case.make()
    real = _file(tmp_path / "file1", 3000, seed=1)
    manager.upload(real)
    root_segments = manager._store.root.strip("/").split("/")
    decoy = _file(tmp_path / "decoy", 3000, seed=2)
    nested = "/".join([manager._store.root.rstrip("/"), *root_segments, "file1"])
    manager.fs.makedirs(nested.rsplit("/", 1)[0], exist_ok=True)
    manager.fs.pipe_file(nested, decoy.read_bytes())  # another tool's <root>/<root>/file1
    assert manager.exists("/".join([*root_segments, "file1"]))  # relative: the decoy is there
    path = manager.download(_absolute(manager, "file1"), tmp_path / "out")
    assert Path(path).read_bytes() == real.read_bytes() != decoy.read_bytes()
    assert manager.exists(_absolute(manager, "file1"))


def test_absolute_path_outside_the_root_is_refused_before_any_io(case: Case, tmp_path: Path) -> None:
    """On S3, '/etc/hostname' used to become the key '<root>/etc/hostname'."""
    manager = case.make()
    _file(tmp_path / "etc" / "hostname")
    manager.upload(tmp_path / "etc")  # <root>/etc/hostname exists: re-rooting would find it
    root = manager._store.root.strip("/")
    meter, reads = Meter(), case.reads()
    requests = len(case.server.requests) if case.server is not None else 0
    parent = root.rpartition("/")[0]
    bads = ["/etc/hostname", f"/{root}2/x.bin", "/x.bin", *([f"/{parent}/x.bin"] if parent else [])]
    for bad in bads:
        for call in (lambda p: manager.download(p, tmp_path / "out", callback=meter),
                     manager.exists, manager.delete):
            with pytest.raises(PathOutsideRootError, match="outside the store's root"):
                call(bad)
    assert not (tmp_path / "out").exists()
    assert case.reads() == reads and meter.transfers == 0
    if case.server is not None:
        assert len(case.server.requests) == requests, "a refused path reached the server"


class _AliasedMemory(MemoryFileSystem):
    """A filesystem class registered under a name it does not know itself."""


def test_a_filesystem_registered_under_another_name_downloads_its_own_uris(tmp_path: Path) -> None:
    name = "fsblobaliasmem"
    fsspec.register_implementation(name, _AliasedMemory, clobber=True)
    root = f"r-{uuid.uuid4().hex[:8]}"
    manager = FsspecBlobManager({"root_directory": f"{name}:///{root}"})
    assert manager.root_url == f"{name}:///{root}"
    src = _file(tmp_path / "x.bin", 2000)
    uri = manager.upload(src)
    assert uri == f"{name}:///{root}/x.bin"
    assert Path(manager.download(uri, tmp_path / "out")).read_bytes() == src.read_bytes()
    assert manager.exists(uri) and manager.exists(f"/{root}/x.bin")
    assert manager.ls() == [uri]
    for bad in (f"{name}:///elsewhere/x.bin", f"{name}:///{root}2/x.bin", "memory:///elsewhere/x.bin",
                "file:///etc/passwd"):
        with pytest.raises(PathOutsideRootError):
            manager.download(bad, tmp_path / "out2")
