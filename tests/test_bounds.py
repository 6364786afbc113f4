"""Every operation on every served backend ends within retry_deadline + one request timeout.

The server here accepts connections and never answers (tests/servers/silent.py): a
stuck proxy or a hung namenode. The request timeouts are shortened for speed (they
are fsblob's own settings, :data:`fsblob.retry.CONNECT_TIMEOUT`/``READ_TIMEOUT``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fsblob import (
    BlobTransferError,
    HDFSBlobManager,
    OssBlobManager,
    S3BlobManager,
    retry,
)
from fsblob.manager import FsspecBlobManager
from tests.servers.silent import SilentServer

DEADLINE = 1.0
CONNECT, READ = 1.0, 1.5
BOUND = DEADLINE + CONNECT + READ
SLACK = 1.5  # process scheduling on a shared machine, and creating the client


@pytest.fixture(scope="module")
def silent() -> Iterator[SilentServer]:
    with SilentServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "CONNECT_TIMEOUT", CONNECT)
    monkeypatch.setattr(retry, "READ_TIMEOUT", READ)


def _manager(backend: str, url: str) -> FsspecBlobManager:
    engine = {"retry_deadline": DEADLINE, "retries": 4}
    if backend == "s3":
        return S3BlobManager({"bucket_name": "stuck", "endpoint_url": url, **engine,
                              "access_key_id": "testing", "secret_access_key": "testing"})
    if backend == "oss":
        return OssBlobManager({"bucket": "stuck", "endpoint": url, **engine,
                               "access_key_id": "testing-id", "access_key_secret": "testing-secret"})
    return HDFSBlobManager({"hdfs_url": url, "root_directory": "/stuck", **engine})


def _upload(m: FsspecBlobManager, tmp: Path) -> object:
    src = tmp / "a.txt"
    src.write_bytes(b"x" * 3_000_000)  # past botocore's "Expect: 100-continue" threshold
    return m.upload(src)


OPS: dict[str, Callable[[FsspecBlobManager, Path], object]] = {
    "ls": lambda m, tmp: m.ls(),
    "upload": _upload,
    "download": lambda m, tmp: m.download("a.txt", tmp / "out"),
    "delete": lambda m, tmp: m.delete("a.txt"),
    "exists": lambda m, tmp: m.exists("a.txt"),
}


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("backend", ["s3", "oss", "webhdfs"])
def test_a_stuck_server_fails_within_the_bound(backend: str, op: str, silent: SilentServer,
                                              tmp_path: Path) -> None:
    manager = _manager(backend, silent.url)
    start = time.monotonic()
    with pytest.raises(BlobTransferError) as info:
        OPS[op](manager, tmp_path)
    elapsed = time.monotonic() - start
    assert elapsed < BOUND + SLACK, f"{backend} {op} took {elapsed:.1f}s (bound {BOUND}s)"
    assert f"127.0.0.1:{silent.port}" in str(info.value), "the error names no endpoint"
