"""Run moto's S3-compatible server as a subprocess for tests."""

from __future__ import annotations

import atexit
import http.client
import os
import subprocess
import sys
import time

from .proxy import free_port

# The child exits as soon as its stdin closes, i.e. when the test process dies,
# even if that process is SIGKILLed and never runs its atexit handlers.
_LAUNCHER = """
import os, sys, threading
threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
from moto.server import main
main(["-H", "127.0.0.1", "-p", sys.argv[1]])
"""


def _answers(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=2)
    try:
        conn.request("GET", "/moto-api/")
        return conn.getresponse().status < 500
    except OSError:
        return False
    finally:
        conn.close()


def start_moto(port: int = 0, timeout: float = 30.0,
               env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start moto's server on 127.0.0.1 and wait until it answers.

    ``env`` adds environment variables (e.g. ``INITIAL_NO_AUTH_ACTION_COUNT=0``
    to make moto check credentials). Returns the process and its URL.
    The process is killed at interpreter exit
    (use ``stop_moto`` to end it earlier).
    """
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        **(env or {}),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    atexit.register(stop_moto, proc)
    deadline = time.monotonic() + timeout
    while not _answers(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_moto(proc)
            raise RuntimeError(f"moto server did not start on {url} (exit code {proc.returncode})")
        time.sleep(0.1)
    return proc, url


def stop_moto(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a moto subprocess started by ``start_moto`` (idempotent)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdin is not None:
        proc.stdin.close()


class MotoServer:
    """Context manager around a moto subprocess; ``.url`` is its endpoint."""

    def __init__(self, port: int = 0, env: dict[str, str] | None = None) -> None:
        self.proc, self.url = start_moto(port, env=env)

    def stop(self) -> None:
        """Stop the server."""
        stop_moto(self.proc)

    def __enter__(self) -> MotoServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
