"""Parallel ranges and parts, end to end on the suite's servers.

Each test counts at a server or proxy what only the parallel path does (several
ranged GETs or OPENs for one download, several parts for one upload, several
connections open at once through the shaping proxy), so it fails if that path
is removed. No timings: those are the benchmarks' business.
"""

from __future__ import annotations

import base64
import os
import sys
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
import pytest

from benchmarks.shaper import Shaper
from fsblob import BlobTransferError
from fsblob.local_copy import PART_SUFFIX
from tests.conftest import OSS_BUCKET, S3_BUCKET, Case, Meter
from tests.servers.proxy import Upstream

MiB = 2**20
#: one_stream_rate 0: no link is fast enough for one stream (on loopback S3 may be)
SMALL_PARTS = {"multipart_threshold": "1MiB", "multipart_chunksize": "256KiB", "max_concurrency": 4,
               "one_stream_rate": 0}
SIZE = 2 * MiB + 512 * 1024 + 123
RANGES = 4  # one per connection: 641 KiB each (more than 256 KiB, less than 8 x 256 KiB)


class _PartReads:
    """Counts opens for reading of fsblob's download temporaries (a second pass
    over the received bytes, e.g. to hash them). An audit hook cannot be removed,
    so one instance serves the module, switched on per test."""

    def __init__(self) -> None:
        self.on, self.count, self._lock = False, 0, threading.Lock()
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.on or event != "open" or not isinstance(args[0], str):
            return
        if PART_SUFFIX in args[0] and isinstance(args[1], str) and "r" in args[1]:
            with self._lock:
                self.count += 1


PART_READS = _PartReads()


@pytest.fixture
def part_reads() -> Iterator[_PartReads]:
    PART_READS.count, PART_READS.on = 0, True
    yield PART_READS
    PART_READS.on = False


def _data(size: int, seed: int = 1) -> bytes:
    block = os.urandom(64 * 1024) if seed else bytes(64 * 1024)
    return (block * (size // len(block) + 1))[:size]


def _object_gets(case: Case) -> int:
    """GETs of object bytes (no query: not listings, attributes or metadata)."""
    prefix = case.config["root_directory"].strip("/")
    if case.name == "webhdfs":
        return case.server.count("OPEN")
    return sum(1 for method, path in case.server.requests
               if method == "GET" and "?" not in path and f"/{prefix}/" in unquote(path))


@pytest.fixture(params=["s3", "oss", "webhdfs", "memory"])
def ranged_case(request: pytest.FixtureRequest) -> Case:
    """The backends whose downloads go in ranges (Local copies the file)."""
    return request.getfixturevalue(f"{request.param}_case")


def test_large_downloads_go_in_ranges_written_at_their_offsets(ranged_case: Case,
                                                               tmp_path: Path) -> None:
    manager = ranged_case.make(**SMALL_PARTS)
    src = tmp_path / "big.bin"
    src.write_bytes(_data(SIZE))
    uri = manager.upload(src)
    if ranged_case.server is not None:
        ranged_case.server.reset_stats()
    meter = Meter()
    path = manager.download(uri, tmp_path / "out", callback=meter)
    assert Path(path).read_bytes() == src.read_bytes()
    assert meter.bytes == SIZE
    if ranged_case.server is not None:
        assert _object_gets(ranged_case) == RANGES


def test_below_the_threshold_a_download_is_one_stream(ranged_case: Case, tmp_path: Path) -> None:
    if ranged_case.server is None:
        pytest.skip("no server to count requests at")
    manager = ranged_case.make(**{**SMALL_PARTS, "multipart_threshold": SIZE + 1})
    src = tmp_path / "big.bin"
    src.write_bytes(_data(SIZE))
    uri = manager.upload(src)
    ranged_case.server.reset_stats()
    assert Path(manager.download(uri, tmp_path / "out")).read_bytes() == src.read_bytes()
    # one stream; on stores whose first GET also stats (S3), that GET is the stream
    assert _object_gets(ranged_case) == 1
    if ranged_case.name == "s3":
        assert ranged_case.server.count("HEAD") == 0


def test_s3_ranges_are_checked_against_the_stores_crc32_without_a_second_read(
        s3_case: Case, moto_server: Any, tmp_path: Path, part_reads: _PartReads) -> None:
    """moto keeps the CRC32 a client sends with PutObject unchecked: an object whose
    stored CRC32 disagrees with its bytes (and whose MD5 ETag agrees) must not
    download; a good one downloads without its bytes being read a second time."""
    manager = s3_case.make(**SMALL_PARTS, retries=1)
    data = _data(SIZE)
    client = boto3.client("s3", endpoint_url=moto_server.url)
    key = f"{s3_case.config['root_directory']}/big.bin"
    wrong = base64.b64encode((zlib.crc32(data) ^ 1).to_bytes(4, "big")).decode()
    Upstream(moto_server.url).call("PUT", f"/{S3_BUCKET}/{key}", {
        "x-amz-sdk-checksum-algorithm": "CRC32", "x-amz-checksum-crc32": wrong}, data)
    with pytest.raises(BlobTransferError, match="CRC32"):
        manager.download("big.bin", tmp_path / "out")
    assert os.listdir(tmp_path / "out") == []
    assert part_reads.count == 0

    client.put_object(Bucket=S3_BUCKET, Key=key, Body=data, ChecksumAlgorithm="CRC32")
    s3_case.server.reset_stats()
    assert Path(manager.download("big.bin", tmp_path / "out")).read_bytes() == data
    assert _object_gets(s3_case) == RANGES
    assert part_reads.count == 0, "the received file was read again"


def test_oss_ranges_are_checked_against_the_stores_crc64(oss_case: Case, oss_server: Any,
                                                         tmp_path: Path) -> None:
    """An object another tool wrote (no fsblob checksum in its metadata) is checked
    against OSS's CRC64. The emulator answers x-oss-hash-crc64ecma from its cache
    by ETag: make it tell a wrong one, as a store with damaged bytes would."""
    manager = oss_case.make(**SMALL_PARTS, retries=1)
    src = tmp_path / "big.bin"
    src.write_bytes(_data(SIZE))
    manager.fs.put_file(str(src), f"{OSS_BUCKET}/{oss_case.config['root_directory']}/big.bin")
    uri = "big.bin"
    translator = oss_server.proxy.translator
    with translator._lock:
        for etag in translator._crcs:
            translator._crcs[etag] ^= 1
    try:
        with pytest.raises(BlobTransferError, match="CRC64"):
            manager.download(uri, tmp_path / "out")
    finally:
        with translator._lock:
            for etag in translator._crcs:
                translator._crcs[etag] ^= 1
    assert os.listdir(tmp_path / "out") == []
    assert Path(manager.download(uri, tmp_path / "out")).read_bytes() == src.read_bytes()


@pytest.fixture
def shaped_s3(s3_case: Case) -> Iterator[tuple[Case, Shaper]]:
    """The S3 case behind the shaping proxy: 20 ms each way, no bandwidth cap,
    so that requests overlap in time and the shaper sees them open at once."""
    upstream = urlsplit(s3_case.config["endpoint_url"]).netloc
    with Shaper(upstream, rate=0, delay=0.02) as shaper:
        s3_case.config = {**s3_case.config, "endpoint_url": shaper.url}
        yield s3_case, shaper


def test_s3_uploads_go_as_parallel_parts_with_a_full_object_crc32(
        shaped_s3: tuple[Case, Shaper], moto_server: Any, tmp_path: Path,
        part_reads: _PartReads) -> None:
    case, shaper = shaped_s3
    settings = {"multipart_threshold": "6MiB", "multipart_chunksize": "5MiB", "max_concurrency": 4}
    manager = case.make(**settings)
    src = tmp_path / "parts.bin"
    src.write_bytes(_data(12 * MiB))
    manager.fs.ls(S3_BUCKET)  # one warm connection, then count from here
    shaper.reset()
    uri = manager.upload(src)
    assert case.server.count("PUT", "partNumber=") == 3
    assert shaper.peak >= 3, "the parts were not in flight together"

    key = f"{case.config['root_directory']}/parts.bin"
    client = boto3.client("s3", endpoint_url=moto_server.url)
    checksum = client.get_object_attributes(Bucket=S3_BUCKET, Key=key,
                                            ObjectAttributes=["Checksum"])["Checksum"]
    assert checksum["ChecksumType"] == "FULL_OBJECT"
    crc = zlib.crc32(src.read_bytes())
    assert checksum["ChecksumCRC32"] == base64.b64encode(crc.to_bytes(4, "big")).decode()
    assert client.list_multipart_uploads(Bucket=S3_BUCKET, Prefix=key).get("Uploads") is None

    # and back, in ranges, verified by that CRC (a multipart ETag is no MD5)
    case.server.reset_stats()
    shaper.reset()
    path = manager.download(uri, tmp_path / "out")
    assert Path(path).read_bytes() == src.read_bytes()
    assert _object_gets(case) == 1 + 2, \
        "the first GET, read on for the first range, then GETs of the other two (no HEAD)"
    assert case.server.count("HEAD") == 0
    assert shaper.peak >= 3, "the ranges were not in flight together"
    assert part_reads.count == 0


class _FailAPart(Meter):
    """Once the first part's bytes are being read, make the proxy answer the next
    request (a part) with a 400, which is not retried."""

    def __init__(self, proxy: Any) -> None:
        super().__init__()
        self.proxy, self.armed = proxy, True

    def relative_update(self, inc: int = 1) -> None:
        if self.armed:
            self.armed = False
            self.proxy.fail_next(1, status=400)
        super().relative_update(inc)


def test_a_failed_multipart_upload_is_aborted_and_keeps_the_previous_version(
        s3_case: Case, moto_server: Any, tmp_path: Path) -> None:
    manager = s3_case.make(multipart_threshold="6MiB", multipart_chunksize="5MiB", retries=0)
    src = tmp_path / "parts.bin"
    src.write_bytes(b"old")
    uri = manager.upload(src)
    src.write_bytes(_data(12 * MiB))
    with pytest.raises(BlobTransferError):
        manager.upload(src, callback=_FailAPart(s3_case.server))
    assert s3_case.server.count("PUT", "partNumber=") >= 1
    key = f"{s3_case.config['root_directory']}/parts.bin"
    client = boto3.client("s3", endpoint_url=moto_server.url)
    assert client.list_multipart_uploads(Bucket=S3_BUCKET, Prefix=key).get("Uploads") is None
    assert Path(manager.download(uri, tmp_path / "out")).read_bytes() == b"old"



FIVE_MIB_PARTS = {"multipart_threshold": "6MiB", "multipart_chunksize": "5MiB",
                  "max_concurrency": 4}


def test_oss_uploads_go_as_parallel_parts_checked_by_crc64(oss_case: Case, tmp_path: Path) -> None:
    """oss2 checks each part's CRC64 and the whole object's against OSS's answers
    (the emulator computes them from the bytes it stored)."""
    manager = oss_case.make(**FIVE_MIB_PARTS)
    src = tmp_path / "parts.bin"
    src.write_bytes(_data(12 * MiB))
    meter = Meter()
    uri = manager.upload(src, callback=meter)
    assert oss_case.server.count("PUT", "partNumber=") == 3
    assert meter.bytes == 12 * MiB
    assert Path(manager.download(uri, tmp_path / "out")).read_bytes() == src.read_bytes()


def test_a_failed_oss_multipart_upload_is_aborted(oss_case: Case, moto_server: Any,
                                                   tmp_path: Path) -> None:
    manager = oss_case.make(**FIVE_MIB_PARTS, retries=0)
    src = tmp_path / "parts.bin"
    src.write_bytes(b"old")
    uri = manager.upload(src)
    src.write_bytes(_data(12 * MiB))
    with pytest.raises(BlobTransferError):
        manager.upload(src, callback=_FailAPart(oss_case.server))
    key = f"{oss_case.config['root_directory']}/parts.bin"
    client = boto3.client("s3", endpoint_url=moto_server.url)
    assert client.list_multipart_uploads(Bucket=OSS_BUCKET, Prefix=key).get("Uploads") is None
    assert Path(manager.download(uri, tmp_path / "out")).read_bytes() == b"old"



def test_any_async_filesystem_with_ranged_reads_downloads_in_ranges(
        s3_case: Case, moto_server: Any, tmp_path: Path) -> None:
    """fsspec's ``http`` filesystem (asynchronous, ranged ``_cat_file``) on moto's
    public object URLs, through the counting proxy."""
    from fsblob import FsspecBlobManager

    data = _data(SIZE)
    prefix = s3_case.config["root_directory"]
    boto3.client("s3", endpoint_url=moto_server.url).put_object(
        Bucket=S3_BUCKET, Key=f"{prefix}/big.bin", Body=data, ACL="public-read")
    manager = FsspecBlobManager({"root_directory": f"{s3_case.server.url}/{S3_BUCKET}/{prefix}",
                                 **SMALL_PARTS})
    s3_case.server.reset_stats()
    assert Path(manager.download("big.bin", tmp_path / "out")).read_bytes() == data
    assert _object_gets(s3_case) == -(-SIZE // (256 * 1024))  # ranges of multipart_chunksize
