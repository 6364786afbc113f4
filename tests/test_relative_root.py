"""A relative ``root_directory`` is resolved once, where the manager is built; a URI
outside the root only because two processes resolved it from two working
directories is refused with both roots named and the fix (an absolute root)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from fsblob import FsspecBlobManager, LocalBlobManager, PathOutsideRootError

ROOT = Path(__file__).resolve().parents[1]

WORKER = """
import sys, fsblob
manager = fsblob.LocalBlobManager({"root_directory": "store"})
if sys.argv[1] == "upload":
    print(manager.upload(sys.argv[2]))
else:
    try:
        print(manager.download(sys.argv[2], "out"))
    except fsblob.BlobError as exc:
        print(f"{type(exc).__name__}: {exc}")
"""


def _python(cwd: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, "-c", WORKER, *args], cwd=cwd, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_two_working_directories_name_both_roots(tmp_path: Path) -> None:
    server, worker = tmp_path / "server", tmp_path / "worker"
    server.mkdir()
    worker.mkdir()
    (server / "model.bin").write_bytes(b"m" * 100)
    uri = _python(server, "upload", "model.bin")
    assert uri == str(server / "store" / "model.bin")
    message = _python(worker, "download", uri)
    assert message.startswith("PathOutsideRootError: "), message
    assert f"root {worker / 'store'} only because the roots differ" in message
    assert f"below {server / 'store'}" in message
    assert "absolute path" in message
    assert "give a URI that upload() returned" not in message, "that hint points the wrong way"


def test_a_uri_outside_for_another_reason_keeps_the_usual_message(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    manager = LocalBlobManager({"root_directory": "store"})
    with pytest.raises(PathOutsideRootError) as info:
        manager.download("/etc/passwd", tmp_path / "out")
    assert "roots differ" not in str(info.value)


@pytest.mark.parametrize("manager_class, config", [
    (LocalBlobManager, {"root_directory": "store"}),
    (FsspecBlobManager, {"root_directory": "store"}),
])
def test_a_pickled_manager_keeps_the_root_it_was_built_with(
        manager_class: type, config: dict[str, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    manager = manager_class(config)
    (tmp_path / "x.bin").write_bytes(b"x")
    uri = manager.upload(tmp_path / "x.bin")
    data = pickle.dumps(manager)
    monkeypatch.chdir(tmp_path / "b")
    worker = pickle.loads(data)
    assert worker.root_url == manager.root_url
    assert Path(worker.download(uri, tmp_path / "out")).read_bytes() == b"x"
