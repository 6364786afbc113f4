"""Odd inputs: query strings in paths, long names, several spellings of one
destination, the umask, and what killed transfers leave behind."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fsblob import InvalidPathError, local_copy
from fsblob.local_copy import PART_SUFFIX, LocalCopies
from tests.conftest import Case
from tests.test_contract import _file

CJK_84 = "字" * 84  # 252 bytes: a name Linux accepts


# -- query strings and fragments ------------------------------------------------------

@pytest.mark.parametrize("hostile", [
    "..?versionId=1", "a/..?versionId=1", "a.bin?versionId=1", "a.bin#frag", "%2e%2e?x=1",
])
def test_query_strings_and_fragments_are_refused_before_io(s3_case: Case, hostile: str,
                                                           tmp_path: Path) -> None:
    manager = s3_case.make()
    manager.fs  # noqa: B018 (opened first, so the count below is the operation's alone)
    before = len(s3_case.server.requests)
    for text in (hostile, f"{manager.root_url}/{hostile}"):
        with pytest.raises(InvalidPathError):
            manager.download(text, tmp_path / "out")
        with pytest.raises(InvalidPathError):
            manager.exists(text)
    assert len(s3_case.server.requests) == before, "the server was asked"


# -- long names ----------------------------------------------------------------------

def test_temporaries_fit_in_255_bytes(tmp_path: Path) -> None:
    for name in (CJK_84, "a" * 255, "é" * 127 + "a"):
        dest = tmp_path / name
        for directory in (False, True):
            tmp = local_copy.temp_sibling(dest, directory=directory)
            assert len(os.fsencode(tmp.name)) <= 255 and tmp.name.endswith(PART_SUFFIX)
            assert tmp.name.startswith(".") and tmp.name.encode("utf-8")  # valid UTF-8
            local_copy.remove(tmp)


def test_an_84_cjk_character_name_round_trips(case: Case, tmp_path: Path) -> None:
    manager = case.make()
    src = _file(tmp_path / "in" / CJK_84, 10_000)
    uri = manager.upload(src)
    path = Path(manager.download(uri, tmp_path / "out"))
    assert path.name == CJK_84 and path.read_bytes() == src.read_bytes()
    tree = tmp_path / "tree" / CJK_84
    _file(tree / CJK_84, 100)  # a tree of that name, holding a file of that name
    got = Path(manager.download(manager.upload(tree), tmp_path / "out2"))
    assert (got / CJK_84).read_bytes() == (tree / CJK_84).read_bytes()


# -- one destination, many spellings ---------------------------------------------------

def test_one_place_spelled_three_ways_is_fetched_once(s3_case: Case, tmp_path: Path) -> None:
    manager = s3_case.make()
    uri = manager.upload(_file(tmp_path / "a.bin", 50_000))
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "link").symlink_to(out)
    for folder in (out, tmp_path / "link", tmp_path / "link" / ".." / "out"):
        manager.download(uri, folder)
    assert s3_case.reads() == 1, f"fetched {s3_case.reads()} times"


def test_the_lock_is_shared_by_every_spelling(tmp_path: Path) -> None:
    copies = LocalCopies(tmp_path / "cache")
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "link").symlink_to(out)
    held, waited = threading.Event(), []

    def hold() -> None:
        with copies.locked(out / "a.bin"):
            held.set()
            time.sleep(0.5)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(5)
    start = time.monotonic()
    with copies.locked(tmp_path / "link" / ".." / "link" / "a.bin"):
        waited.append(time.monotonic() - start)
    thread.join()
    assert waited[0] > 0.3, "the other spelling did not wait for the lock"


# -- the umask -------------------------------------------------------------------------

@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_downloads_honour_the_umask(s3_case: Case, tmp_path: Path, umask_022: None) -> None:
    manager = s3_case.make()
    uri = manager.upload(_file(tmp_path / "a.bin", 1000))
    tree = tmp_path / "tree"
    _file(tree / "sub" / "b.bin", 1000)
    tree_uri = manager.upload(tree)
    assert Path(manager.download(uri, tmp_path / "out")).stat().st_mode & 0o777 == 0o644
    folder = Path(manager.download(tree_uri, tmp_path / "out"))
    assert folder.stat().st_mode & 0o777 == 0o755
    assert (folder / "sub" / "b.bin").stat().st_mode & 0o777 == 0o644
    assert local_copy.umask() == 0o022


def test_local_store_keeps_the_executable_bit(local_case: Case, tmp_path: Path,
                                              umask_022: None) -> None:
    manager = local_case.make()
    script = _file(tmp_path / "run.sh", 100)
    script.chmod(0o750)
    _file(tmp_path / "tree" / "data.bin", 100)
    (tmp_path / "tree" / "bin").mkdir()
    tool = _file(tmp_path / "tree" / "bin" / "tool", 100)
    tool.chmod(0o755)
    assert Path(manager.upload(script)).stat().st_mode & 0o777 == 0o750
    assert Path(manager.download(manager.upload(script), tmp_path / "out")).stat().st_mode & 0o777 == 0o750
    got = Path(manager.download(manager.upload(tmp_path / "tree"), tmp_path / "out"))
    assert (got / "bin" / "tool").stat().st_mode & 0o777 == 0o755
    assert (got / "data.bin").stat().st_mode & 0o777 == 0o644


# -- what killed transfers leave behind ------------------------------------------------


def test_a_download_sweeps_what_killed_downloads_left_in_its_folder(case: Case, tmp_path: Path) -> None:
    manager = case.make()
    uri = manager.upload(_file(tmp_path / "a.bin", 1000))
    out = tmp_path / "out"
    out.mkdir()
    dead = out / f".a.bin.deadbeef{PART_SUFFIX}"
    dead.write_bytes(b"x" * 100)
    old = time.time() - 2 * local_copy.SAFE_AGE
    os.utime(dead, (old, old))
    young = out / f".b.bin.cafebabe{PART_SUFFIX}"  # a live download's, elsewhere
    young.write_bytes(b"y")
    manager.download(uri, out)
    assert not dead.exists() and young.exists()

def test_sweep_removes_old_temporaries_only(tmp_path: Path) -> None:
    old_file = tmp_path / f".a.bin.abcd1234{PART_SUFFIX}"
    old_dir = tmp_path / f".tree.abcd1234{PART_SUFFIX}"
    live = tmp_path / f".a.bin.live5678{PART_SUFFIX}"
    live_dir = tmp_path / f".tree.live5678{PART_SUFFIX}"  # an old directory, a growing file
    (live_dir / "growing.bin").parent.mkdir()
    (live_dir / "growing.bin").write_bytes(b"x")
    kept = [tmp_path / "a.bin", tmp_path / f"visible{PART_SUFFIX}"]
    old_file.write_bytes(b"x")
    (old_dir / "inner").mkdir(parents=True)
    live.write_bytes(b"x")
    for path in kept:
        path.write_bytes(b"x")
    two_days_ago = time.time() - 2 * 86400
    for path in (old_file, old_dir / "inner", old_dir, live_dir, *kept):
        os.utime(path, (two_days_ago, two_days_ago))
    removed = local_copy.sweep(tmp_path, older_than=3600)
    assert sorted(removed) == sorted([old_file, old_dir])
    assert live.exists() and live_dir.exists() and all(p.exists() for p in kept)
    assert local_copy.sweep(tmp_path / "missing") == []


def test_prune_removes_records_of_copies_that_are_gone(tmp_path: Path) -> None:
    copies = LocalCopies(tmp_path / "cache")
    here, gone = tmp_path / "here.bin", tmp_path / "gone.bin"
    for dest in (here, gone):
        dest.write_bytes(b"x")
        copies.record(dest, "v1")
    gone.unlink()
    stray = tmp_path / "cache" / "state" / "tmpabc.tmp"
    stray.write_text("{")
    removed = local_copy.prune(tmp_path / "cache", older_than=3600)
    names = {json.loads(p.read_text())["dest"] for p in (tmp_path / "cache" / "state").glob("*.json")}
    assert names == {str(here)} and stray in removed and len(removed) == 2
    assert copies.is_fresh(here, "v1")


# -- pipes -------------------------------------------------------------------------------

def test_a_fifo_is_refused_and_nothing_is_stored(case: Case, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    manager = case.make()
    with pytest.raises(InvalidPathError, match="not a regular file"):
        manager.upload(fifo)
    assert manager.ls() == []


def test_trees_keep_the_executable_bit_on_every_store(case: Case, tmp_path: Path,
                                                      umask_022: None) -> None:
    """The commit record carries a file's x bit, so stores without modes keep it too."""
    manager = case.make()
    tree = tmp_path / "tree"
    same = b"#!/bin/sh\necho same bytes\n"
    for rel, mode in (("bin/tool", 0o755), ("doc/tool.txt", 0o644)):  # same bytes, two modes
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(same)
        (tree / rel).chmod(mode)
    got = Path(manager.download(manager.upload(tree), tmp_path / "out"))
    assert (got / "bin" / "tool").stat().st_mode & 0o777 == 0o755
    assert (got / "doc" / "tool.txt").stat().st_mode & 0o777 == 0o644
