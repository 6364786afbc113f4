"""Transfer settings, combinable CRCs and range plans (fsblob/chunks.py)."""

from __future__ import annotations

import itertools
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsblob import BlobConfigError, LocalBlobManager, S3BlobManager
from fsblob.backends.keys import ENGINE_KEYS
from fsblob.chunks import CRC32, TransferSettings, crc64ecma, crc64nvme, plan

MiB = 2**20


@pytest.mark.parametrize(("value", "expected"), [
    (8388608, 8 * MiB), ("8MiB", 8 * MiB), ("8MB", 8 * MiB), ("16 mib", 16 * MiB),
    ("512KiB", 512 * 1024), ("1GB", 2**30), ("1.5MiB", 3 * MiB // 2), ("4096", 4096),
])
def test_sizes_are_bytes_or_strings_with_units(value: object, expected: int) -> None:
    got = TransferSettings.from_config({"multipart_chunksize": value}, "s3")
    assert got.multipart_chunksize == expected


def test_defaults_are_those_of_s3transfer() -> None:
    assert TransferSettings.from_config({}, "s3") == TransferSettings(8 * MiB, 8 * MiB, 10)


@pytest.mark.parametrize(("key", "value"), [
    ("multipart_threshold", "8 lots"), ("multipart_threshold", -1), ("multipart_chunksize", 0),
    ("multipart_chunksize", "8Mi"), ("multipart_chunksize", True), ("max_concurrency", 0),
    ("max_concurrency", 65), ("max_concurrency", "ten"), ("max_concurrency", 2.5),
    ("max_concurrency", False),
])
def test_bad_values_name_the_key_and_the_backend(key: str, value: object) -> None:
    with pytest.raises(BlobConfigError) as info:
        TransferSettings.from_config({key: value}, "oss")
    assert key in str(info.value) and "oss" in str(info.value) and repr(value) in str(info.value)


def test_every_backend_takes_the_keys(tmp_path: Path) -> None:
    assert set(TransferSettings.KEYS) <= set(ENGINE_KEYS)
    keys = {"multipart_threshold": "16MiB", "multipart_chunksize": "16MiB", "max_concurrency": "4"}
    manager = LocalBlobManager({"root_directory": str(tmp_path), **keys})
    assert manager._transfer.settings == TransferSettings(16 * MiB, 16 * MiB, 4)
    with pytest.raises(BlobConfigError, match="max_concurrency"):
        S3BlobManager({"bucket_name": "b", "max_concurrency": "many"})


def test_only_objects_past_the_threshold_and_one_chunk_are_split() -> None:
    s = TransferSettings(8 * MiB, 4 * MiB, 4)
    assert not s.splits(None) and not s.splits(8 * MiB - 1) and s.splits(8 * MiB)
    assert not TransferSettings(1, 8 * MiB, 4).splits(8 * MiB)  # one chunk: nothing to split
    assert not TransferSettings(1, 1 * MiB, 1).splits(8 * MiB)  # nothing in parallel


def test_parts_give_each_connection_about_one_within_one_to_eight_chunks() -> None:
    s = TransferSettings(8 * MiB, 8 * MiB, 10)
    assert s.part_size(40 * MiB) == 8 * MiB  # five ranges of the smallest size
    assert s.part_size(128 * MiB) == 128 * MiB // 10 + 1024 - (128 * MiB // 10) % 1024
    assert s.part_size(10 * 2**30) == 64 * MiB  # big objects: many ranges of 8 chunks


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=6))
def test_combined_crcs_equal_the_crc_of_the_whole(data: bytes, cuts: list[int]) -> None:
    bounds = sorted({0, len(data), *(min(c, len(data)) for c in cuts)})
    pieces = [data[a:b] for a, b in itertools.pairwise(bounds)]
    assert CRC32.of_ranges((CRC32.update(p, 0), len(p)) for p in pieces) == zlib.crc32(data)
    for kind in (crc64nvme(), crc64ecma()):
        assert kind.of_ranges((kind.update(p, 0), len(p)) for p in pieces) == kind.update(data, 0)


def test_crc64_check_values() -> None:
    """The catalogued check values of CRC-64/NVME and CRC-64/XZ (OSS's)."""
    assert crc64nvme().update(b"123456789", 0) == 0xAE8B14860A799888
    assert crc64ecma().update(b"123456789", 0) == 0x995DC9BBDF1939FA


@given(st.integers(1, 10**9), st.integers(1, 2**26))
def test_plans_cover_the_object_once_in_order(size: int, chunk: int) -> None:
    ranges = plan(size, chunk) if size // chunk < 10_000 else plan(size, size // 9_999 + 1)
    assert [start for start, _ in ranges] == [0, *(end for _, end in ranges[:-1])]
    assert (ranges[-1][1] if ranges else 0) == size
