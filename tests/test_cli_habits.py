"""The ``fsblob`` command has the habits of aws s3, gsutil and rclone.

Each test runs the command as a user would (``python -m fsblob`` in a subprocess,
this checkout's code, its own working directory), against the local filesystem or
moto's S3 server / a silent server on 127.0.0.1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import Case
from tests.servers.silent import SilentServer

ROOT = Path(__file__).resolve().parents[1]


def fsblob(cwd: Path, *args: str, env: dict[str, str] | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "FSBLOB_CONFIG"}
    full.update({"PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run([sys.executable, "-m", "fsblob", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=timeout)


def _project(path: Path, config: dict[str, object], manager: str) -> Path:
    lines = "".join(f"    {key}: {value}\n" for key, value in config.items())
    path.write_text(f"blob:\n  blob_manager_class: {manager}\n  blob_manager_config:\n{lines}")
    return path


def _local(tmp_path: Path) -> Path:
    return _project(tmp_path / "p.yaml", {"root_directory": str(tmp_path / "store")},
                    "fsblob.LocalBlobManager")


def _s3(tmp_path: Path, case: Case, **extra: object) -> Path:
    return _project(tmp_path / "p.yaml", {**case.config, **extra}, "fsblob.S3BlobManager")


def _tree(tmp_path: Path) -> Path:
    run = tmp_path / "run1"
    (run / "sub").mkdir(parents=True)
    (run / "a.txt").write_text("a")
    (run / "sub" / "b.txt").write_text("b")
    (tmp_path / "report.txt").write_text("r")
    return run


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_ls_looks_inside_a_tree_at_a_file_and_under_a_prefix(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    project = _local(tmp_path) if backend == "local" else _s3(
        tmp_path, request.getfixturevalue("s3_case"))
    _tree(tmp_path)
    run = fsblob(tmp_path, "upload", "run1", "--config", str(project)).stdout.strip()
    report = fsblob(tmp_path, "upload", "report.txt", "--config", str(project)).stdout.strip()
    root = report.rsplit("/", 1)[0]
    name = f"{root}/run1"  # what the root's listing shows for the tree

    everything = fsblob(tmp_path, "ls", "--config", str(project))
    assert everything.stdout.split() == [report, name], everything.stderr
    for tree in ("run1", name, run):  # by name, by URI, by what upload() returned
        inside = fsblob(tmp_path, "ls", tree, "--config", str(project))
        assert inside.returncode == 0, inside.stderr
        assert inside.stdout.split() == [f"{run}/a.txt", f"{run}/sub"]
    deeper = fsblob(tmp_path, "ls", f"{run}/sub", "--config", str(project))
    assert deeper.stdout.split() == [f"{run}/sub/b.txt"], deeper.stderr
    one = fsblob(tmp_path, "ls", f"{run}/a.txt", "--config", str(project))
    assert one.stdout.split() == [f"{run}/a.txt"]
    prefix = fsblob(tmp_path, "ls", "r", "--config", str(project))
    assert prefix.stdout.split() == [report, name]
    assert fsblob(tmp_path, "ls", "rep", "--config", str(project)).stdout.split() == [report]
    assert fsblob(tmp_path, "ls", root, "--config", str(project)).stdout.split() == [report, name]
    nothing = fsblob(tmp_path, "ls", "zzz", "--config", str(project))
    assert nothing.returncode == 1 and nothing.stdout == ""
    assert "nothing stored at or under zzz" in nothing.stderr


def test_download_lands_in_the_current_directory(s3_case: Case, tmp_path: Path) -> None:
    project = _s3(tmp_path, s3_case)
    (tmp_path / "model.bin").write_bytes(b"w" * 3000)
    uri = fsblob(tmp_path, "upload", "model.bin", "--config", str(project)).stdout.strip()
    work = tmp_path / "work"
    work.mkdir()
    out = fsblob(work, "download", uri, "--config", str(project))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(work / "model.bin")
    assert (work / "model.bin").read_bytes() == b"w" * 3000
    named = fsblob(work, "download", uri, "models/", "--config", str(project))
    assert named.stdout.strip() == str(work / "models" / "model.bin")


def test_fsblob_config_names_the_project_and_config_wins(tmp_path: Path) -> None:
    _local(tmp_path)
    other = _project(tmp_path / "other.yaml", {"root_directory": str(tmp_path / "other")},
                     "fsblob.LocalBlobManager")
    (tmp_path / "a.txt").write_text("a")
    env = {"FSBLOB_CONFIG": str(tmp_path / "p.yaml")}
    up = fsblob(tmp_path, "upload", "a.txt", env=env)
    assert up.returncode == 0 and up.stderr == "", up.stderr
    assert up.stdout.strip() == str(tmp_path / "store" / "a.txt")
    assert fsblob(tmp_path, "ls", env=env).stdout.split() == [str(tmp_path / "store" / "a.txt")]
    assert fsblob(tmp_path, "ls", "--config", str(other), env=env).stdout.split() == []
    assert not (tmp_path / "fsblob-store").exists()


def test_no_store_configured_is_a_warning_not_silence(tmp_path: Path) -> None:
    out = fsblob(tmp_path, "ls")
    assert out.returncode == 0 and out.stdout == ""
    assert out.stderr.startswith("fsblob: warning: no store configured (no --config, no $FSBLOB_CONFIG)")
    assert str(tmp_path / "fsblob-store") in out.stderr and "does not exist" in out.stderr


def test_a_mistyped_command_gets_a_suggestion(tmp_path: Path) -> None:
    out = fsblob(tmp_path, "uplaod", "x")
    assert out.returncode == 2
    assert "'uplaod' is not an fsblob command; did you mean 'upload'?" in out.stderr
    assert "upload, download, ls, rm, url, gc" in out.stderr
    assert "did you mean 'download'" in fsblob(tmp_path, "downlod", "x").stderr


def test_durations_take_zero_seconds_and_weeks(s3_case: Case, tmp_path: Path) -> None:
    (tmp_path / "fsblob-store").mkdir()
    gc = fsblob(tmp_path, "gc", "--older-than", "0")
    assert gc.returncode == 0, gc.stderr
    assert "removed 0" in gc.stdout
    project = _s3(tmp_path, s3_case)
    (tmp_path / "r.html").write_text("<html/>")
    uri = fsblob(tmp_path, "upload", "r.html", "--config", str(project)).stdout.strip()
    week = fsblob(tmp_path, "url", uri, "--expires", "1w", "--config", str(project))
    assert week.returncode == 0 and "Expires=" in week.stdout, week.stderr
    seconds = fsblob(tmp_path, "url", uri, "--expires", "90s", "--config", str(project))
    assert seconds.returncode == 0, seconds.stderr
    zero = fsblob(tmp_path, "url", uri, "--expires", "0", "--config", str(project))
    assert zero.returncode == 2 and "--expires must be longer than 0" in zero.stderr


def test_expiry_beyond_the_stores_limit_is_refused(s3_case: Case, tmp_path: Path) -> None:
    project = _s3(tmp_path, s3_case)
    (tmp_path / "r.html").write_text("<html/>")
    uri = fsblob(tmp_path, "upload", "r.html", "--config", str(project)).stdout.strip()
    out = fsblob(tmp_path, "url", uri, "--expires", "8d", "--config", str(project))
    assert out.returncode == 2 and out.stdout == ""
    assert "longer than a signed URL of the 's3' store can live (604800 s, 7 days)" in out.stderr
    assert "give at most 7d" in out.stderr


def test_an_unknown_protocol_lists_the_known_ones(tmp_path: Path) -> None:
    project = _project(tmp_path / "p.yaml", {"root_directory": "nosuchfs://bucket/x"},
                       "fsblob.FsspecBlobManager")
    out = fsblob(tmp_path, "ls", "--config", str(project))
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "protocol 'nosuchfs' is not a known fsspec protocol; known protocols: " in out.stderr
    for known in ("file", "memory", "s3", "webhdfs"):
        assert f" {known}," in out.stderr
    assert "--plugin MODULE" in out.stderr


PLUGIN = '''
import fsspec
from fsspec.implementations.local import LocalFileSystem

class TeamDisk(LocalFileSystem):
    protocol = "teamdisk"

fsspec.register_implementation("teamdisk", TeamDisk, clobber=True)
'''


def test_plugin_makes_a_user_registered_protocol_work(tmp_path: Path) -> None:
    (tmp_path / "teamdisk_plugin.py").write_text(PLUGIN)
    project = _project(tmp_path / "p.yaml", {"root_directory": f"teamdisk://{tmp_path}/store"},
                       "fsblob.FsspecBlobManager")
    (tmp_path / "a.txt").write_text("a")
    without = fsblob(tmp_path, "upload", "a.txt", "--config", str(project))
    assert without.returncode == 2 and "'teamdisk' is not a known fsspec protocol" in without.stderr
    up = fsblob(tmp_path, "--plugin", "teamdisk_plugin", "upload", "a.txt", "--config", str(project))
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip() == f"teamdisk://{tmp_path}/store/a.txt"
    work = tmp_path / "elsewhere"
    work.mkdir()
    by_path = fsblob(work, "download", up.stdout.strip(), "--config", str(project),
                     "--plugin", str(tmp_path / "teamdisk_plugin.py"))
    assert by_path.returncode == 0, by_path.stderr
    assert (work / "a.txt").read_text() == "a"
    missing = fsblob(tmp_path, "ls", "--plugin", "no_such_plugin_module")
    assert missing.returncode == 2 and "--plugin no_such_plugin_module: cannot import it" in missing.stderr


def test_timeout_bounds_the_retries_and_the_error_names_it(tmp_path: Path) -> None:
    import socket
    with socket.socket() as s:  # bound, never listening: connections are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        project = _project(tmp_path / "p.yaml", {
            "bucket_name": "bkt", "endpoint_url": f"http://127.0.0.1:{port}", "retries": 1000,
            "access_key_id": "k", "secret_access_key": "s"}, "fsblob.S3BlobManager")
        start = time.monotonic()
        out = fsblob(tmp_path, "ls", "--config", str(project), "--timeout", "2")
        elapsed = time.monotonic() - start
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert elapsed < 12, f"--timeout 2 took {elapsed:.1f} s"
    assert "--timeout SECONDS, or stall_timeout and retry_deadline in the project file" in out.stderr
    bad = fsblob(tmp_path, "ls", "--timeout", "soon")
    assert bad.returncode == 2 and "'soon' is not a duration" in bad.stderr


def test_timeout_also_ends_a_silent_server_early(tmp_path: Path) -> None:
    """A server that accepts and never answers is cut after --timeout without progress
    (stall_timeout), not after the default 30 s."""
    with SilentServer() as silent:
        project = _project(tmp_path / "p.yaml", {
            "bucket_name": "bkt", "endpoint_url": silent.url,
            "access_key_id": "k", "secret_access_key": "s"}, "fsblob.S3BlobManager")
        start = time.monotonic()
        out = fsblob(tmp_path, "ls", "--config", str(project), "--timeout", "2")
        elapsed = time.monotonic() - start
    assert out.returncode == 1 and "stall_timeout" in out.stderr, out.stderr
    assert elapsed < 15, f"--timeout 2 against a silent server took {elapsed:.1f} s"


def test_a_stuck_server_gets_a_still_waiting_line(tmp_path: Path) -> None:
    with SilentServer() as silent:
        project = _project(tmp_path / "p.yaml", {
            "bucket_name": "bkt", "endpoint_url": silent.url,
            "access_key_id": "k", "secret_access_key": "s"}, "fsblob.S3BlobManager")
        proc = subprocess.Popen([sys.executable, "-m", "fsblob", "ls", "--config", str(project)],
                                cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
        reader.start()
        start = time.monotonic()
        try:
            while time.monotonic() - start < 20 and not any("still waiting" in x for x in lines):
                time.sleep(0.2)
            seen = time.monotonic() - start
        finally:
            proc.kill()
            proc.wait()
    waiting = [x for x in lines if "still waiting" in x]
    assert waiting, f"no 'still waiting' line in {seen:.0f} s: {lines}"
    assert waiting[0].startswith(f"fsblob: still waiting for {silent.url}... ")
    assert "--timeout SECONDS" in waiting[0]
    assert 4 <= seen < 12
