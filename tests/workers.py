"""Functions run in child processes (spawned: they import only fsblob)."""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from typing import Any


class LocalReads:
    """Counts files opened for reading below ``root`` (a Python audit hook).

    Hidden names (fsblob's temporaries, lock files, manifests) are not counted;
    the files of stored tree versions (``.fsblob/trees/<name>/<version>/``) are.
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
                and (not hidden or (relative.startswith(".fsblob/trees/")
                                    and relative.count("/") >= 4)):
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


def tree_tags(path: str) -> tuple[frozenset[str], frozenset[str]]:
    """The version tags written in the files of a downloaded tree, and its files."""
    tags, files = set(), set()
    for dirpath, _, names in os.walk(path):
        for name in names:
            full = os.path.join(dirpath, name)
            files.add(os.path.relpath(full, path))
            with open(full, "rb") as f:
                tags.add(f.read().split(b":", 1)[0].decode())
    return frozenset(tags), frozenset(files)


def churn(class_path: str, config: dict[str, Any], trees: list[str], seconds: float,
          role: str, out: str) -> dict[str, Any]:
    """Upload ``trees`` in turn (role ``writer``) or download the artifact again and
    again (role ``reader``) for ``seconds``; count what happened.

    A reader classifies each download by its tags: one version (every file carries
    the same tag and the file set is that version's) or a mix.
    """
    import time

    from fsblob import BlobManagerFactory, BlobNotFoundError

    manager = BlobManagerFactory.create_blob_manager(class_path, config)
    expected = {}
    for tree in trees:
        tags, files = tree_tags(tree)
        expected[next(iter(tags))] = files
    counts: dict[str, Any] = {"ok": 0, "mixed": 0, "not_found": 0, "errors": [], "uris": []}
    name = os.path.basename(trees[0])
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        try:
            if role == "writer":
                counts["uris"].append(manager.upload(trees[i % len(trees)]))
                counts["ok"] += 1
            else:
                got = manager.download(name, out)
                tags, files = tree_tags(got)
                if len(tags) == 1 and expected.get(next(iter(tags))) == files:
                    counts["ok"] += 1
                else:
                    counts["mixed"] += 1
        except BlobNotFoundError as exc:
            counts["not_found"] += 1
            counts["errors"].append(str(exc)[:600])
        except Exception as exc:
            counts["errors"].append(f"{type(exc).__name__}: {str(exc)[:600]}")
        i += 1
    return counts


def download_files(class_path: str, config: dict[str, Any], uri: str, out: str) -> dict[str, bytes]:
    """Download a tree; return relative path -> bytes of what arrived."""
    from fsblob import BlobManagerFactory

    got = BlobManagerFactory.create_blob_manager(class_path, config).download(uri, out)
    found = {}
    for dirpath, _, names in os.walk(got):
        for name in names:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as f:
                found[os.path.relpath(full, got)] = f.read()
    return found


def gc(class_path: str, config: dict[str, Any], older_than: float, keep: int) -> list[str]:
    """Collect garbage; return what was removed."""
    from fsblob import BlobManagerFactory

    return BlobManagerFactory.create_blob_manager(class_path, config).gc(older_than, keep)


def delete(class_path: str, config: dict[str, Any], uri: str) -> None:
    """Delete an artifact."""
    from fsblob import BlobManagerFactory

    BlobManagerFactory.create_blob_manager(class_path, config).delete(uri)


def upload_rounds(class_path: str, config: dict[str, Any], path: str, rounds: int,
                  barrier: Any) -> list[str]:
    """Upload ``path`` ``rounds`` times, each round starting with the others' (a
    shared barrier); return the URIs."""
    from fsblob import BlobManagerFactory

    manager = BlobManagerFactory.create_blob_manager(class_path, config)
    uris = []
    for _ in range(rounds):
        barrier.wait(60)
        uris.append(manager.upload(path))
    return uris
