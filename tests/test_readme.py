"""The README's commands, run as they are written, so that the README cannot drift.

Every ```shell block of the README is run here with bash (``set -e``), in a scratch
directory that holds the repository's ``examples/`` and a stand-in ``.venv``:

* ``.venv/bin/python``, ``fsblob``, ``moto_server`` and ``activate`` run this test's
  interpreter, this checkout's code and the installed moto;
* ``.venv/bin/pip`` records what it is asked to install (the extras are checked
  against ``setup.cfg``) instead of installing into the shared environment;
* ``python3 -m venv .venv`` is skipped (the stand-in is there), and the local S3's
  port 5123 is replaced by a free one.

The test command itself is not run from here (it is this suite): CI (``.ci/run``)
runs it, and a test checks that it is the README's. Every ```yaml block is fed to
``yaml.safe_load`` and a manager is built from it.
"""

from __future__ import annotations

import configparser
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fsblob import BlobConfig, BlobManagerFactory, FsspecBlobManager
from tests.servers.proxy import free_port

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
VENV_BIN = Path(sys.executable).parent


def blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README, flags=re.S | re.M)


def _kind(block: str) -> str:
    if "-m pytest" in block:
        return "tests"
    if "moto_server" in block:
        return "s3"
    if "fsblob upload" in block:
        return "cli"
    if re.search(r"examples/quickstart\.py\s*$", block, flags=re.M):
        return "quickstart"
    return "unknown"


def _commands(block: str) -> list[str]:
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_every_shell_block_is_one_that_this_file_runs() -> None:
    kinds = [_kind(b) for b in blocks("shell")]
    assert sorted(kinds) == ["cli", "quickstart", "s3", "tests"], kinds


def test_one_test_command_and_ci_runs_it() -> None:
    lines = [line for b in blocks("shell") for line in _commands(b) if "pytest" in line]
    assert len(lines) == 1, lines
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith("#")]
    assert lines[0] in ci, f"CI must run the README's test command: {lines[0]}"


def test_one_command_runs_the_main_job_on_the_embedded_default() -> None:
    lines = [line for b in blocks("shell") for line in _commands(b)
             if re.search(r"examples/quickstart\.py\s*$", line.split("#")[0])]
    assert len(lines) == 1, lines


def _extras() -> dict[str, list[str]]:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    return {name: [r.strip() for r in value.strip().splitlines() if r.strip()]
            for name, value in setup["options.extras_require"].items()}


def test_pip_installs_name_extras_that_exist_and_bring_what_the_steps_use() -> None:
    extras = _extras()
    for block in blocks("shell"):
        for requested in re.findall(r"pip install [^&\n]*?'\.\[([a-z,]+)\]'", block):
            names = requested.split(",")
            assert all(n in extras for n in names), f"no such extra in setup.cfg: {requested}"
            needs = {"quickstart": {"pandas", "pyarrow"}, "tests": {"pytest", "s3fs", "moto"},
                     "s3": {"pandas", "pyarrow", "s3fs"}}.get(_kind(block), set())
            brought = {re.split(r"[<>=\[ ]", r)[0] for n in names for r in extras[n]}
            if _kind(block) == "s3":
                brought |= {"moto"} if "'moto[server]'" in block else set()
                assert "moto[server]" in block and block.count("pip install") == 1, (
                    "s3fs and moto in one pip install: pip resolves their botocore pins together")
            assert needs <= brought, f"{requested} lacks {needs - brought}"


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A directory laid out as the README expects: examples/ and a stand-in .venv."""
    work = tmp_path / "clone"
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples")
    bin_dir = work / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    scripts = {
        "python": f'exec {sys.executable} "$@"',
        "fsblob": f'exec {sys.executable} -m fsblob "$@"',
        "moto_server": f'exec {VENV_BIN / "moto_server"} "$@"',
        "pip": f'echo "$@" >> {tmp_path / "pip.log"}',
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    (bin_dir / "activate").write_text(f'export PATH="{bin_dir}:$PATH"\n')
    return work


def run_block(kind: str, cwd: Path, port: int | None = None) -> subprocess.CompletedProcess[str]:
    (block,) = [b for b in blocks("shell") if _kind(b) == kind]
    script = block.replace("python3 -m venv .venv", "true")
    if port is not None:
        script = script.replace("5123", str(port))
    env = {k: v for k, v in os.environ.items()
           if k not in ("FSBLOB_CONFIG", "S3_ENDPOINT_URL") and not k.startswith("AWS_")}
    env.update(PYTHONPATH=str(ROOT), AWS_EC2_METADATA_DISABLED="true", AWS_DEFAULT_REGION="us-east-1")
    proc = subprocess.Popen(["bash", "-e", "-c", script], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        try:  # whatever the block left running (a moto it did not get to stop)
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_quickstart_runs_the_main_job_on_the_embedded_default(scratch: Path) -> None:
    out = run_block("quickstart", scratch)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"store: <LocalBlobManager {scratch.resolve() / 'fsblob-store'}>" in out.stdout
    assert out.stdout.strip().endswith("ok")


def test_cli_in_60_seconds_runs_as_written(scratch: Path) -> None:
    out = run_block("cli", scratch)
    assert out.returncode == 0, out.stdout + out.stderr
    demo = scratch / "demo"
    store = demo.resolve() / "fsblob-store"
    lines = out.stdout.splitlines()
    assert lines[0] == str(store / "scores.csv") and lines[1].startswith(str(store))
    assert lines[2:4] == [str(store / "run1"), str(store / "scores.csv")]  # ls
    assert lines[4] == f"{lines[1]}/auc.txt"  # ls run1: inside the tree upload returned
    assert (demo / "copies" / "scores.csv").read_text() == "user,score\n"
    assert "deleted scores.csv" in lines
    assert out.stderr.startswith("fsblob: warning: no store configured")


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_s3_steps_run_against_a_moto_they_start_and_stop(scratch: Path) -> None:
    port = free_port()
    out = run_block("s3", scratch, port)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "s3://my-artifacts/aiflow/project-a/features.csv" in out.stdout
    assert "\nok\n" in out.stdout
    url = out.stdout.strip().splitlines()[-1]
    assert url.startswith(f"http://127.0.0.1:{port}/my-artifacts/aiflow/project-a/features.csv?")
    assert "HTTP/1.1" not in out.stdout + out.stderr, "moto's request log belongs in moto.log"
    assert "HTTP/1.1" in (scratch / "moto.log").read_text()
    deadline = time.monotonic() + 15  # kill sends SIGTERM; moto takes a moment to go
    while _accepts(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _accepts(port), "the steps stop the local S3 they started"
    pip = (scratch.parent / "pip.log").read_text()
    assert "'.[examples,s3]'" not in pip and "-e .[examples,s3] moto[server]" in pip


@pytest.mark.parametrize("index", range(len(blocks("yaml"))))
def test_yaml_blocks_build_managers_from_aiflows_loader(index: int) -> None:
    text = blocks("yaml")[index]
    for name in re.findall(r"\$\{([A-Z0-9_]+)\}", text):
        text = text.replace("${" + name + "}", "http://127.0.0.1:9" if "URL" in name else "x")
    blob = BlobConfig(yaml.safe_load(text)["blob"])
    manager = BlobManagerFactory.create_blob_manager(blob.blob_manager_class(),
                                                     blob.blob_manager_config())
    assert isinstance(manager, FsspecBlobManager)
