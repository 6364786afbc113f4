"""Functions run in child processes (spawned: they import only fsblob)."""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from typing import Any


class LocalReads:
    """Counts files opened for reading below ``root`` (a Python audit hook).

    Hidden names (fsblob's temporaries, lock files, commit records) are not
    counted; stored objects (``.fsblob/objects/``) are.
    """

    def __init__(self, root: str | None = None) -> None:
        self.root = root
        self.count = 0
        self._lock = threading.Lock()
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event != "open" or self.root is None or not isinstance(args[0], str):
            return
        mode = args[1] if isinstance(args[1], str) else "r"
        relative = args[0][len(self.root) + 1:]
        hidden = any(part.startswith(".") for part in relative.split("/"))
        if args[0].startswith(self.root + "/") and "r" in mode and "+" not in mode \
                and (not hidden or relative.startswith(".fsblob/objects/")):
            with self._lock:
                self.count += 1


def download(class_path: str, config: dict[str, Any], uri: str, local_dir: str,
             watch: str | None = None) -> tuple[str, str, int]:
    """Download ``uri``; return (path, sha256 of the file, local reads below ``watch``)."""
    from fsblob import BlobManagerFactory

    reads = LocalReads(watch) if watch else None
    manager = BlobManagerFactory.create_blob_manager(class_path, config)
    path = manager.download(uri, local_dir)
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return path, digest, reads.count if reads else 0


def upload(class_path: str, config: dict[str, Any], path: str) -> str:
    """Upload ``path``; return the URI."""
    from fsblob import BlobManagerFactory

    return BlobManagerFactory.create_blob_manager(class_path, config).upload(path)


def download_with_file_limit(class_path: str, config: dict[str, Any], uri: str,
                             local_dir: str, limit: int) -> tuple[str, str, list[str]]:
    """Download with the kernel refusing writes past ``limit`` bytes per file.

    Returns (exception type name, its message, what is left in ``local_dir``).
    """
    import resource
    import signal

    from fsblob import BlobManagerFactory

    manager = BlobManagerFactory.create_blob_manager(class_path, config)
    manager.fs  # noqa: B018  (open the filesystem before the limit: imports write caches)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    try:
        manager.download(uri, local_dir)
    except Exception as exc:
        return type(exc).__name__, str(exc), sorted(os.listdir(local_dir))
    return "", "no error", sorted(os.listdir(local_dir))
