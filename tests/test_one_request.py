"""A download costs one request where the store can stat and read at once (S3: one
GET whose answer carries size, ETag and checksums), and a re-download of an
unchanged file is one conditional GET answered 304. Counted at the proxy in front
of moto; the bytes are checked whatever the server does with ``Range``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fsblob import BlobIntegrityError
from fsblob.transfer import FIRST_READ
from tests.conftest import Case, Meter


def _stored(case: Case, tmp_path: Path, data: bytes, **extra: object) -> tuple[object, str]:
    manager = case.make(**extra)
    src = tmp_path / "src" / "blob.bin"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(data)
    return manager, manager.upload(src)


def test_a_small_file_is_one_get(s3_case: Case, tmp_path: Path) -> None:
    data = os.urandom(1024)
    manager, uri = _stored(s3_case, tmp_path, data)
    s3_case.server.reset_stats()
    got = manager.download(uri, tmp_path / "out")
    assert Path(got).read_bytes() == data
    assert [(m, s) for m, _, s in s3_case.server.answers] == [("GET", 206)], \
        s3_case.server.answers


def test_an_unchanged_file_is_one_get_answered_304(s3_case: Case, tmp_path: Path) -> None:
    data = os.urandom(5000)
    manager, uri = _stored(s3_case, tmp_path, data)
    got = Path(manager.download(uri, tmp_path / "out"))
    s3_case.server.reset_stats()
    meter = Meter()
    assert manager.download(uri, tmp_path / "out", callback=meter) == str(got)
    assert [(m, s) for m, _, s in s3_case.server.answers] == [("GET", 304)]
    assert meter.bytes == 0 and got.read_bytes() == data


def test_an_edited_copy_after_a_304_is_fetched_again(s3_case: Case, tmp_path: Path) -> None:
    data = os.urandom(5000)
    manager, uri = _stored(s3_case, tmp_path, data)
    got = Path(manager.download(uri, tmp_path / "out"))
    got.write_bytes(b"edited locally")
    s3_case.server.reset_stats()
    manager.download(uri, tmp_path / "out")
    assert got.read_bytes() == data
    assert [(m, s) for m, _, s in s3_case.server.answers] == [("GET", 304), ("GET", 206)]


def test_a_replaced_file_of_the_same_size_is_fetched_again(s3_case: Case, tmp_path: Path) -> None:
    manager, uri = _stored(s3_case, tmp_path, b"a" * 3000)
    got = Path(manager.download(uri, tmp_path / "out"))
    _stored(s3_case, tmp_path, b"b" * 3000)
    s3_case.server.reset_stats()
    manager.download(uri, tmp_path / "out")
    assert got.read_bytes() == b"b" * 3000
    assert [(m, s) for m, _, s in s3_case.server.answers] == [("GET", 206)]


@pytest.mark.parametrize("ignore_ranges", [False, True])
@pytest.mark.parametrize("size", [0, 63, FIRST_READ, FIRST_READ + 1, 3 * FIRST_READ + 17])
def test_any_size_arrives_whole_whatever_the_server_does_with_ranges(
        s3_case: Case, tmp_path: Path, size: int, ignore_ranges: bool) -> None:
    data = os.urandom(size)
    manager, uri = _stored(s3_case, tmp_path, data, multipart_threshold="2MiB",
                           multipart_chunksize="1MiB")
    s3_case.server.ignore_ranges = ignore_ranges
    try:
        s3_case.server.reset_stats()
        got = manager.download(uri, tmp_path / "out")
    finally:
        s3_case.server.ignore_ranges = False
    assert Path(got).read_bytes() == data
    gets = [p for m, p, _ in s3_case.server.answers if m == "GET"]
    assert len(s3_case.server.answers) == len(gets), "a HEAD besides the GETs"
    if 0 < size <= FIRST_READ:
        assert len(gets) == 1
    elif size == 0:  # a Range of an empty object is "InvalidRange": asked again whole
        assert len(gets) == (1 if ignore_ranges else 2)


def test_bytes_damaged_in_the_first_get_are_refused_then_fetched_again(
        s3_case: Case, tmp_path: Path) -> None:
    for size in (1024, FIRST_READ + 4096):
        data = os.urandom(size)
        manager, uri = _stored(s3_case, tmp_path, data)
        s3_case.server.corrupt_next(1)
        got = manager.download(uri, tmp_path / f"out{size}")
        assert Path(got).read_bytes() == data
        s3_case.server.corrupt_next(50)
        with pytest.raises(BlobIntegrityError):
            s3_case.make(retries=1).download(uri, tmp_path / f"again{size}")
        s3_case.server.corrupt_next(0)
        assert not (tmp_path / f"again{size}" / "blob.bin").exists()
