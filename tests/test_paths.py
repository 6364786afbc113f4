"""Hostile paths and URIs: every one refused before any I/O, or handled safely."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsblob import (
    InvalidPathError,
    LocalBlobManager,
    PathOutsideRootError,
    S3BlobManager,
    paths,
)
from tests.conftest import Case, Meter
from tests.test_contract import _file

# Templates: {root} is the manager's root URL, {parent} the URL one level up.
HOSTILE = [
    "../escape.bin",
    "sub/../../escape.bin",
    "%2e%2e/escape.bin",
    "%2E%2E/escape.bin",
    "sub/%2e%2e/%2e%2e/escape.bin",
    "%252e%252e/escape.bin",
    "..%2fescape.bin",
    "a%2F..%2F..%2Fescape.bin",
    "./x.bin",
    ".",
    "..",
    "",
    "/",
    "//",
    "a\x00b",
    "a\nb.bin",
    "x" * 300,
    "d/" * 2100 + "x",
    "{root}2/x.bin",
    "{root}",
    "{root}/",
    "{root}/../x.bin",
    "{root}/a/../../x.bin",
    "{root}/%2e%2e/x.bin",
    "{parent}/x.bin",
    "{parent}/other/x.bin",
    "s3://another-bucket/x.bin",
    "oss://another-bucket/x.bin",
    "file:///etc/passwd",
    "gs://bucket/x.bin",
    "memory://elsewhere/x.bin",
    "webhdfs://127.0.0.2:1/x.bin",
    "http://127.0.0.1:1/x.bin",
    "hdfs://127.0.0.1:1/x.bin",
]


def _expand(template: str, root: str) -> str:
    parent = root.rsplit("/", 1)[0]
    return template.replace("{root}", root).replace("{parent}", parent)


@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_paths_are_refused_before_any_io(case: Case, template: str, tmp_path: Path) -> None:
    manager = case.make()
    bad = _expand(template, manager.root_url)
    meter, reads = Meter(), case.reads()
    requests = len(case.server.requests) if case.server is not None else 0
    with pytest.raises(InvalidPathError):
        manager.download(bad, tmp_path / "out", callback=meter)
    for call in (manager.exists, manager.delete):
        with pytest.raises(InvalidPathError):
            call(bad)
    assert not (tmp_path / "out").exists()
    assert case.reads() == reads and meter.transfers == 0
    if case.server is not None:
        assert len(case.server.requests) == requests, "a refused path reached the server"


def test_absolute_path_elsewhere_and_sibling_root_on_local(tmp_path: Path) -> None:
    manager = LocalBlobManager({"root_directory": str(tmp_path / "root")})
    (tmp_path / "root2").mkdir()
    _file(tmp_path / "root2" / "x.bin")
    for bad in ("/etc/passwd", str(tmp_path / "root2" / "x.bin"), str(tmp_path / "root" / ".." / "root2" / "x.bin")):
        with pytest.raises(InvalidPathError):
            manager.download(bad, tmp_path / "out")
        with pytest.raises(InvalidPathError):
            manager.download(bad)  # no local_dir: Local would return the path itself


def test_symlinks_in_a_local_root_cannot_lead_outside(tmp_path: Path) -> None:
    secret = _file(tmp_path / "outside" / "secret.txt")
    root = tmp_path / "root"
    root.mkdir()
    (root / "link-dir").symlink_to(tmp_path / "outside")
    (root / "link-file.txt").symlink_to(secret)
    manager = LocalBlobManager({"root_directory": str(root)})
    for bad in ("link-dir/secret.txt", "link-file.txt", str(root / "link-file.txt")):
        with pytest.raises(PathOutsideRootError, match="symbolic link"):
            manager.download(bad, tmp_path / "out")
        with pytest.raises(PathOutsideRootError):
            manager.download(bad)
    assert not (tmp_path / "out").exists()


def test_symlink_planted_at_the_destination_is_replaced_not_followed(case: Case, tmp_path: Path) -> None:
    manager = case.make()
    src = _file(tmp_path / "model.bin", 10_000, seed=1)
    uri = manager.upload(src)
    victim = _file(tmp_path / "victim.txt", 10_000, seed=2)  # same size as the artifact
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.bin").symlink_to(victim)
    path = Path(manager.download(uri, out))
    assert not path.is_symlink() and path.read_bytes() == src.read_bytes()
    assert victim.read_bytes() == _file(tmp_path / "expected.txt", 10_000, seed=2).read_bytes()


def test_hostile_names_inside_a_stored_directory_are_refused(s3_case: Case, tmp_path: Path) -> None:
    """An object key with '..' planted below an uploaded directory (by anyone with
    write access to the bucket) must not write outside the download directory."""
    manager = s3_case.make()
    _file(tmp_path / "tree" / "ok.txt")
    uri = manager.upload(tmp_path / "tree")
    manager.fs.pipe_file(f"{uri}/sub/../../../../escape.txt", b"evil")
    # A version is read by its manifest: the planted key is not part of it.
    got = Path(manager.download(uri, tmp_path / "out"))
    assert sorted(p.name for p in got.rglob("*")) == ["ok.txt"]
    # A tree another tool wrote has no manifest: its listing is read, and refused.
    manager.fs.pipe_file(f"{manager.root_url}/foreign/ok.txt", b"ok")
    manager.fs.pipe_file(f"{manager.root_url}/foreign/sub/../../../../escape.txt", b"evil")
    with pytest.raises(InvalidPathError):
        manager.download("foreign", tmp_path / "out2")
    assert not list(tmp_path.rglob("escape.txt"))
    assert not (tmp_path / "out2" / "foreign").exists()


# -- properties: whatever the input, a resolved path is inside the root or refused --

ROOTS = ["/data/root", "bucket/prefix", "/"]
segments = st.sampled_from(["..", ".", "", "a", "b.bin", "%2e%2e", "%2E.", "%252e%252e", "root2",
                            "x%2f..", "\\..", "\x00", " ", "..a", "a..", "\u2025"])
path_text = st.one_of(st.lists(segments, max_size=8).map("/".join), st.text(max_size=40))


def _inside(root: str, path: str) -> bool:
    prefix = root.rstrip("/") + "/"
    return path.startswith(prefix) and posixpath.normpath(path).startswith(prefix) \
        and len(path) > len(prefix)


@settings(max_examples=400, deadline=None)
@given(root=st.sampled_from(ROOTS), text=path_text)
def test_join_under_stays_inside_or_refuses(root: str, text: str) -> None:
    try:
        resolved = paths.join_under(root, text, what="p")
    except InvalidPathError:
        return
    assert _inside(root, resolved)
    assert ".." not in resolved.split("/")


@settings(max_examples=400, deadline=None)
@given(root=st.sampled_from(ROOTS), text=path_text, absolute=st.booleans())
def test_require_under_stays_inside_or_refuses(root: str, text: str, absolute: bool) -> None:
    candidate = (root.rstrip("/") + "/" + text) if absolute else text
    try:
        resolved = paths.require_under(root, candidate, what="p", where=root)
    except InvalidPathError:
        return
    assert _inside(root, resolved)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(path_text, path_text.map(lambda t: "s3://bucket/prefix/" + t),
                      path_text.map(lambda t: "s3://bucket/" + t), path_text.map(lambda t: "/" + t)))
def test_managers_resolve_inside_the_root_or_refuse(tmp_path: Path, text: str) -> None:
    local = LocalBlobManager({"root_directory": str(tmp_path / "root")})
    s3 = S3BlobManager({"bucket_name": "bucket", "root_directory": "prefix"})
    for manager, root in ((local, os.path.realpath(tmp_path / "root")), (s3, "bucket/prefix")):
        try:
            resolved = manager._resolve(text)
        except InvalidPathError:
            continue
        assert _inside(root, resolved), (text, resolved)
