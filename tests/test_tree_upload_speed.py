"""Tree uploads to S3 as s3transfer sends a directory (issue 18).

The large files of a tree go under one budget of ``max_concurrency`` requests
(every file's parts in one runner), each checked against the digests the
manifest already holds (Content-MD5, part and multipart ETags, the parts' CRC32s
against the file's), with no HEAD per file and no second hashing pass over the
file before it is sent. Counted at the suite's proxy and the shaping proxy; no
timings (those are the benchmarks').
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from fsspec.callbacks import Callback

from benchmarks.shaper import Shaper
from fsblob import BlobIntegrityError
from tests.conftest import S3_BUCKET, Case

MiB = 2**20
#: With 4 connections, 9 MiB files (above the 8 MiB that go in one batched call, and
#: above half of each connection's share of the tree) go as two parts (5 + 4 MiB).
PARTS = {"multipart_threshold": "5MiB", "multipart_chunksize": "5MiB", "max_concurrency": 4}


def _tree(base: Path, sizes: dict[str, int], tag: str = "v1") -> Path:
    root = base / tag / "model"
    for rel, size in sizes.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    return root


def _files(tree: Path) -> dict[str, bytes]:
    return {p.relative_to(tree).as_posix(): p.read_bytes() for p in tree.rglob("*") if p.is_file()}


LARGE = {"a.bin": 9 * MiB, "b.bin": 9 * MiB, "sub/c.bin": 9 * MiB, "sub/d.bin": 9 * MiB,
         "small.txt": 1000}


class _Reads:
    """Counts opens of the tree's files for reading (audit hook: one per module)."""

    def __init__(self) -> None:
        self.under: str | None = None
        self.count, self._lock = 0, threading.Lock()
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if self.under is None or event != "open" or not isinstance(args[0], str):
            return
        if args[0].startswith(self.under) and args[0].endswith(".bin") and (
                args[1] is None or "r" in str(args[1]) or args[2] == os.O_RDONLY):
            with self._lock:
                self.count += 1


READS = _Reads()


@pytest.fixture
def shaped_s3(s3_case: Case) -> Iterator[tuple[Case, Shaper]]:
    """The S3 case behind the shaping proxy (20 ms each way, no bandwidth cap), so
    that requests overlap and the shaper sees the connections open at once."""
    upstream = urlsplit(s3_case.config["endpoint_url"]).netloc
    with Shaper(upstream, rate=0, delay=0.02) as shaper:
        s3_case.config = {**s3_case.config, "endpoint_url": shaper.url}
        yield s3_case, shaper


def test_a_tree_upload_makes_no_head_per_file_and_hashes_no_file_twice(
        s3_case: Case, tmp_path: Path) -> None:
    manager = s3_case.make(**PARTS)
    src = _tree(tmp_path, LARGE)
    READS.under, READS.count = str(src), 0
    try:
        uri = manager.upload(src)
    finally:
        READS.under = None
    proxy = s3_case.server
    assert proxy.count("PUT", "partNumber=") == 8  # 4 files of 2 parts
    assert _heads_of_files(proxy) == [], "a HEAD per file after its upload"
    # the scan opens each large file once; sending opens each part's window, and the
    # part's hash (just before it is sent) once more: no whole-file pass besides the scan
    assert READS.count <= 4 * (1 + 2 * 2), READS.count
    assert _files(Path(manager.download(uri, tmp_path / "out"))) == _files(src)


def test_the_parts_of_all_files_share_one_budget(
        shaped_s3: tuple[Case, Shaper], tmp_path: Path) -> None:
    case, shaper = shaped_s3
    manager = case.make(**PARTS)
    src = _tree(tmp_path, LARGE)
    manager.fs.ls(S3_BUCKET)  # one warm connection, then count from here
    shaper.reset()
    uri = manager.upload(src)
    assert case.server.count("PUT", "partNumber=") == 8
    # max_concurrency 4: four requests at a time in all (four files at once, each
    # with its own parts in flight, would open 4 x 2)
    assert shaper.peak == 4, shaper.peak
    assert _files(Path(manager.download(uri, tmp_path / "out"))) == _files(src)


def test_a_part_damaged_on_the_way_is_sent_again_alone(s3_case: Case, tmp_path: Path) -> None:
    manager = s3_case.make(**PARTS, retries=0)
    src = _tree(tmp_path, {rel: size for rel, size in LARGE.items() if size > MiB})
    s3_case.server.corrupt_upload_next(1)  # the first part sent arrives damaged
    uri = manager.upload(src)
    assert s3_case.server.count("PUT", "partNumber=") == 8 + 1
    assert s3_case.server.count("POST", "uploadId=") == 4  # one Complete per file
    assert _files(Path(manager.download(uri, tmp_path / "out"))) == _files(src)


class _ChangeAFile(Callback):
    """At the first bytes sent, rewrite ``path`` (same size, other bytes)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path, self.done = path, False

    def relative_update(self, inc: int | None = 1) -> None:
        if not self.done:
            self.done = True
            self.path.write_bytes(os.urandom(self.path.stat().st_size))


def test_a_file_changed_while_the_tree_is_sent_is_an_integrity_failure(
        s3_case: Case, moto_server: Any, tmp_path: Path) -> None:
    manager = s3_case.make(**PARTS, retries=0)
    old = _tree(tmp_path, LARGE)
    first = manager.upload(old)
    before = _files(old)
    src = _tree(tmp_path, LARGE, "v2")
    with pytest.raises(BlobIntegrityError, match="changed while|damaged on the way|BadDigest"):
        manager.upload(src, callback=_ChangeAFile(src / "sub" / "d.bin"))  # sent last
    # the name still holds the first version, whole; no multipart upload is left
    assert _files(Path(manager.download("model", tmp_path / "out"))) == before
    assert manager.download(first, tmp_path / "again")
    client = boto3.client("s3", endpoint_url=moto_server.url)
    prefix = f"{s3_case.config['root_directory']}/.fsblob/"
    assert client.list_multipart_uploads(Bucket=S3_BUCKET, Prefix=prefix).get("Uploads") is None


def test_files_no_larger_than_their_share_go_in_one_put_each(
        s3_case: Case, tmp_path: Path) -> None:
    """Two connections for four 9 MiB files: each file is half of what a connection
    carries, so parts would only add requests and a hashing pass per part."""
    manager = s3_case.make(**{**PARTS, "max_concurrency": 2})
    src = _tree(tmp_path, LARGE)
    uri = manager.upload(src)
    proxy = s3_case.server
    assert proxy.count("PUT", "partNumber=") == 0
    assert proxy.count("POST", "/.fsblob/trees/") == 0  # no multipart upload
    assert proxy.count("PUT", ".bin") == 4
    assert _heads_of_files(proxy) == []
    assert _files(Path(manager.download(uri, tmp_path / "out"))) == _files(src)


def test_a_file_changed_before_its_single_put_is_an_integrity_failure(
        s3_case: Case, tmp_path: Path) -> None:
    manager = s3_case.make(**{**PARTS, "max_concurrency": 1}, retries=0)
    src = _tree(tmp_path, LARGE)
    with pytest.raises(BlobIntegrityError):  # its Content-MD5 is the manifest's
        manager.upload(src, callback=_ChangeAFile(src / "sub" / "d.bin"))  # sent last
    assert not manager.exists("model")


def test_small_files_are_checked_by_their_manifest_md5_and_a_damaged_one_resent(
        s3_case: Case, tmp_path: Path) -> None:
    """Small files go in groups of concurrent PUTs, each with the manifest's MD5 as
    Content-MD5: one damaged on the way is refused by the store and sent again
    (alone), never committed."""
    manager = s3_case.make(retries=0)
    src = _tree(tmp_path, {f"f{i:03d}.txt": 3000 + i for i in range(40)})
    s3_case.server.corrupt_upload_next(1)
    uri = manager.upload(src)
    assert s3_case.server.count("PUT", ".txt") == 40 + 1
    assert _heads_of_files(s3_case.server) == []
    assert _files(Path(manager.download(uri, tmp_path / "out"))) == _files(src)


def _heads_of_files(proxy: Any) -> list[str]:
    """HEADs of a version's files. (Its manifest is looked for once, after the
    pointer is written: a gc that removed it meanwhile makes the upload go again.)"""
    heads = [path.split("?")[0] for method, path in proxy.requests if method == "HEAD"]
    return [p for p in heads if "/.fsblob/trees/" in p and not p.endswith(".json")]
