"""The generic backend end to end on real protocols besides ``memory``: FTP
(pyftpdlib) and HTTP (the standard library's server), each on 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fsblob import BlobNotFoundError, FsspecBlobManager
from tests.servers.ftp import PASSWORD, USER, FtpServer


@pytest.fixture
def ftp(tmp_path: Path) -> Iterator[tuple[FtpServer, Path]]:
    served = tmp_path / "ftp-root"
    (served / "store").mkdir(parents=True)
    with FtpServer(served) as server:
        yield server, served / "store"


def _ftp_manager(server: FtpServer) -> FsspecBlobManager:
    return FsspecBlobManager({"root_directory": f"ftp://127.0.0.1:{server.port}/store",
                              "storage_options": {"username": USER, "password": PASSWORD},
                              "retries": 0})


def test_ftp_round_trip_reupload_and_delete(ftp: tuple[FtpServer, Path], tmp_path: Path) -> None:
    server, store = ftp
    manager = _ftp_manager(server)
    src = tmp_path / "model.txt"
    src.write_bytes(b"version-1")
    uri = manager.upload(src)
    assert manager.ls() == [uri]
    out = tmp_path / "out"
    assert Path(manager.download(uri, out)).read_bytes() == b"version-1"

    src.write_bytes(b"version-2")  # the same size
    assert manager.upload(src) == uri  # a re-upload replaces the file
    assert (store / "model.txt").read_bytes() == b"version-2"
    assert Path(manager.download(uri, out)).read_bytes() == b"version-2", "stale copy kept"

    manager.delete(uri)
    assert manager.ls() == []
    assert [n for n in os.listdir(store) if n != ".fsblob"] == []
    assert not list(store.rglob("*.fsblob-part")), "a temporary was left on the server"
    with pytest.raises(BlobNotFoundError):
        manager.download(uri, out)
    assert "ftp-secret-1" not in repr(manager)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    served = tmp_path / "web"
    (served / "store").mkdir(parents=True)
    handler = functools.partial(_Quiet, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/store", served / "store"
    finally:
        server.shutdown()
        server.server_close()


def test_http_last_modified_without_etag_is_a_version(web: tuple[str, Path], tmp_path: Path) -> None:
    """The server sends Last-Modified and no ETag: a same-size change is fetched again."""
    root, store = web
    manager = FsspecBlobManager({"root_directory": root, "retries": 0})
    served = store / "table.csv"
    served.write_bytes(b"a,b\n1,2\n")
    os.utime(served, (1_700_000_000, 1_700_000_000))
    out = tmp_path / "out"
    assert Path(manager.download("table.csv", out)).read_bytes() == b"a,b\n1,2\n"

    served.write_bytes(b"a,b\n3,4\n")
    os.utime(served, (1_700_000_100, 1_700_000_100))
    assert Path(manager.download("table.csv", out)).read_bytes() == b"a,b\n3,4\n", "stale copy kept"
