"""Integrity that never depends on the store (issue 16), on the suite's real servers.

The proxies answer like older MinIO/Ceph/R2 (``strip_checksums``: no checksum
kept or answered), like a store that knows only COMPOSITE multipart checksums
(``composite_checksums``), and flip one byte of one range or one uploaded body
(``corrupt_next``, ``corrupt_upload_next``); moto itself accepts a wrong CRC on
``CompleteMultipartUpload``. Every corruption must be caught: with no retries
it raises, with retries the bytes are fetched or sent again.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import fsspec
import pytest
import requests

from fsblob import (
    BlobIntegrityError,
    BlobNotFoundError,
    BlobTransferError,
    FsspecBlobManager,
)
from tests.conftest import OSS_BUCKET, S3_BUCKET, Case, Meter
from tests.servers.proxy import FaultProxy

MiB = 2**20
SINGLE: dict[str, Any] = {}
# one_stream_rate 0: no link is fast enough for one stream (on loopback S3 may be);
# "streamed": one GET whatever the size (any link is fast enough)
RANGED = {"multipart_threshold": "1MiB", "multipart_chunksize": "256KiB", "max_concurrency": 4,
          "one_stream_rate": 0}
MULTIPART = {"multipart_threshold": "6MiB", "multipart_chunksize": "5MiB", "max_concurrency": 4,
             "one_stream_rate": 0}
STREAMED = {**RANGED, "one_stream_rate": "1KiB"}
SIZES = {"single": 300_000, "ranged": 2 * MiB + 4321, "multipart": 12 * MiB + 5,
         "streamed": 2 * MiB + 4321}
SETTINGS = {"single": SINGLE, "ranged": RANGED, "multipart": MULTIPART, "streamed": STREAMED}


def _data(size: int, seed: int = 1) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


def _bucket(case: Case) -> str:
    return S3_BUCKET if case.name == "s3" else OSS_BUCKET


def _key(case: Case, name: str) -> str:
    return f"{case.config['root_directory'].strip('/')}/{name}"


@pytest.fixture
def strip(request: pytest.FixtureRequest) -> Iterator[None]:
    """Turns the S3 and OSS proxies into stores that keep and answer no checksums."""
    proxies = []
    for name in ("s3_proxy", "oss_server"):
        if name in request.fixturenames:
            server = request.getfixturevalue(name)
            proxies.append(getattr(server, "proxy", server))
    for proxy in proxies:
        proxy.strip_checksums = True
    yield
    for proxy in proxies:
        proxy.strip_checksums = False
        proxy.corrupt_next(0)
        proxy.corrupt_upload_next(0)
        proxy.fail_next(0)


@pytest.fixture(params=["s3", "oss"])
def stripped(request: pytest.FixtureRequest, s3_proxy: FaultProxy, oss_server: Any,
             strip: None) -> Case:
    """S3 and OSS, each behind a proxy that keeps and answers no checksums."""
    return request.getfixturevalue(f"{request.param}_case")


# -- fsblob's checksum travels with every object ---------------------------------------


@pytest.mark.parametrize("mode", ["single", "multipart"])
def test_every_object_fsblob_writes_carries_its_crc32(case: Case, mode: str, moto_server: Any,
                                                      tmp_path: Path) -> None:
    if case.name == "memory":
        pytest.skip("fsspec's memory filesystem keeps no metadata: a documented gap")
    data = _data(SIZES[mode])
    src = tmp_path / "model.bin"
    src.write_bytes(data)
    uri = case.make(**SETTINGS[mode]).upload(src)
    expected = f"{zlib.crc32(data):08x}"
    if case.name in ("s3", "oss"):
        head = boto3.client("s3", endpoint_url=moto_server.url).head_object(
            Bucket=_bucket(case), Key=_key(case, "model.bin"))
        assert head["Metadata"]["fsblob-crc32"] == expected
        if mode == "multipart":
            assert head["ETag"].strip('"').endswith("-3"), "not a multipart upload"
    elif case.name == "webhdfs":
        path = f"{case.config['root_directory']}/model.bin"
        found = requests.get(f"{case.server.url}/webhdfs/v1{path}",
                             params={"op": "GETXATTRS", "encoding": "hex"}, timeout=10).json()
        assert {"name": "user.fsblob.crc32", "value": f"0x{expected}"} in found["XAttrs"]
    else:
        assert os.getxattr(uri, "user.fsblob.crc32").decode() == expected


# -- downloads: a flipped byte is caught, where the store keeps no checksum ------------


@pytest.mark.parametrize("mode", ["single", "ranged", "multipart", "streamed"])
def test_a_flipped_byte_is_caught_on_a_store_that_keeps_no_checksum(
        stripped: Case, mode: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(_data(SIZES[mode]))
    uri = stripped.make(**SETTINGS[mode]).upload(src)
    proxy = stripped.server
    proxy.corrupt_next(1)
    with pytest.raises(BlobIntegrityError, match="fsblob's CRC32"):
        stripped.make(**SETTINGS[mode], retries=0).download(uri, tmp_path / "once")
    assert list((tmp_path / "once").iterdir()) == []
    proxy.corrupt_next(1)
    caplog.set_level(logging.INFO, logger="fsblob")
    path = stripped.make(**SETTINGS[mode]).download(uri, tmp_path / "out")
    assert Path(path).read_bytes() == src.read_bytes()
    assert "verified by fsblob's CRC32" in caplog.text
    assert "failed (attempt 1)" in caplog.text, "the damaged copy was not fetched again"


@pytest.mark.parametrize("mode", ["single", "ranged"])
def test_a_flipped_byte_is_caught_on_webhdfs(webhdfs_case: Case, mode: str,
                                             tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(_data(SIZES[mode]))
    uri = webhdfs_case.make(**SETTINGS[mode]).upload(src)
    server = webhdfs_case.server
    server.corrupt_next(1)
    try:
        with pytest.raises(BlobIntegrityError, match="fsblob's CRC32"):
            webhdfs_case.make(**SETTINGS[mode], retries=0).download(uri, tmp_path / "once")
        server.corrupt_next(1)
        path = webhdfs_case.make(**SETTINGS[mode]).download(uri, tmp_path / "out")
    finally:
        server.corrupt_next(0)
    assert Path(path).read_bytes() == src.read_bytes()


class _ContentMd5:
    """An HTTP server that sends ``Content-MD5`` (as Azure Blob and many static file
    servers do): moto's single-part ETag, base64."""

    def on_request(self, req: Any, upstream: Any) -> None:
        return None

    def on_response(self, req: Any, resp: Any, upstream: Any) -> None:
        etag = resp.headers.get("etag", "").strip('"')
        if req.method in ("GET", "HEAD") and len(etag) == 32 and "content-range" not in resp.headers:
            resp.headers["content-md5"] = base64.b64encode(bytes.fromhex(etag)).decode()


@pytest.mark.parametrize("settings", [SINGLE, RANGED], ids=["single", "ranged"])
def test_a_flipped_byte_is_caught_on_the_generic_path(moto_server: Any, s3_case: Case,
                                                      settings: dict[str, Any],
                                                      tmp_path: Path) -> None:
    """fsspec's ``http`` filesystem, through a proxy that flips a byte: checked by the
    ``Content-MD5`` the server sends (one stream: an MD5 does not combine over ranges)."""
    data = _data(SIZES["ranged"])
    prefix = s3_case.config["root_directory"]
    boto3.client("s3", endpoint_url=moto_server.url).put_object(
        Bucket=S3_BUCKET, Key=f"{prefix}/big.bin", Body=data, ACL="public-read")
    with FaultProxy(moto_server.url, translator=_ContentMd5()) as proxy:
        root = f"{proxy.url}/{S3_BUCKET}/{prefix}"
        proxy.corrupt_next(1)
        with pytest.raises(BlobIntegrityError, match="MD5"):
            FsspecBlobManager({"root_directory": root, "retries": 0, **settings}).download(
                "big.bin", tmp_path / "once")
        proxy.corrupt_next(1)
        got = FsspecBlobManager({"root_directory": root, **settings}).download(
            "big.bin", tmp_path / "out")
    assert Path(got).read_bytes() == data


# -- objects fsblob did not write -------------------------------------------------------


def test_foreign_objects_are_checked_by_their_etags(s3_case: Case, s3_proxy: FaultProxy,
                                                    strip: None, moto_server: Any,
                                                    tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """No fsblob checksum, no store checksum: a single-part object by its MD5 ETag,
    a multipart one by its ETag recomputed from per-part MD5s."""
    client = boto3.client("s3", endpoint_url=moto_server.url)
    single, multi = _data(3 * MiB, 1), _data(12 * MiB + 5, 2)
    client.put_object(Bucket=S3_BUCKET, Key=_key(s3_case, "single.bin"), Body=single)
    _multipart(client, _key(s3_case, "multi.bin"), multi, 5 * MiB)
    caplog.set_level(logging.INFO, logger="fsblob")
    for name, data, settings in (("single.bin", single, RANGED), ("multi.bin", multi, MULTIPART)):
        s3_proxy.corrupt_next(1)
        with pytest.raises(BlobIntegrityError, match="ETag"):
            s3_case.make(retries=0, **settings).download(name, tmp_path / "once")
        got = s3_case.make(**settings).download(name, tmp_path / "out")
        assert Path(got).read_bytes() == data
    assert "verified by the MD5 ETag" in caplog.text
    assert "verified by the multipart ETag (MD5 of 3 part MD5s)" in caplog.text


def test_an_object_that_cannot_be_checked_says_so(s3_case: Case, s3_proxy: FaultProxy,
                                                  strip: None, moto_server: Any,
                                                  tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A multipart ETag of a part size the store does not tell and no tool uses:
    downloaded (the same bytes twice), logged as not verified, never as verified."""
    client = boto3.client("s3", endpoint_url=moto_server.url)
    data = _data(13 * MiB, 3)
    _multipart(client, _key(s3_case, "odd.bin"), data, 6 * MiB)
    caplog.set_level(logging.INFO, logger="fsblob")
    s3_proxy.ignore_part_numbers = True
    try:
        got = s3_case.make(**MULTIPART).download("odd.bin", tmp_path / "out")
    finally:
        s3_proxy.ignore_part_numbers = False
    assert Path(got).read_bytes() == data
    assert "not verified" in caplog.text
    assert "verified by" not in caplog.text


def test_memory_downloads_say_they_are_not_verified(memory_case: Case, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    manager = memory_case.make()
    uri = manager.upload(_write(tmp_path / "a.bin", 1000))
    caplog.set_level(logging.INFO, logger="fsblob")
    manager.download(uri, tmp_path / "out")
    assert "not verified: size only" in caplog.text


def _write(path: Path, size: int) -> Path:
    path.write_bytes(_data(size))
    return path


def _multipart(client: Any, key: str, data: bytes, part: int) -> None:
    upload = client.create_multipart_upload(Bucket=S3_BUCKET, Key=key)
    parts = []
    for number, start in enumerate(range(0, len(data), part), 1):
        answer = client.upload_part(Bucket=S3_BUCKET, Key=key, UploadId=upload["UploadId"],
                                    PartNumber=number, Body=data[start:start + part])
        parts.append({"PartNumber": number, "ETag": answer["ETag"]})
    client.complete_multipart_upload(Bucket=S3_BUCKET, Key=key, UploadId=upload["UploadId"],
                                     MultipartUpload={"Parts": parts})


# -- uploads --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["single", "multipart"])
def test_a_byte_damaged_on_the_way_up_is_caught_before_the_upload_is_done(
        stripped: Case, mode: str, moto_server: Any, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """The store keeps no checksum and accepts what it gets (moto accepts a wrong
    CRC32 on CompleteMultipartUpload): its ETag of what arrived tells. The damaged
    body is sent again alone; damaged every time, the upload fails."""
    src = tmp_path / "model.bin"
    src.write_bytes(_data(SIZES[mode]))
    stripped.server.corrupt_upload_next(1000)
    with pytest.raises(BlobIntegrityError, match="ETag"):
        stripped.make(**SETTINGS[mode], retries=0).upload(src)
    stripped.server.corrupt_upload_next(1)
    caplog.set_level(logging.INFO, logger="fsblob")
    meter = Meter()
    uri = stripped.make(**SETTINGS[mode], retries=0).upload(src, callback=meter)
    assert "failed (RangeMismatch), trying it again alone" in caplog.text
    assert meter.bytes == len(src.read_bytes()), "the progress of the damaged try was not taken back"
    client = boto3.client("s3", endpoint_url=moto_server.url)
    stored = client.get_object(Bucket=_bucket(stripped), Key=_key(stripped, "model.bin"))
    assert stored["Body"].read() == src.read_bytes()
    assert not client.list_multipart_uploads(Bucket=_bucket(stripped),
                                             Prefix=_key(stripped, "model.bin")).get("Uploads")
    assert Path(stripped.make().download(uri, tmp_path / "out")).read_bytes() == src.read_bytes()


def test_a_store_with_composite_checksums_completes_multipart_uploads(
        s3_case: Case, s3_proxy: FaultProxy, moto_server: Any, tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(_data(SIZES["multipart"]))
    s3_proxy.composite_checksums = True
    try:
        uri = s3_case.make(**MULTIPART, retries=0).upload(src)
    finally:
        s3_proxy.composite_checksums = False
    client = boto3.client("s3", endpoint_url=moto_server.url)
    attributes = client.get_object_attributes(Bucket=S3_BUCKET, Key=_key(s3_case, "model.bin"),
                                              ObjectAttributes=["Checksum"])
    assert attributes["Checksum"]["ChecksumType"] == "COMPOSITE"
    assert Path(s3_case.make(**MULTIPART).download(uri, tmp_path / "out")).read_bytes() == (
        src.read_bytes())


# -- errors keep the store's code -----------------------------------------------------


def test_a_refused_completion_names_the_operation_and_the_code(s3_case: Case,
                                                               s3_proxy: FaultProxy,
                                                               tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(_data(SIZES["multipart"]))
    s3_proxy.fail_next(1, 400, code="InvalidPart",
                       when=lambda method, path: method == "POST" and "uploadId=" in path)
    try:
        with pytest.raises(BlobTransferError, match="CompleteMultipartUpload: InvalidPart"):
            s3_case.make(**MULTIPART).upload(src)
        s3_proxy.fail_next(1, 404, code="NoSuchUpload",
                           when=lambda method, path: method == "PUT" and "partNumber=" in path)
        with pytest.raises(BlobTransferError, match="UploadPart [0-9]: NoSuchUpload") as info:
            s3_case.make(**MULTIPART).upload(src)
        assert not isinstance(info.value, BlobNotFoundError), "an upload's 404 is no missing artifact"
        # a store that checks Content-MD5 refuses a damaged part: it is sent again alone
        s3_proxy.fail_next(1, 400, code="BadDigest",
                           when=lambda method, path: method == "PUT" and "partNumber=2" in path)
        s3_case.make(**MULTIPART, retries=0).upload(src)
        assert s3_proxy.count("PUT", "partNumber=2") >= 3
    finally:
        s3_proxy.fail_next(0)


# -- one version per download ---------------------------------------------------------


class _ReplaceOnce(Meter):
    """Once the first bytes arrive, replace the object with other bytes of its size."""

    def __init__(self, replace: Any) -> None:
        super().__init__()
        self.replace = replace

    def relative_update(self, inc: int = 1) -> None:
        if self.replace is not None:
            replace, self.replace = self.replace, None
            replace()
        super().relative_update(inc)


@pytest.mark.parametrize("backend", ["webhdfs", "memory"])
def test_a_same_size_replacement_during_a_ranged_download_is_not_mixed_in(
        backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Objects written by another tool (no fsblob checksum): the ranges are of one
    version because the file's status is compared at the end."""
    case: Case = request.getfixturevalue(f"{backend}_case")
    manager = case.make(**{**RANGED, "max_concurrency": 2})  # 4 ranges of 2 MiB, 2 at once
    old, new = _data(8 * MiB, 1), _data(8 * MiB, 2)
    fs = manager.fs
    if backend == "webhdfs":
        path = f"{case.config['root_directory']}/model.bin"
        fs = fsspec.filesystem("webhdfs", host="127.0.0.1", port=case.server.port, user="alice")
    else:
        path = f"{manager.root_url.removeprefix('memory://')}/model.bin"
    fs.pipe_file(path, old)
    got = Path(manager.download("model.bin", tmp_path / "out",
                                callback=_ReplaceOnce(lambda: fs.pipe_file(path, new))))
    assert got.read_bytes() in (old, new), "a download mixed two versions"


def test_a_file_that_shrinks_during_a_ranged_webhdfs_download_is_fetched_again_whole(
        webhdfs_case: Case, tmp_path: Path) -> None:
    """Another tool rewrites the file with a writer that is not atomic (fsspec's
    WebHDFS writer: an empty CREATE, then APPENDs): a range past its present end
    answers EOFException. That is the file changing, not a failed store: the
    download goes again and gets one whole version (before, it failed with "Cannot
    seek after EOF": a CI flake of the test above)."""
    manager = webhdfs_case.make(**{**RANGED, "max_concurrency": 2})  # 4 ranges of 2 MiB
    root = webhdfs_case.config["root_directory"]
    fs = fsspec.filesystem("webhdfs", host="127.0.0.1", port=webhdfs_case.server.port,
                           user="alice")
    fs.pipe_file(f"{root}/model.bin", _data(8 * MiB, 1))
    short = _data(MiB, 2)
    on_disk = webhdfs_case.server.root / root.strip("/") / "model.bin"
    got = Path(manager.download("model.bin", tmp_path / "out", callback=_ReplaceOnce(
        lambda: on_disk.write_bytes(short))))  # the rewrite half-way: 1 MiB of 8 so far
    assert got.read_bytes() == short
    eof = [path for _, op, path in webhdfs_case.server.requests if op == "DN:OPEN"]
    assert len(eof) >= 3, eof  # ranges, then the whole file again


def test_a_namenode_without_xattrs_stores_and_says_downloads_are_not_verified(
        webhdfs_case: Case, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``dfs.namenode.xattrs.enabled=false``: the upload goes through (and says the
    checksum is not stored); downloads check size and version, and say so."""
    src = _write(tmp_path / "a.bin", 5000)
    caplog.set_level(logging.INFO, logger="fsblob")
    webhdfs_case.server.xattrs = False
    try:
        uri = webhdfs_case.make().upload(src)
    finally:
        webhdfs_case.server.xattrs = True
    assert "fsblob's checksum is not stored" in caplog.text
    got = webhdfs_case.make().download(uri, tmp_path / "out")
    assert Path(got).read_bytes() == src.read_bytes()
    assert "not verified: size only" in caplog.text and "verified by" not in caplog.text


class _ReplaceAfterPut:
    """Another uploader's PutObject lands right after our upload completes, before
    our check."""

    def __init__(self) -> None:
        self.armed = True

    def on_request(self, req: Any, upstream: Any) -> None:
        return None

    def on_response(self, req: Any, resp: Any, upstream: Any) -> None:
        if (self.armed and req.method == "POST" and "uploadId" in req.path
                and resp.status == 200):  # CompleteMultipartUpload
            self.armed = False
            signed = {"authorization": "AWS test:test"}  # moto checks no signature
            upstream.call("PUT", req.path.split("?")[0], signed, b"another uploader's bytes")


def test_an_upload_replaced_right_after_it_is_no_failure(moto_server: Any, s3_case: Case,
                                                         tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """The check after a multipart upload reads the object If-Match the ETag the store
    answered: a later upload's object is neither compared nor a reason to upload again."""
    src = _write(tmp_path / "a.bin", 11 * 2**20)
    caplog.set_level(logging.INFO, logger="fsblob")
    with FaultProxy(moto_server.url, translator=_ReplaceAfterPut()) as proxy:
        manager = s3_case.make(endpoint_url=proxy.url, retries=0, multipart_threshold="5MiB",
                               multipart_chunksize="5MiB")
        uri = manager.upload(src)
        assert proxy.count("POST") == 2, "uploaded again"  # create and complete, once each
        with fsspec.open(uri, "rb", **manager.storage_options) as f:
            assert f.read() == b"another uploader's bytes"
    assert "was replaced by another upload right after this one" in caplog.text


@pytest.mark.parametrize("store", ["s3", "oss"])
def test_a_put_answered_with_the_md5_sent_needs_no_check_after_it(
        store: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The ETag of a single PutObject is the MD5 of the bytes stored: equal to the
    file's, the upload is verified in one request."""
    case: Case = request.getfixturevalue(f"{store}_case")
    manager = case.make()
    src = _write(tmp_path / "a.bin", 5000)
    manager.fs  # noqa: B018  (opening the store checks the bucket: not counted)
    case.server.reset_stats()
    uri = manager.upload(src)
    assert [m for m, _ in case.server.requests] == ["PUT"]
    with fsspec.open(uri, "rb", **manager.storage_options) as f:
        assert f.read() == src.read_bytes()


def test_webhdfs_bytes_damaged_on_the_way_up_are_caught_by_the_next_download(
        webhdfs_case: Case, tmp_path: Path) -> None:
    """The documented gap: a WebHDFS upload is checked by size only (HDFS's own
    checksum needs CRC32C), but the CRC32 in its xattr is of the bytes sent, so the
    first download refuses the damaged file instead of returning it."""
    src = _write(tmp_path / "a.bin", 300_000)
    webhdfs_case.server.corrupt_upload_next(1)
    uri = webhdfs_case.make().upload(src)
    with pytest.raises(BlobIntegrityError, match="fsblob's CRC32"):
        webhdfs_case.make(retries=0).download(uri, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("size", [3000, 3 * MiB])
def test_a_foreign_object_is_checked_by_the_checksum_its_get_answer_carries(
        s3_case: Case, s3_proxy: FaultProxy, moto_server: Any, tmp_path: Path, size: int,
        caplog: pytest.LogCaptureFixture) -> None:
    """An object another tool wrote with a CRC32 (no fsblob metadata): the one GET asks
    for the store's checksums (``x-amz-checksum-mode``) and fsblob checks the bytes by
    it, in one stream on a fast link, as they arrive."""
    client = boto3.client("s3", endpoint_url=moto_server.url)
    data = _data(size, 4)
    client.put_object(Bucket=S3_BUCKET, Key=_key(s3_case, "crc.bin"), Body=data,
                      ChecksumAlgorithm="CRC32")
    settings = {"one_stream_rate": "1KiB", "multipart_threshold": "2MiB"}
    caplog.set_level(logging.INFO, logger="fsblob")
    manager = s3_case.make(**settings)
    assert manager.fs is not None  # opened: the bucket's HEAD is not counted below
    s3_proxy.reset_stats()
    got = manager.download("crc.bin", tmp_path / "out")
    assert Path(got).read_bytes() == data
    assert [(m, s) for m, _, s in s3_proxy.answers] == [("GET", 200)]
    assert "verified by the store's full-object CRC32" in caplog.text
    s3_proxy.corrupt_next(1)
    with pytest.raises(BlobIntegrityError, match="the store's full-object CRC32"):
        s3_case.make(retries=0, **settings).download("crc.bin", tmp_path / "once")


@pytest.mark.parametrize("what", ["pointer", "manifest"])
@pytest.mark.parametrize("store", ["s3", "oss"])
def test_a_flipped_byte_in_fsblobs_bookkeeping_is_refused_then_read_again(
        store: str, what: str, request: pytest.FixtureRequest, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """A tree's pointer and manifest are read like any download, their bytes checked
    (by the checksum the GET's answer carries: botocore does not check a body on its
    own any more)."""
    case: Case = request.getfixturevalue(f"{store}_case")
    tree = tmp_path / "model"
    _write(tree / "weights.bin" if tree.mkdir() is None else tree, 5000)
    case.make().upload(tree)
    ending = "/model" if what == "pointer" else ".json"
    case.server.corrupt_next(1, ending=ending)
    with pytest.raises(BlobIntegrityError, match="do not match"):
        case.make(retries=0).download("model", tmp_path / "once")
    caplog.set_level(logging.INFO, logger="fsblob")
    case.server.corrupt_next(1, ending=ending)
    got = case.make().download("model", tmp_path / "out")
    assert (Path(got) / "weights.bin").read_bytes() == _data(5000)
    assert "failed (attempt 1)" in caplog.text, "the damaged answer was not read again"


class _ChangeTheTail(Meter):
    """At the first bytes sent, rewrite the last MiB of ``path`` in place."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path, self.done = path, False

    def relative_update(self, inc: int = 1) -> None:
        if not self.done:
            self.done = True
            with open(self.path, "r+b") as f:
                f.seek(-MiB, os.SEEK_END)
                f.write(_data(MiB, seed=9))
        super().relative_update(inc)


@pytest.mark.parametrize("store", ["s3", "oss"])
def test_a_file_changed_while_its_parts_are_sent_is_refused_and_nothing_stored(
        store: str, request: pytest.FixtureRequest, moto_server: Any, tmp_path: Path) -> None:
    """Its CRC32 (in its metadata) is taken before sending, each part's MD5 just before
    the part is sent: a change to the last part while the first are sent leaves parts
    whose CRC32s no longer make the file's, so the upload fails, is aborted, and the
    name keeps what it held."""
    case: Case = request.getfixturevalue(f"{store}_case")
    src = tmp_path / "model.bin"
    size = 20 * MiB + 5
    src.write_bytes(_data(size))
    settings = {**MULTIPART, "multipart_chunksize": "1MiB", "max_concurrency": 2}  # 8 MiB parts
    manager = case.make(**settings, retries=0)
    uri = manager.upload(src)
    assert case.server.count("PUT", "partNumber=3") == 1  # hashed once part 1 or 2 is sent
    client = boto3.client("s3", endpoint_url=moto_server.url)  # the OSS server keeps it in moto
    before = src.read_bytes()
    src.write_bytes(_data(size, seed=2))
    with pytest.raises(BlobIntegrityError, match="changed while"):
        manager.upload(src, callback=_ChangeTheTail(src))
    assert Path(manager.download(uri, tmp_path / "out")).read_bytes() == before
    assert not client.list_multipart_uploads(
        Bucket=_bucket(case), Prefix=_key(case, "model.bin")).get("Uploads")
