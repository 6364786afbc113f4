"""A download costs one request where the store can stat and read at once (S3, OSS:
one GET of the whole object, whose answer carries size, ETag and checksums, and whose
body is read on where one stream is best), and a re-download of an unchanged file
is one conditional GET answered 304. Counted at the proxy in front of moto; the
bytes are checked whatever the server does with ``Range``."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from fsblob import BlobIntegrityError
from fsblob.transfer import FIRST_READ
from tests.conftest import Case, Meter


@pytest.fixture(params=["s3", "oss"])
def store_case(request: pytest.FixtureRequest) -> Case:
    """The stores whose GET answer tells size, ETag and checksums."""
    return request.getfixturevalue(f"{request.param}_case")


def _stored(case: Case, tmp_path: Path, data: bytes, **extra: object) -> tuple[object, str]:
    manager = case.make(**extra)
    src = tmp_path / "src" / "blob.bin"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(data)
    return manager, manager.upload(src)


def test_a_small_file_is_one_get(store_case: Case, tmp_path: Path) -> None:
    data = os.urandom(1024)
    manager, uri = _stored(store_case, tmp_path, data)
    store_case.server.reset_stats()
    got = manager.download(uri, tmp_path / "out")
    assert Path(got).read_bytes() == data
    assert [(m, s) for m, _, s in store_case.server.answers] == [("GET", 200)], \
        store_case.server.answers


def test_an_unchanged_file_is_one_get_answered_304(store_case: Case, tmp_path: Path) -> None:
    data = os.urandom(5000)
    manager, uri = _stored(store_case, tmp_path, data)
    got = Path(manager.download(uri, tmp_path / "out"))
    store_case.server.reset_stats()
    meter = Meter()
    assert manager.download(uri, tmp_path / "out", callback=meter) == str(got)
    assert [(m, s) for m, _, s in store_case.server.answers] == [("GET", 304)]
    assert meter.bytes == 0 and got.read_bytes() == data


@pytest.mark.parametrize("change", ["edited", "removed"])
def test_an_edited_or_removed_copy_is_fetched_again_in_one_get(
        store_case: Case, tmp_path: Path, change: str) -> None:
    """The freshness record no longer matches the local copy: no If-None-Match (whose
    304 would only cost a second request), one GET of the object."""
    data = os.urandom(5000)
    manager, uri = _stored(store_case, tmp_path, data)
    got = Path(manager.download(uri, tmp_path / "out"))
    if change == "edited":
        got.write_bytes(b"edited locally")
    else:
        got.unlink()
    store_case.server.reset_stats()
    manager.download(uri, tmp_path / "out")
    assert got.read_bytes() == data
    assert [(m, s) for m, _, s in store_case.server.answers] == [("GET", 200)]


def test_a_replaced_file_of_the_same_size_is_fetched_again(store_case: Case, tmp_path: Path) -> None:
    manager, uri = _stored(store_case, tmp_path, b"a" * 3000)
    got = Path(manager.download(uri, tmp_path / "out"))
    _stored(store_case, tmp_path, b"b" * 3000)
    store_case.server.reset_stats()
    manager.download(uri, tmp_path / "out")
    assert got.read_bytes() == b"b" * 3000
    assert [(m, s) for m, _, s in store_case.server.answers] == [("GET", 200)]


@pytest.mark.parametrize("ignore_ranges", [False, True])
@pytest.mark.parametrize("size", [0, 63, FIRST_READ, FIRST_READ + 1, 3 * FIRST_READ + 17])
@pytest.mark.parametrize("link", ["fast", "slow"])
def test_any_size_arrives_whole_whatever_the_server_does_with_ranges(
        store_case: Case, tmp_path: Path, size: int, ignore_ranges: bool, link: str) -> None:
    """Below multipart_threshold (2 MiB here) a download is one GET. Above it, a link
    judged fast (the first MiB came at one_stream_rate or faster: here any link is)
    reads the rest of that GET's body, one request in all; a slow one (one_stream_rate
    0: no link is fast enough) lets that answer go after its first MiB and fetches
    the rest in ranges."""
    data = os.urandom(size)
    manager, uri = _stored(store_case, tmp_path, data, multipart_threshold="2MiB",
                           multipart_chunksize="1MiB",
                           one_stream_rate="1KiB" if link == "fast" else 0)
    store_case.server.ignore_ranges = ignore_ranges
    try:
        store_case.server.reset_stats()
        got = manager.download(uri, tmp_path / "out")
    finally:
        store_case.server.ignore_ranges = False
    assert Path(got).read_bytes() == data
    gets = [p for m, p, _ in store_case.server.answers if m == "GET"]
    assert len(store_case.server.answers) == len(gets), "a HEAD besides the GETs"
    if size < 2 * FIRST_READ or link == "fast":
        assert len(gets) == 1
    else:  # four ranges of 1 MiB: the one that goes on from the first GET's kept bytes
        # reads that GET on (the first range, or the second when the whole first MiB
        # came in its first piece), the others are GETs of their own
        assert 1 + 2 <= len(gets) <= 1 + 3, gets


def test_the_range_that_goes_on_from_the_first_answer_reads_it_on(store_case: Case,
                                                                  tmp_path: Path) -> None:
    """Four ranges of 281 KiB, through a 2 MiB/s link: the first GET keeps its first
    piece only (``one_stream_rate`` 0: no time to wait for more), less than a range.
    The range that goes on from those bytes reads the same answer on, up to its own
    end, and lets the rest of it go; the other three are GETs of their own. (Had the
    answer been let go, that range would be a fifth GET.)"""
    from urllib.parse import urlsplit

    from benchmarks.shaper import Shaper

    data = os.urandom(FIRST_READ + 100 * 1024)
    settings = {"multipart_threshold": "1MiB", "multipart_chunksize": "256KiB",
                "max_concurrency": 4, "one_stream_rate": 0}
    manager, uri = _stored(store_case, tmp_path, data, **settings)
    key = "endpoint_url" if "endpoint_url" in store_case.config else "endpoint"
    with Shaper(urlsplit(store_case.config[key]).netloc, rate=2 * 2**20, delay=0.005) as shaper:
        slow = store_case.make(**settings, **{key: shaper.url})
        assert slow.fs is not None  # opened: the bucket's check is not counted below
        store_case.server.reset_stats()
        got = slow.download(uri, tmp_path / "out")
    assert Path(got).read_bytes() == data
    statuses = [s for m, _, s in store_case.server.answers]
    assert statuses == [200, 206, 206, 206], statuses


@pytest.mark.parametrize("within", [0.0, None])
def test_the_first_read_stops_once_the_link_is_known_too_slow(
        store_case: Case, tmp_path: Path, within: float | None) -> None:
    """Through a 2 MiB/s link the first MiB takes half a second: a GET asked to stop
    after ``within`` seconds (the time that MiB has at ``one_stream_rate``) keeps what
    came by then and leaves the rest in the answer, to be read on there, as far as
    asked, or to the end. Without ``within`` it reads the whole first MiB."""
    from urllib.parse import urlsplit

    from benchmarks.shaper import Shaper

    data = os.urandom(3 * FIRST_READ)
    _, uri = _stored(store_case, tmp_path, data)
    key = "endpoint_url" if "endpoint_url" in store_case.config else "endpoint"
    with Shaper(urlsplit(store_case.config[key]).netloc, rate=2 * 2**20, delay=0.005) as shaper:
        slow = store_case.make(**{key: shaper.url})
        path, store, fs = slow._resolve(uri), slow._store, slow.fs
        assert store.read_start is not None
        store_case.server.reset_stats()
        start = store.read_start(fs, path, FIRST_READ, "", within)
        try:
            assert start.rest is not None and start.meta.size == len(data)
            kept = len(start.data)
            if within is None:
                assert kept == FIRST_READ
            else:
                assert 0 < kept < FIRST_READ, kept
            assert start.data == data[:kept]
            more: list[bytes] = []
            start.rest.read(more.append, 100_000)
            assert b"".join(more) == data[kept:kept + 100_000]
        finally:
            start.close()
    assert [(m, st) for m, _, st in store_case.server.answers] == [("GET", 200)]


def test_a_large_file_on_a_fast_link_is_one_get(store_case: Case, tmp_path: Path) -> None:
    data = os.urandom(20 * FIRST_READ)
    manager, uri = _stored(store_case, tmp_path, data, one_stream_rate="1KiB")
    store_case.server.reset_stats()
    got = manager.download(uri, tmp_path / "out")
    assert Path(got).read_bytes() == data
    assert [(m, s) for m, _, s in store_case.server.answers] == [("GET", 200)]


def test_a_rest_cut_off_half_way_is_fetched_again_as_a_range(store_case: Case,
                                                             tmp_path: Path) -> None:
    """The rest of the first answer is read once: when it fails, the bytes after the
    first MiB come in a GET of their own, pinned to the version the first one read."""
    data = os.urandom(6 * FIRST_READ)
    manager, uri = _stored(store_case, tmp_path, data, one_stream_rate="1KiB")
    store_case.server.reset_stats()
    store_case.server.kill_after(3 * FIRST_READ)  # the first GET's connection dies

    def come_back() -> None:  # at once: the range is tried again within the deadline
        until = time.monotonic() + 10
        while store_case.server.running and time.monotonic() < until:
            time.sleep(0.005)
        store_case.server.start()

    threading.Thread(target=come_back, daemon=True).start()
    got = manager.download(uri, tmp_path / "out")
    assert Path(got).read_bytes() == data
    statuses = [(m, s) for m, _, s in store_case.server.answers]
    assert statuses[0] == ("GET", 200) and ("GET", 206) in statuses[1:], statuses


def test_bytes_damaged_in_the_first_get_are_refused_then_fetched_again(
        store_case: Case, tmp_path: Path) -> None:
    for size in (1024, FIRST_READ + 4096):
        data = os.urandom(size)
        manager, uri = _stored(store_case, tmp_path, data)
        store_case.server.corrupt_next(1)
        got = manager.download(uri, tmp_path / f"out{size}")
        assert Path(got).read_bytes() == data
        store_case.server.corrupt_next(50)
        with pytest.raises(BlobIntegrityError):
            store_case.make(retries=1).download(uri, tmp_path / f"again{size}")
        store_case.server.corrupt_next(0)
        assert not (tmp_path / f"again{size}" / "blob.bin").exists()


@pytest.mark.parametrize("size", [0, 1000, FIRST_READ, 3 * FIRST_READ + 17])
@pytest.mark.parametrize("link", ["fast", "slow"])
def test_an_answer_without_content_length_arrives_whole_and_checked(
        store_case: Case, tmp_path: Path, size: int, link: str) -> None:
    """A server or proxy that streams its GET answers in chunks, announcing no length:
    the size comes from the body's end (a small object) or from a HEAD of the same
    ETag, and the bytes are still checked (a flipped byte is refused)."""
    data = os.urandom(size)
    settings = {"multipart_threshold": "2MiB", "multipart_chunksize": "1MiB",
                "one_stream_rate": "1KiB" if link == "fast" else 0}
    manager, uri = _stored(store_case, tmp_path, data, **settings)
    store_case.server.chunk_gets = True
    try:
        store_case.server.reset_stats()
        got = manager.download(uri, tmp_path / "out")
        assert Path(got).read_bytes() == data
        assert ("GET", 200) in [(m, s) for m, _, s in store_case.server.answers]
        if size:
            store_case.server.corrupt_next(1)
            with pytest.raises(BlobIntegrityError):
                store_case.make(**settings, retries=0).download(uri, tmp_path / "other")
    finally:
        store_case.server.chunk_gets = False
