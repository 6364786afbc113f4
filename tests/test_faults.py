"""Faults injected into real servers: killed mid-transfer, 503s, refused writes, races.

Each case runs on every backend it can reach: the server-backed ones (S3, OSS,
WebHDFS) for server faults, and Local and memory too where the fault is local.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import threading
import time
from pathlib import Path

import fsspec
import pytest

from fsblob import BlobError, BlobTransferError
from tests.conftest import LOCAL_READS, Case
from tests.test_contract import _file, _leftovers
from tests.workers import download as child_download
from tests.workers import download_with_file_limit
from tests.workers import upload as child_upload

SERVED = ["s3", "oss", "webhdfs"]
MiB = 2**20
DEADLINE = 3.0
BOUND = DEADLINE + 35  # the retry deadline, plus one request's timeout (WebHDFS: 30 s idle)


@pytest.fixture(params=["local", *SERVED])
def shared(request: pytest.FixtureRequest) -> Case:
    """The backends that other processes can reach too (not the in-process memory)."""
    return request.getfixturevalue(f"{request.param}_case")


@pytest.fixture(params=SERVED)
def served(request: pytest.FixtureRequest) -> Case:
    case: Case = request.getfixturevalue(f"{request.param}_case")
    yield case
    case.server.start()  # whatever a test did to it
    case.server.fail_next(0)


def _stored(manager, uri: str) -> bytes:
    with fsspec.open(uri, "rb", **manager.storage_options) as f:
        return f.read()


def test_server_killed_mid_download(served: Case, tmp_path: Path) -> None:
    manager = served.make(retries=3, retry_deadline=DEADLINE)
    src = _file(tmp_path / "big.bin", 12 * MiB)
    uri = manager.upload(src)
    out = tmp_path / "out"
    served.server.kill_after(4 * MiB)
    start = time.monotonic()
    with pytest.raises(BlobTransferError) as info:
        manager.download(uri, out)
    elapsed = time.monotonic() - start
    assert elapsed < BOUND, f"took {elapsed:.1f}s to give up"
    assert "big.bin" in str(info.value)
    assert not (out / "big.bin").exists() and list(out.iterdir()) == [], "a partial file was left"

    served.server.start()
    assert Path(manager.download(uri, out)).read_bytes() == src.read_bytes()
    assert _leftovers(out) == []


def test_server_killed_mid_upload_keeps_the_previous_version(served: Case, tmp_path: Path) -> None:
    manager = served.make(retries=3, retry_deadline=DEADLINE)
    src = _file(tmp_path / "model.bin", 12 * MiB, seed=1)
    uri = manager.upload(src)
    previous = src.read_bytes()
    _file(src, 12 * MiB, seed=2)
    served.server.kill_after(4 * MiB)
    start = time.monotonic()
    with pytest.raises(BlobTransferError):
        manager.upload(src)
    assert time.monotonic() - start < BOUND

    served.server.start()
    assert _stored(manager, uri) == previous, "a failed upload damaged the stored version"
    assert manager.upload(src) == uri
    assert _stored(manager, uri) == src.read_bytes()
    assert [u.rsplit("/", 1)[1] for u in manager.ls()] == ["model.bin"]


def test_transient_errors_are_retried_within_the_budget(served: Case, tmp_path: Path) -> None:
    manager = served.make(retries=4, retry_deadline=30)
    src = _file(tmp_path / "r.bin", 300_000)
    served.server.fail_next(2)
    uri = manager.upload(src)
    served.server.fail_next(2)
    assert Path(manager.download(uri, tmp_path / "out")).read_bytes() == src.read_bytes()


def test_transient_errors_beyond_the_budget_fail_clearly(served: Case, tmp_path: Path) -> None:
    manager = served.make(retries=2, retry_deadline=30)
    src = _file(tmp_path / "r.bin", 1000)
    uri = manager.upload(src)
    served.server.fail_next(1000)
    with pytest.raises(BlobTransferError) as info:
        manager.download(uri, tmp_path / "out")
    assert "after 3 attempts" in str(info.value)
    assert "r.bin" in str(info.value)
    assert not (tmp_path / "out" / "r.bin").exists()


@pytest.mark.parametrize("backend, extra", [
    ("s3", {}),  # botocore checks the CRC32 stored with the object
    ("s3", {"config": {"response_checksum_validation": "when_required"}}),  # fsblob's MD5 check
    ("oss", {}),  # oss2 checks the CRC64
])
def test_bytes_corrupted_in_transit_are_detected_and_fetched_again(
    backend: str, extra: dict, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Same size, one byte flipped on the way: caught, fetched again, never delivered."""
    case: Case = request.getfixturevalue(f"{backend}_case")
    manager = case.make(**extra)
    src = _file(tmp_path / "c.bin", 500_000)
    uri = manager.upload(src)
    case.server.corrupt_next(1)
    path = manager.download(uri, tmp_path / "out")
    assert Path(path).read_bytes() == src.read_bytes()
    assert case.reads() == 2, "the corrupt copy was not fetched again"
    case.server.corrupt_next(1000)
    with pytest.raises(BlobTransferError, match="MD5|checksum|CRC|[Ii]nconsistent"):
        manager.download(uri, tmp_path / "out2")
    case.server.corrupt_next(0)
    assert not (tmp_path / "out2" / "c.bin").exists()


def test_not_found_is_not_retried(served: Case, tmp_path: Path) -> None:
    manager = served.make(retries=4, retry_deadline=30)
    manager.fs  # noqa: B018  (opening it checks the bucket: one request, not part of the download)
    before = len(served.server.requests)
    with pytest.raises(FileNotFoundError):
        manager.download("missing.bin", tmp_path / "out")
    # one attempt: the object's HEAD, a listing (is it a directory?), its commit record
    assert len(served.server.requests) - before <= 4, "not found was retried"


def test_eight_processes_and_eight_threads_fetch_once(
    shared: Case, tmp_path: Path
) -> None:
    case = shared
    manager = case.make()
    src = _file(tmp_path / "shared.bin", 4 * MiB)
    uri = manager.upload(src)
    single = _one_download_reads(case, uri, tmp_path)
    reads_before = case.reads()
    out = tmp_path / "out"
    watch = manager.root_url if case.name == "local" else None
    class_path = f"fsblob.{type(manager).__name__}"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(8) as pool:
        pending = pool.starmap_async(child_download, [(class_path, case.config, uri, str(out), watch)] * 8)
        paths: list[str] = []
        threads = [threading.Thread(target=lambda: paths.append(manager.download(uri, out)))
                   for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        children = pending.get(timeout=120)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    assert len(paths) == 8 and set(paths) == {str(out / "shared.bin")}
    assert {(p, d) for p, d, _ in children} == {(str(out / "shared.bin"), digest)}
    assert hashlib.sha256(Path(paths[0]).read_bytes()).hexdigest() == digest
    if case.name == "local":
        fetched = sum(r for _, _, r in children) + (LOCAL_READS.count - reads_before)
    else:
        fetched = case.reads() - reads_before
    assert fetched == single, f"16 downloaders made {fetched} reads; one download makes {single}"


def _one_download_reads(case: Case, uri: str, tmp_path: Path) -> int:
    before = case.reads()
    case.make().download(uri, tmp_path / "single")
    return case.reads() - before


def test_destination_that_cannot_be_created_fails_clearly(case: Case, tmp_path: Path) -> None:
    manager = case.make()
    src = _file(tmp_path / "a.bin", 5000)
    uri = manager.upload(src)
    (tmp_path / "file").write_text("a regular file")
    with pytest.raises(BlobTransferError, match="cannot create the download directory"):
        manager.download(uri, tmp_path / "file" / "sub")
    assert (tmp_path / "file").read_text() == "a regular file"
    assert Path(manager.download(uri, tmp_path / "ok")).read_bytes() == src.read_bytes()


def test_destination_disk_full_leaves_nothing(shared: Case, tmp_path: Path) -> None:
    """The kernel refuses writes past 1 MiB (RLIMIT_FSIZE in a child: EFBIG, like ENOSPC)."""
    case = shared
    manager = case.make()
    src = _file(tmp_path / "big.bin", 3 * MiB)
    uri = manager.upload(src)
    out = tmp_path / "out"
    small = _file(tmp_path / "v1" / "big.bin", 100_000, seed=7)  # an earlier, small version
    manager.upload(small)
    manager.download(uri, out)
    manager.upload(src)
    (out / "keep.txt").write_text("the user's own file")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        error, message, left = pool.apply(
            download_with_file_limit, (f"fsblob.{type(manager).__name__}", case.config, uri,
                                       str(out), MiB))
    assert error == "BlobTransferError", message
    assert "big.bin" in message and "File too large" in message
    assert left == ["big.bin", "keep.txt"], "a partial file or temporary was left behind"
    assert (out / "big.bin").read_bytes() == small.read_bytes(), "the earlier copy was damaged"
    assert (out / "keep.txt").read_text() == "the user's own file"
    assert _stored(manager, uri) == src.read_bytes()


def test_two_processes_uploading_one_name_leave_one_complete_object(
    shared: Case, tmp_path: Path
) -> None:
    case = shared
    manager = case.make()
    versions = []
    for i in range(2):
        src = _file(tmp_path / f"v{i}" / "same.bin", 3 * MiB, seed=10 + i)
        versions.append(src)
    ctx = multiprocessing.get_context("spawn")
    class_path = f"fsblob.{type(manager).__name__}"
    for _ in range(2):
        with ctx.Pool(2) as pool:
            uris = pool.starmap(child_upload, [(class_path, case.config, str(v)) for v in versions])
        assert uris[0] == uris[1]
        stored = _stored(manager, uris[0])
        assert stored in (versions[0].read_bytes(), versions[1].read_bytes()), "a mix was stored"
    assert [u.rsplit("/", 1)[1] for u in manager.ls()] == ["same.bin"]


def test_errors_are_blob_errors_with_the_cause_named(served: Case, tmp_path: Path) -> None:
    manager = served.make(retries=0)
    uri = manager.upload(_file(tmp_path / "e.bin"))
    served.server.stop()
    with pytest.raises(BlobError) as info:
        manager.download(uri, tmp_path / "out")
    text = str(info.value)
    assert served.name in text and "e.bin" in text and "Error" in text
