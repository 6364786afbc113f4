"""Path confinement: every remote path fsblob touches is checked here first.

The rules are lexical, so they run before any I/O:

* no empty path, no NUL or control characters;
* no ``?`` or ``#``: a layer that reads the path as a URL (s3fs's ``?versionId=``,
  an HTTP server) would take what follows for a query or a fragment, so
  ``root/..?versionId=1`` would reach the server as ``root/..``;
* no ``.`` or ``..`` segment and no encoded ``/``, also when percent-encoded
  (once or more: ``%2e%2e``, ``%252e``), since a layer between fsblob and the
  bytes (an HTTP gateway, a proxy) may decode it;
* no segment longer than 255 bytes, no path longer than 4096 bytes;
* the result lies strictly *below* the root, compared segment by segment, so a
  sibling such as ``<root>2/x`` is outside.
"""

from __future__ import annotations

import posixpath
from urllib.parse import unquote

from fsblob.errors import InvalidPathError, PathOutsideRootError

MAX_SEGMENT_BYTES = 255
MAX_PATH_BYTES = 4096


def check_segments(path: str, *, what: str) -> list[str]:
    """Split a ``/``-separated path into its segments, refusing unsafe ones.

    Empty segments (``a//b``, a leading or trailing ``/``) are dropped.
    ``what`` names the path in error messages.
    """
    if not path:
        raise InvalidPathError(f"{what} is empty; give a file name or a URI")
    if any(ord(c) < 32 or c == "\x7f" for c in path):
        raise InvalidPathError(f"{what} {path!r} contains a NUL or control character")
    if "?" in path or "#" in path:
        raise InvalidPathError(
            f"{what} {path!r} contains '?' or '#', which URL-based stores read as a query "
            "or fragment; rename the file without them"
        )
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise InvalidPathError(f"{what} is longer than {MAX_PATH_BYTES} bytes")
    segments = [s for s in path.split("/") if s]
    for segment in segments:
        decoded = _decoded(segment)
        if decoded in (".", "..") or "/" in decoded:
            raise InvalidPathError(
                f"{what} {path!r} contains a {segment!r} segment; "
                "give the path without '.', '..' or an encoded '/'"
            )
        if len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES:
            raise InvalidPathError(f"{what} has a name longer than {MAX_SEGMENT_BYTES} bytes")
    return segments


def _decoded(segment: str) -> str:
    """A segment percent-decoded until it no longer changes (``%252e`` -> ``.``)."""
    for _ in range(4):
        decoded = unquote(segment)
        if decoded == segment:
            break
        segment = decoded
    return segment


def join_under(root: str, relative: str, *, what: str) -> str:
    """Join a relative path below ``root`` after checking its segments."""
    segments = check_segments(relative, what=what)
    if not segments:
        raise InvalidPathError(f"{what} {relative!r} names no file below the root")
    return posixpath.join(root.rstrip("/") or "/", *segments)


def require_under(root: str, path: str, *, what: str, where: str) -> str:
    """Return ``path`` (normalised) if it lies strictly below ``root``.

    ``where`` describes the root in the error message (a URL or directory).
    """
    segments = check_segments(path, what=what)
    root_segments = [s for s in root.split("/") if s]
    if len(segments) <= len(root_segments) or segments[: len(root_segments)] != root_segments:
        raise PathOutsideRootError(
            f"{what} {path!r} is outside the store's root {where}; "
            "give a URI that upload() returned or a path relative to the root"
        )
    prefix = "/" if root.startswith("/") else ""
    return prefix + "/".join(segments)
