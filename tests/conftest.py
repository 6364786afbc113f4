"""Backends under test, each on a real filesystem or a real server on 127.0.0.1.

``case`` runs a test on every backend: Local, fsspec's memory, S3 (moto's server
behind a fault-injecting proxy), OSS (moto behind an OSS-dialect translating
proxy) and WebHDFS (a WebHDFS REST server over a temp directory). The servers
start once per session, from the test suite itself, and stop at its end.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from fsspec.callbacks import Callback

# Throwaway credentials, and no AWS metadata look-ups: traffic stays on loopback.
os.environ.update({
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "NO_PROXY": "127.0.0.1,localhost",
})
for _name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_name, None)

from fsblob import (  # noqa: E402
    FsspecBlobManager,
    HDFSBlobManager,
    LocalBlobManager,
    OssBlobManager,
    S3BlobManager,
)
from tests.servers.moto import MotoServer  # noqa: E402
from tests.servers.oss import OssServer  # noqa: E402
from tests.servers.proxy import FaultProxy, Upstream  # noqa: E402
from tests.servers.webhdfs import WebHdfsServer  # noqa: E402
from tests.workers import LocalReads  # noqa: E402

BACKENDS = ["local", "memory", "s3", "oss", "webhdfs"]
S3_BUCKET = "fsblob-test"
OSS_BUCKET = "fsblob-oss"


class Meter(Callback):
    """An fsspec callback counting transfers started (``set_size``) and bytes moved."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.transfers = 0
        self.bytes = 0

    def set_size(self, size: Any) -> None:
        with self._lock:
            self.transfers += 1

    def relative_update(self, inc: int = 1) -> None:
        with self._lock:
            self.bytes += inc


LOCAL_READS = LocalReads()


@dataclass
class Case:
    """One backend under test.

    ``make(**extra)`` builds a manager on this test's root (the same root on
    every call); ``reads()`` counts reads of stored objects' bytes since the test
    began, at the server where there is one (-1: not observable, use a
    :class:`Meter`); ``server`` is the server or proxy to inject faults into.
    """

    name: str
    config: dict[str, Any]
    manager_class: type[FsspecBlobManager]
    reads: Callable[[], int]
    server: Any = None

    def make(self, **extra: Any) -> FsspecBlobManager:
        return self.manager_class({**self.config, **extra})


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-test cache directory and HOME (oss2 writes checkpoints under HOME)."""
    monkeypatch.setenv("FSBLOB_CACHE_DIR", str(tmp_path / "fsblob-cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    with MotoServer() as server:
        for bucket in (S3_BUCKET, OSS_BUCKET):
            Upstream(server.url).call("PUT", f"/{bucket}")
        yield server


@pytest.fixture(scope="session")
def s3_proxy(moto_server: MotoServer) -> Iterator[FaultProxy]:
    with FaultProxy(moto_server.url) as proxy:
        yield proxy


@pytest.fixture(scope="session")
def oss_server(moto_server: MotoServer) -> Iterator[OssServer]:
    with OssServer(moto_server.url) as server:
        yield server


@pytest.fixture(scope="session")
def webhdfs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebHdfsServer]:
    with WebHdfsServer(tmp_path_factory.mktemp("hdfs")) as server:
        yield server


def _unique() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def local_case(tmp_path: Path) -> Case:
    root = tmp_path / "store"
    LOCAL_READS.root, LOCAL_READS.count = os.path.realpath(root), 0
    return Case("local", {"root_directory": str(root)}, LocalBlobManager,
                reads=lambda: LOCAL_READS.count)


@pytest.fixture
def memory_case() -> Case:
    return Case("memory", {"root_directory": f"memory://{_unique()}"}, FsspecBlobManager,
                reads=lambda: -1)


@pytest.fixture
def s3_case(s3_proxy: FaultProxy) -> Case:
    s3_proxy.reset_stats()
    prefix = _unique()
    config = {"bucket_name": S3_BUCKET, "root_directory": prefix, "endpoint_url": s3_proxy.url,
              "access_key_id": "testing", "secret_access_key": "testing",
              "region_name": "us-east-1"}
    return Case("s3", config, S3BlobManager, server=s3_proxy,
                reads=lambda: _object_gets(s3_proxy, prefix))


@pytest.fixture
def oss_case(oss_server: OssServer) -> Case:
    proxy = oss_server.proxy
    assert proxy is not None
    proxy.reset_stats()
    prefix = _unique()
    config = {"endpoint": oss_server.endpoint, "bucket": OSS_BUCKET, "root_directory": prefix,
              "access_key_id": "testing-id", "access_key_secret": "testing-secret"}
    return Case("oss", config, OssBlobManager, server=proxy,
                reads=lambda: _object_gets(proxy, prefix))


@pytest.fixture
def webhdfs_case(webhdfs_server: WebHdfsServer) -> Case:
    webhdfs_server.reset_stats()
    root = f"/{_unique()}"
    config = {"hdfs_url": webhdfs_server.url, "hdfs_user": "alice", "root_directory": root}
    return Case("webhdfs", config, HDFSBlobManager, server=webhdfs_server,
                reads=lambda: sum(1 for _, op, path in webhdfs_server.requests
                                  if op == "OPEN" and not _bookkeeping(path)))


_MANIFEST = re.compile(r"/\.fsblob/trees/[^/]+/[0-9a-f]{16}-[0-9a-f]{8}\.json$")


def _bookkeeping(path: str) -> bool:
    """Whether a request path reads fsblob's bookkeeping (a manifest), not stored bytes."""
    return bool(_MANIFEST.search(unquote(path.split("?")[0])))


def _object_gets(proxy: FaultProxy, prefix: str) -> int:
    """GETs of object bytes (not listings, bucket queries or manifests, nor those
    answered "304 Not Modified") below ``prefix``."""
    return sum(1 for method, path, status in proxy.answers
               if method == "GET" and status != 304 and f"/{prefix}/" in unquote(path.split("?")[0])
               and "list-type" not in path and not _bookkeeping(path))


@pytest.fixture(params=BACKENDS)
def case(request: pytest.FixtureRequest) -> Case:
    """Each backend in turn."""
    return request.getfixturevalue(f"{request.param}_case")
