"""Functions run in child processes (spawned: they import only fsblob)."""

from __future__ import annotations

import hashlib
import os
import sys
from typing import Any

reads = 0


def download(class_path: str, config: dict[str, Any], uri: str, local_dir: str,
             watch: str | None = None) -> tuple[str, str, int]:
    """Download ``uri``; return (path, sha256 of the file, local reads below ``watch``)."""
    from fsblob import BlobManagerFactory

    global reads
    reads = 0
    if watch:
        def hook(event: str, args: tuple[Any, ...]) -> None:
            global reads
            if event == "open" and isinstance(args[0], str) and args[0].startswith(watch + "/") \
                    and "r" in str(args[1]) and not os.path.basename(args[0]).startswith("."):
                reads += 1
        sys.addaudithook(hook)
    manager = BlobManagerFactory.create_blob_manager(class_path, config)
    path = manager.download(uri, local_dir)
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return path, digest, reads


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
