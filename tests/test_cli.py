"""The ``fsblob`` command, run as a user would: a subprocess in a working directory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fsblob(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "fsblob", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_round_trip_on_the_embedded_default_store(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"\x00weights" * 1000)
    up = fsblob(tmp_path, "upload", "model.bin")
    assert up.returncode == 0, up.stderr
    uri = up.stdout.strip().splitlines()[-1]
    assert uri == str(tmp_path / "fsblob-store" / "model.bin")
    assert up.stderr.startswith("fsblob: warning: no store configured"), up.stderr
    assert up.stderr.count("\n") == 1, "one line: no progress bar when stderr is not a terminal"
    again = fsblob(tmp_path, "upload", "model.bin")
    assert again.returncode == 0 and again.stderr == "", "no chatter once the store exists"

    down = fsblob(tmp_path, "download", uri, "out")
    assert down.returncode == 0, down.stderr
    assert Path(down.stdout.strip()) == tmp_path / "out" / "model.bin"
    assert (tmp_path / "out" / "model.bin").read_bytes() == (tmp_path / "model.bin").read_bytes()

    assert fsblob(tmp_path, "ls").stdout.split() == [uri]
    removed = fsblob(tmp_path, "rm", uri)
    assert removed.returncode == 0 and removed.stdout.strip() == f"deleted {uri}"
    assert fsblob(tmp_path, "ls").stdout.split() == []


def test_config_file_selects_the_store(tmp_path: Path) -> None:
    (tmp_path / "project.yaml").write_text(textwrap.dedent(f"""
        blob:
          blob_manager_class: fsblob.LocalBlobManager
          blob_manager_config:
            root_directory: {tmp_path / 'elsewhere'}
    """))
    (tmp_path / "a.txt").write_text("a")
    up = fsblob(tmp_path, "upload", "a.txt", "--config", "project.yaml")
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip() == str(tmp_path / "elsewhere" / "a.txt")


def test_errors_are_one_line_and_exit_non_zero(tmp_path: Path) -> None:
    (tmp_path / "fsblob-store").mkdir()  # the default store exists: no warning about it
    missing = fsblob(tmp_path, "download", "nothing.bin", "out")
    assert missing.returncode == 1
    assert missing.stderr.startswith("fsblob: error: ") and missing.stderr.count("\n") == 1
    assert "nothing.bin" in missing.stderr and "Traceback" not in missing.stderr

    outside = fsblob(tmp_path, "download", "/etc/passwd", "out")
    assert outside.returncode == 1 and "outside the store's root" in outside.stderr

    (tmp_path / "bad.yaml").write_text("blob:\n  blob_manager_class: fsblob.S3BlobManager\n"
                                       "  blob_manager_config: {bucket: b}\n")
    bad = fsblob(tmp_path, "ls", "--config", "bad.yaml")
    assert bad.returncode == 2
    assert "unknown blob_manager_config key 'bucket'" in bad.stderr and "Traceback" not in bad.stderr
