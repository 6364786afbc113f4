"""One contract for every backend's byte path (as fsspec's ``tests/abstract`` does):
what the engine asks of a backend, asked of each, on the suite's real servers.

A backend supplies ``meta`` (a typed stat), ``read_range`` (bytes of one version)
and ``upload`` (with fsblob's checksum, verified), or the engine's defaults over
fsspec stand in; either way the same answers are expected.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest
from fsspec.callbacks import NoOpCallback

from fsblob import integrity
from fsblob.chunks import ObjectChanged, TransferSettings
from tests.conftest import Case

MiB = 2**20


def _data(size: int, seed: int) -> bytes:
    return (bytes([seed]) * 7 + bytes(range(256)))[: 263] * (size // 263) + b"z" * (size % 263)


def _engine(case: Case):  # type: ignore[no-untyped-def]
    manager = case.make()
    return manager, manager._transfer, manager._store


def test_meta_of_missing_file_and_directory(case: Case, tmp_path: Path) -> None:
    manager, transfer, _ = _engine(case)
    src = tmp_path / "a.bin"
    src.write_bytes(b"x" * 1000)
    uri = manager.upload(src)
    path = manager._resolve(uri)
    meta = transfer._meta(path)
    assert not meta.is_dir and meta.size == 1000 and meta.token()
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "f").write_bytes(b"1")
    assert transfer._meta(manager._resolve(manager.upload(tmp_path / "tree"))).is_dir
    with pytest.raises(FileNotFoundError):
        transfer._meta(manager._resolve("missing.bin"))


def test_upload_stores_fsblobs_crc32_and_meta_reads_it(case: Case, tmp_path: Path) -> None:
    manager, transfer, _ = _engine(case)
    data = _data(300_000, 1)
    src = tmp_path / "a.bin"
    src.write_bytes(data)
    meta = transfer._meta(manager._resolve(manager.upload(src)))
    if case.name == "memory":
        assert meta.crc32 is None  # the documented gap: no metadata to keep it in
    else:
        assert meta.crc32 == zlib.crc32(data)
    assert isinstance(integrity.choose(meta), integrity.Check)


@pytest.mark.parametrize("start, end", [(0, 300_000), (0, 1), (299_999, 300_000),
                                        (12_345, 200_001)])
def test_read_range_gives_exactly_those_bytes(case: Case, tmp_path: Path, start: int,
                                              end: int) -> None:
    manager, transfer, _ = _engine(case)
    data = _data(300_000, 2)
    src = tmp_path / "a.bin"
    src.write_bytes(data)
    path = manager._resolve(manager.upload(src))
    got: list[bytes] = []
    transfer._reader(path, transfer._meta(path))(start, end, got.append)
    assert b"".join(got) == data[start:end]


def test_a_replaced_object_is_noticed(case: Case, tmp_path: Path) -> None:
    """Pinned backends refuse to read another version (If-Match); the others' meta
    changes, which the engine compares at the end of a download."""
    manager, transfer, _ = _engine(case)
    src = tmp_path / "a.bin"
    src.write_bytes(_data(100_000, 3))
    path = manager._resolve(manager.upload(src))
    before = transfer._meta(path)
    src.write_bytes(_data(100_000, 4))
    manager.upload(src)
    after = transfer._meta(path)
    assert after.token() != before.token()
    if before.pinned:
        with pytest.raises(ObjectChanged):
            transfer._reader(path, before)(0, 1000, lambda data: None)


def test_upload_through_the_byte_path_verifies_and_replaces(case: Case, tmp_path: Path) -> None:
    manager, transfer, _ = _engine(case)
    settings = TransferSettings(1 * MiB, 256 * 1024, 4)
    transfer.settings = settings
    for seed, size in ((5, 10), (6, 3 * MiB + 17), (7, 0)):
        src = tmp_path / "b.bin"
        src.write_bytes(_data(size, seed))
        uri = manager.upload(src, callback=NoOpCallback())
        out = Path(manager.download(uri, tmp_path / f"out{seed}"))
        assert out.read_bytes() == src.read_bytes()
