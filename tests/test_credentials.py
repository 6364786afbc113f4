"""Configured S3 keys are used as they are: no walk of the AWS credential chain.

A process with S3 keys in its config must not ask the EC2 instance metadata address
(or read profiles) at start-up; plain s3fs with the same keys does not. The metadata
address is pointed at a server on 127.0.0.1 that counts the connections it gets.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path


from tests.conftest import S3_BUCKET
from tests.servers.moto import MotoServer

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys, fsblob
config = {"bucket_name": sys.argv[1], "endpoint_url": sys.argv[2], "region_name": "us-east-1"}
if sys.argv[3] == "keys":
    config.update(access_key_id="testing", secret_access_key="testing")
try:
    print(fsblob.S3BlobManager(config).ls())
except fsblob.BlobError as exc:
    print("error:", exc)
"""


class _Counter:
    """A TCP server that counts connections and closes each at once."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


def _run(moto_server: MotoServer, tmp_path: Path, mode: str) -> tuple[int, str]:
    counter = _Counter()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") or k == "AWS_DEFAULT_REGION"}
    env.update(PYTHONPATH=str(ROOT), HOME=str(tmp_path),
               AWS_EC2_METADATA_SERVICE_ENDPOINT=f"http://127.0.0.1:{counter.port}/",
               AWS_METADATA_SERVICE_NUM_ATTEMPTS="1", AWS_METADATA_SERVICE_TIMEOUT="1",
               AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    out = subprocess.run([sys.executable, "-c", SCRIPT, S3_BUCKET, moto_server.url, mode],
                         env=env, capture_output=True, text=True, timeout=120)
    counter.sock.close()
    assert out.returncode == 0, out.stderr
    return counter.connections, out.stdout


def test_configured_keys_do_not_walk_the_credential_chain(moto_server: MotoServer,
                                                          tmp_path: Path) -> None:
    connections, stdout = _run(moto_server, tmp_path, "keys")
    assert stdout.startswith("["), stdout
    assert connections == 0, "the EC2 metadata address was asked although keys were configured"


def test_without_keys_the_chain_is_walked(moto_server: MotoServer, tmp_path: Path) -> None:
    """The counter sees the chain's walk (so the test above can fail)."""
    connections, stdout = _run(moto_server, tmp_path, "chain")
    assert connections >= 1, stdout
