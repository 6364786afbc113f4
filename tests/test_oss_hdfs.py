"""OSS and WebHDFS specifics, and the client-library defects fsblob works around.

The OSS server is moto behind a translating proxy; the WebHDFS server is an
emulation over a temp directory (tests/servers). The clients are the real ossfs,
oss2 and fsspec.
"""

from __future__ import annotations

import os
from pathlib import Path

import fsspec
import pytest

from fsblob import BlobConfigError, BlobNotFoundError, BlobTransferError, OssBlobManager
from tests.conftest import OSS_BUCKET, Case
from tests.test_contract import _file, _leftovers

MiB = 2**20


def _big(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        for i in range(size // MiB):
            f.write(os.urandom(MiB) if i % 16 == 0 else bytes([i % 256]) * MiB)
    return path


# -- OSS --------------------------------------------------------------------------

def test_oss_uri_is_oss_url_and_legacy_uri_downloads(oss_case: Case, tmp_path: Path) -> None:
    manager = oss_case.make()
    src = _file(tmp_path / "job.zip", 9000)
    uri = manager.upload(src)
    prefix = oss_case.config["root_directory"]
    assert uri == f"oss://{OSS_BUCKET}/{prefix}/job.zip"
    host = oss_case.config["endpoint"].split("://")[1]
    legacy = f"{OSS_BUCKET}.{host}/{prefix}/job.zip"  # what AIFlow's OssBlobManager returned
    assert Path(manager.download(legacy, tmp_path / "out")).read_bytes() == src.read_bytes()
    with pytest.raises(BlobNotFoundError):  # another bucket's legacy URI is just a path below the root
        manager.download(f"other.{host}/{prefix}/job.zip", tmp_path / "out2")


@pytest.mark.slow
def test_oss_file_past_the_resumable_threshold(oss_case: Case, tmp_path: Path) -> None:
    """ossfs switches to oss2's resumable (multipart, ranged) transfers at 100 MiB."""
    manager = oss_case.make()
    src = _big(tmp_path / "big.bin", 104 * MiB)
    uri = manager.upload(src)
    assert oss_case.server.count("POST", "uploads") >= 1, "expected a multipart upload"
    path = manager.download(uri, tmp_path / "out")
    assert Path(path).read_bytes() == src.read_bytes()
    assert os.listdir(tmp_path / "out") == ["big.bin"]


def test_oss_multi_block_upload_avoids_the_append_409(oss_case: Case, tmp_path: Path) -> None:
    """ossfs's open('wb') fails with 409 PositionNotEqualToLength past one 5 MiB block
    (ossfs/file.py:34); fsblob uploads with put_file, one PUT, never through it."""
    manager = oss_case.make()
    src = _big(tmp_path / "blocks.bin", 12 * MiB)
    uri = manager.upload(src)
    assert oss_case.server.count("POST", "append") == 0
    with fsspec.open(uri, "rb", **manager.storage_options) as f:
        assert f.read() == src.read_bytes()


def test_oss_ranged_read_defect_does_not_reach_downloads(oss_case: Case, tmp_path: Path) -> None:
    """ossfs's ranged cat_file returns one byte too many (oss2 ranges are inclusive);
    fsblob downloads whole objects and checks the size of what it received."""
    manager = oss_case.make()
    src = _file(tmp_path / "r.bin", 3 * MiB + 7)
    uri = manager.upload(src)
    path = manager.download(uri, tmp_path / "out")
    assert Path(path).stat().st_size == src.stat().st_size
    assert Path(path).read_bytes() == src.read_bytes()


def test_oss_missing_bucket(oss_case: Case, tmp_path: Path) -> None:
    """A missing bucket is a configuration error naming the key, never "not found"."""
    manager = OssBlobManager({**oss_case.config, "bucket": "no-such-bucket"})
    with pytest.raises(BlobConfigError, match="bucket"):
        manager.exists("anything.bin")
    with pytest.raises(BlobConfigError, match="no-such-bucket"):
        manager.upload(_file(tmp_path / "a.bin"))
    with pytest.raises(BlobConfigError):
        manager.download("a.bin", tmp_path / "out")


def test_oss_listing_cache_does_not_hide_new_objects(oss_case: Case, tmp_path: Path) -> None:
    """ossfs caches listings (and mixes prefixed listings into them); fsblob
    invalidates before it looks, so a fresh object is seen at once."""
    manager = oss_case.make()
    manager.upload(_file(tmp_path / "a.bin"))
    assert len(manager.ls()) == 1
    other = OssBlobManager(oss_case.config)  # another client writes
    other.upload(_file(tmp_path / "b.bin"))
    assert [u.rsplit("/", 1)[1] for u in manager.ls()] == ["a.bin", "b.bin"]
    assert manager.exists("b.bin")


# -- WebHDFS ----------------------------------------------------------------------

def test_webhdfs_uri_keeps_the_server_and_fsspec_opens_it(webhdfs_case: Case, tmp_path: Path) -> None:
    manager = webhdfs_case.make()
    uri = manager.upload(_file(tmp_path / "w.bin", 5000))
    server = webhdfs_case.server
    assert uri == f"webhdfs://127.0.0.1:{server.port}{webhdfs_case.config['root_directory']}/w.bin"
    with fsspec.open(uri, "rb", **manager.storage_options) as f:
        assert f.read() == (tmp_path / "w.bin").read_bytes()
    assert {p.get("user.name") for p in server.request_params} == {"alice"}


def test_webhdfs_file_larger_than_a_block(webhdfs_case: Case, tmp_path: Path) -> None:
    manager = webhdfs_case.make()
    src = _big(tmp_path / "blocks.bin", 9 * MiB)
    uri = manager.upload(src)
    server = webhdfs_case.server
    assert (server.count("DN:CREATE"), server.count("DN:APPEND")) == (1, 0), \
        "one streamed CREATE, not fsspec's 4 MiB APPENDs"
    assert Path(manager.download(uri, tmp_path / "out")).read_bytes() == src.read_bytes()


def test_webhdfs_error_body_served_as_data_is_caught(webhdfs_case: Case, tmp_path: Path) -> None:
    """fsspec's WebHDFS returns a failed datanode read's JSON error as file bytes
    (webhdfs.py _fetch_range has no raise_for_status). fsblob's size check rejects
    them, retries, and delivers the real bytes."""
    manager = webhdfs_case.make()
    src = _file(tmp_path / "d.bin", 200_000)
    uri = manager.upload(src)
    webhdfs_case.server.fail_next(1, op="DN:OPEN")
    path = manager.download(uri, tmp_path / "out")
    assert Path(path).read_bytes() == src.read_bytes()
    assert webhdfs_case.server.count("DN:OPEN") >= 2
    assert _leftovers(tmp_path / "out") == []


def test_webhdfs_rename_that_does_nothing_is_noticed(webhdfs_case: Case, tmp_path: Path) -> None:
    """fsspec ignores RENAME's false. fsblob removes the old object first (HDFS
    renames never overwrite) and checks the temporary is gone."""
    manager = webhdfs_case.make()
    src = _file(tmp_path / "v.bin", 1000, seed=1)
    uri = manager.upload(src)
    _file(src, 2000, seed=2)
    manager.upload(src)
    with fsspec.open(uri, "rb", **manager.storage_options) as f:
        assert f.read() == src.read_bytes()
    mine = Path(webhdfs_case.server.root) / webhdfs_case.config["root_directory"].lstrip("/")
    assert sorted(p.name for p in mine.iterdir()) == [".fsblob", "v.bin"]
    assert not list((mine / ".fsblob").rglob("*.fsblob-part")), "a temporary was left behind"


@pytest.mark.parametrize("backend", ["s3", "oss", "webhdfs"])
def test_outage_is_an_error_not_a_missing_artifact(backend: str, request: pytest.FixtureRequest,
                                                   tmp_path: Path) -> None:
    """fsspec's exists() swallows every error (spec.py exists); fsblob's doesn't:
    a store that answers 503 is not a store without the artifact."""
    case: Case = request.getfixturevalue(f"{backend}_case")
    manager = case.make(retries=1, retry_deadline=5)
    uri = manager.upload(_file(tmp_path / "x.bin"))
    case.server.fail_next(1000)
    try:
        with pytest.raises(BlobTransferError):
            manager.exists(uri)
        with pytest.raises(BlobTransferError):
            manager.delete(uri)
    finally:
        case.server.fail_next(0)
    assert manager.exists(uri)
