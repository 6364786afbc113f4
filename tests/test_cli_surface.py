"""The ``fsblob`` command as a user meets it: version, options, verbosity, one-line
errors, the store never copied into itself, signed URLs, and project files.

Each test runs the command in a subprocess (``python -m fsblob``, this checkout's
code), in a working directory of its own.
"""

from __future__ import annotations

import configparser
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

import fsblob
from tests.conftest import S3_BUCKET, Case

ROOT = Path(__file__).resolve().parents[1]


def fsblob_cmd(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "fsblob", *args], cwd=cwd, env=full_env,
                          check=False, capture_output=True, text=True, timeout=120)


def _project(path: Path, config: dict[str, object], manager: str = "fsblob.S3BlobManager") -> Path:
    lines = "".join(f"    {key}: {value}\n" for key, value in config.items())
    path.write_text(f"blob:\n  blob_manager_class: {manager}\n  blob_manager_config:\n{lines}")
    return path


def _s3_project(path: Path, case: Case, **extra: object) -> Path:
    return _project(path, {**case.config, **extra})


def _dead_port() -> int:
    with socket.socket() as s:  # bound, never listening: connections are refused
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_version_and_python_m_fsblob(tmp_path: Path) -> None:
    out = fsblob_cmd(tmp_path, "--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"fsblob {fsblob.__version__}"


def test_console_script_entry_point_is_cli_main() -> None:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    scripts = setup["options.entry_points"]["console_scripts"].strip().splitlines()
    assert "fsblob = fsblob.cli:main" in [line.strip() for line in scripts]


def test_global_options_go_before_or_after_the_subcommand(tmp_path: Path) -> None:
    _project(tmp_path / "p.yaml", {"root_directory": str(tmp_path / "store")}, "fsblob.LocalBlobManager")
    (tmp_path / "a.txt").write_text("a")
    assert fsblob_cmd(tmp_path, "--config", "p.yaml", "upload", "a.txt").returncode == 0
    before = fsblob_cmd(tmp_path, "--config", "p.yaml", "ls")
    after = fsblob_cmd(tmp_path, "ls", "--config", "p.yaml")
    assert before.returncode == after.returncode == 0, before.stderr + after.stderr
    assert before.stdout.split() == after.stdout.split() == [str(tmp_path / "store" / "a.txt")]
    verbose_before = fsblob_cmd(tmp_path, "-v", "--config", "p.yaml", "ls")
    assert verbose_before.returncode == 0 and "fsblob: store: <LocalBlobManager" in verbose_before.stderr


def test_v_shows_fsblobs_steps_and_vv_the_libraries_redacted(s3_case: Case, tmp_path: Path) -> None:
    token = "fsblob-cli-session-token-0042"
    _s3_project(tmp_path / "p.yaml", s3_case, session_token=token)
    (tmp_path / "model.bin").write_bytes(b"w" * 5000)

    quiet = fsblob_cmd(tmp_path, "upload", "model.bin", "--config", "p.yaml")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr

    one = fsblob_cmd(tmp_path, "-v", "upload", "model.bin", "--config", "p.yaml")
    assert one.returncode == 0, one.stderr
    lines = one.stderr.splitlines()
    assert any(line.startswith("fsblob: uploaded model.bin to s3://") for line in lines), lines
    assert all(line.startswith("fsblob: ") for line in lines), "-v is fsblob's own steps only"
    assert len(lines) < 10

    uri = one.stdout.strip()
    first = fsblob_cmd(tmp_path, "download", uri, "out", "-v", "--config", "p.yaml")
    again = fsblob_cmd(tmp_path, "download", uri, "out", "-v", "--config", "p.yaml")
    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    assert "up to date" not in first.stderr and "up to date" in again.stderr

    two = fsblob_cmd(tmp_path, "-vv", "ls", "--config", "p.yaml")
    assert two.returncode == 0, two.stderr
    assert "botocore" in two.stderr, "-vv adds the client libraries' debug output"
    assert token not in two.stderr and "***" in two.stderr


def test_malformed_yaml_is_one_line_with_file_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("blob:\n  blob_manager_class: fsblob.LocalBlobManager\n"
                                       "  blob_manager_config: {root_directory: x\n  other: 1\n")
    out = fsblob_cmd(tmp_path, "ls", "--config", "bad.yaml")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1, out.stderr
    assert "project file bad.yaml is not valid YAML: line 4, column 8: " in out.stderr


def test_dead_endpoint_is_one_line_and_retries_show_only_with_v(tmp_path: Path) -> None:
    _project(tmp_path / "p.yaml", {"bucket_name": "b", "endpoint_url": f"http://127.0.0.1:{_dead_port()}",
                                   "retries": 2, "access_key_id": "k1", "secret_access_key": "s1"})
    quiet = fsblob_cmd(tmp_path, "ls", "--config", "p.yaml")
    assert quiet.returncode == 1
    assert quiet.stderr.count("\n") == 1, quiet.stderr
    assert quiet.stderr.startswith("fsblob: error: s3: cannot ")
    assert "after 3 attempts" in quiet.stderr and "127.0.0.1" in quiet.stderr

    loud = fsblob_cmd(tmp_path, "-v", "ls", "--config", "p.yaml")
    assert loud.returncode == 1
    assert loud.stderr.count("retrying") == 2, loud.stderr


def test_upload_of_a_directory_holding_the_store_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    assert fsblob_cmd(tmp_path, "upload", "data.csv").returncode == 0  # creates ./fsblob-store
    out = fsblob_cmd(tmp_path, "upload", ".")
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "contains the store's root" in out.stderr and str(tmp_path / "fsblob-store") in out.stderr
    store = tmp_path / "fsblob-store"
    assert sorted(p.name for p in store.iterdir()) == [".fsblob", "data.csv"]
    assert not list((store / ".fsblob").rglob("*.fsblob-part")), "a temporary was left behind"
    elsewhere = fsblob_cmd(tmp_path / "fsblob-store", "upload", str(tmp_path), "--config",
                           str(_project(tmp_path / "p.yaml", {"root_directory": "nested/store"},
                                        "fsblob.LocalBlobManager")))
    assert elsewhere.returncode == 1 and "contains the store's root" in elsewhere.stderr


def test_url_prints_a_signed_url_a_plain_client_can_fetch(s3_case: Case, tmp_path: Path) -> None:
    _s3_project(tmp_path / "p.yaml", s3_case)
    (tmp_path / "report.html").write_bytes(b"<html>results</html>")
    uri = fsblob_cmd(tmp_path, "upload", "report.html", "--config", "p.yaml").stdout.strip()
    out = fsblob_cmd(tmp_path, "url", uri, "--expires", "2m", "--config", "p.yaml")
    assert out.returncode == 0, out.stderr
    url = out.stdout.strip()
    assert url.startswith(s3_case.server.url + f"/{S3_BUCKET}/")
    expires = int(parse_qs(urlsplit(url).query)["Expires"][0])
    assert abs(expires - (time.time() + 120)) < 30
    with urllib.request.urlopen(url, timeout=10) as response:  # no credentials
        assert response.read() == b"<html>results</html>"

    bad = fsblob_cmd(tmp_path, "url", uri, "--expires", "soon", "--config", "p.yaml")
    assert bad.returncode == 2 and "'soon' is not a duration" in bad.stderr
    assert fsblob_cmd(tmp_path, "upload", "report.html").returncode == 0  # ./fsblob-store
    local = fsblob_cmd(tmp_path, "url", "report.html")
    assert local.returncode == 2 and "'file' filesystem makes no signed URLs" in local.stderr


def test_relative_local_root_is_taken_from_the_project_files_directory(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    _project(project / "project.yaml", {"root_directory": "artifacts"}, "fsblob.LocalBlobManager")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "a.txt").write_text("a")
    up = fsblob_cmd(tmp_path / "elsewhere", "upload", "a.txt", "--config", "../project/project.yaml")
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip() == str(project / "artifacts" / "a.txt")
    listed = fsblob_cmd(project, "ls", "--config", "project.yaml")
    assert listed.stdout.split() == [str(project / "artifacts" / "a.txt")]


def test_misspelled_section_key_is_named_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(textwrap.dedent("""
        blob:
          blob_manager_class: fsblob.LocalBlobManager
          blob_manager_confg:
            root_directory: store
    """))
    out = fsblob_cmd(tmp_path, "ls", "--config", "p.yaml")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "'blob_manager_confg'" in out.stderr and "did you mean 'blob_manager_config'" in out.stderr


@pytest.mark.parametrize("args", [["ls", "--config", "p.yaml"], ["--config", "p.yaml", "ls"]])
def test_misspelled_engine_key_is_suggested(tmp_path: Path, args: list[str]) -> None:
    _project(tmp_path / "p.yaml", {"root_directory": "store", "retry_dedline": 5}, "fsblob.LocalBlobManager")
    out = fsblob_cmd(tmp_path, *args)
    assert out.returncode == 2
    assert "did you mean 'retry_deadline'" in out.stderr
